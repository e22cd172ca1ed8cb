"""efg compare end to end: LAMMPS MD (pair_style mlff) + efg analyze + efg scan against
efg harmonic of the same stable spring potential, report written."""
import json

import numpy as np
import pytest

from contract_models import export, point_charge_efg_module
from lammps_run import run_lammps
from pyexport.contract import PotentialModule, export_model
from pyexport.lammps.data_file import write_lammps_data
from pyexport.models.pair import HarmonicSprings, symmetric_table
from test_harmonic import A_PEROVSKITE, cubic_perovskite

from efg.analyze import analyze
from efg.compare import compare
from efg.harmonic import run_harmonic
from efg.temperature_scan import scan

MD = """units metal
atom_style atomic
atom_modify map array
read_data data.lmp
pair_style mlff
pair_coeff * * {model} Cs Pb Br
velocity all create {t2} {seed} mom yes rot no dist gaussian
fix nve all nve
fix thermostat all langevin {t} {t} 0.2 {seed} zero yes
timestep 0.002
run 1000
dump traj all custom 10 md.dump id type x y z vx vy vz
dump_modify traj sort id format float %.12g
run 6000
"""


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    d = tmp_path_factory.mktemp("compare")
    elements = ["Cs", "Pb", "Br"]
    a = A_PEROVSKITE
    k = symmetric_table({("Pb", "Br"): 2.0, ("Br", "Br"): 0.3, ("Cs", "Br"): 0.3}, elements)
    r0 = symmetric_table({("Pb", "Br"): a / 2, ("Br", "Br"): a / np.sqrt(2), ("Cs", "Br"): a / np.sqrt(2)},
                         elements, default=1.0)
    pot = d / "springs.pt"
    export_model(PotentialModule(HarmonicSprings(k, r0), elements, cutoff=4.6), pot)
    efg = export(point_charge_efg_module(), d / "efg.pt")
    unit = cubic_perovskite()
    unit.write(d / "POSCAR", format="vasp", direct=True)
    runs = []
    for t in (20, 40):
        wd = d / f"md{t}"
        wd.mkdir()
        write_lammps_data(wd / "data.lmp", unit.repeat(3), elements)
        run_lammps(MD.format(model=pot, t=t, t2=2 * t, seed=100 + t), wd)
        analyze(wd / "md.dump", model=efg, types="Cs,Pb,Br", isotopes={"Br": "79Br"}, temperature=float(t),
                md_timestep_ps=0.002, output=d / f"run_{t}K.json", progress=False)
        runs.append(d / f"run_{t}K.json")
    scan(runs, d / "scan.json")
    run_harmonic(pot, d / "POSCAR", [3, 3, 3], d / "harmonic.json", temperatures="20:40:20",
                 efg_model=efg, isotopes={"Br": "79Br"}, progress=False)
    return d, compare(d / "harmonic.json", d / "scan.json", d / "report")


def test_report_compares_msd_cq_eta_and_dos(pipeline):
    d, result = pipeline
    kinds = {(r["quantity"], r["species"], r["statistics"]) for r in result["rows"]}
    for el in ("Cs", "Pb", "Br"):
        assert ("msd", el, "classical") in kinds and ("msd", el, "quantum") in kinds
    assert ("cq", "Br", "classical") in kinds and ("eta", "Br", "quantum") in kinds
    report = (d / "report" / "report.md").read_text()
    assert "## Where the harmonic picture departs from MD" in report
    assert "None: the structure is dynamically stable" in report
    for name in result["figures"].values():
        assert (d / "report" / name).stat().st_size > 1000
    assert "dos.png" in result["figures"].values()
    assert json.loads((d / "report" / "compare.json").read_text())["rows"]


def test_low_temperature_md_agrees_with_classical_harmonic(pipeline):
    """Springs are nearly harmonic at 20-40 K: classical MSDs agree (the MD cell is 3x3x3,
    phonopy's MSD a q-mesh; agreement to 15 %), quantum MSDs are larger (zero-point motion)."""
    _, result = pipeline
    for r in result["rows"]:
        if r["quantity"] == "msd" and r["statistics"] == "classical":
            assert abs(r["relative_difference"]) < 0.15, r
    classical = {(r["species"], r["temperature_K"]): r["harmonic"] for r in result["rows"]
                 if r["quantity"] == "msd" and r["statistics"] == "classical"}
    for r in result["rows"]:
        if r["quantity"] == "msd" and r["statistics"] == "quantum":
            assert r["harmonic"] > classical[(r["species"], r["temperature_K"])]


def test_compare_rejects_swapped_inputs(pipeline, tmp_path):
    d, _ = pipeline
    with pytest.raises(ValueError, match="not an efg harmonic report"):
        compare(d / "scan.json", d / "harmonic.json", tmp_path)
