"""efg compare end to end: LAMMPS MD (pair_style mlff) + efg analyze + efg scan against
efg harmonic of the same stable spring potential, report written; each MD temperature paired
with the reference whose range holds it, and "departs" decided by the z threshold."""
import argparse
import json
import math

import numpy as np
import pytest

from contract_models import export, many_body_module, point_charge_efg_module
from lammps_run import run_lammps
from pyexport.contract import PotentialModule, export_model
from pyexport.lammps.data_file import write_lammps_data
from pyexport.models.pair import HarmonicSprings, symmetric_table
from test_harmonic import A_PEROVSKITE, cubic_perovskite

from efg.analyze import analyze
from efg.cli import compare as compare_cli
from efg.compare import HarmonicReference, comparison_rows, compare, departs, z_score
from efg.harmonic import run_harmonic
from efg.temperature_scan import scan

pytestmark = pytest.mark.usefixtures("one_thread")

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
    # a reference with imaginary modes (the many-body model's cubic cell), for the pairing tests
    with pytest.warns(UserWarning):
        run_harmonic(export(many_body_module(), d / "many_body.pt"), d / "POSCAR", [2, 2, 2],
                     d / "harmonic_unstable.json", temperatures="20:40:20", n_samples=4, efg_model=efg,
                     efg_samples=2, mesh=[4, 4, 4], band_points=5, max_unstable_curves=0,
                     isotopes={"Br": "79Br"}, progress=False, plots=False)
    return d, compare([f"{d / 'harmonic.json'}:all"], d / "scan.json", d / "report")


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
        compare([f"{d / 'scan.json'}:all"], d / "harmonic.json", tmp_path)
    with pytest.raises(ValueError, match="not an efg scan report"):
        compare([f"{d / 'harmonic.json'}:all"], d / "harmonic.json", tmp_path)


# --------------------------------------------------------------------------------------------
# Departs: z >= threshold, both ways
# --------------------------------------------------------------------------------------------
def one_row(md, md_error, harmonic, harmonic_error, z_threshold=3.0):
    """comparison_rows on one MSD value at 100 K."""
    md_side = {"T": np.array([100.0]), "msd": {"Br": np.array([md])}, "msd_err": {"Br": np.array([md_error])},
               "cq": {}, "cq_err": {}, "eta": {}, "eta_err": {}}
    harm = {"classical": {"T": np.array([50.0, 150.0]), "msd": {"Br": np.array([harmonic, harmonic])},
                          "msd_err": {"Br": np.array([harmonic_error, harmonic_error])},
                          "cq": {}, "cq_err": {}, "eta": {}, "eta_err": {}}}
    rows = comparison_rows(md_side, harm, "ref", [100.0], z_threshold)
    assert len(rows) == 1
    return rows[0]


def test_departs_only_from_the_z_threshold_on():
    # |harmonic - MD| = 1.5 MD error bars but z = 0.15 / hypot(0.1, 0.5) = 0.29: the old rule
    # (difference > MD error bar) called this departing; it is not
    row = one_row(1.0, 0.1, 1.15, 0.5)
    assert row["z"] == pytest.approx(0.15 / math.hypot(0.1, 0.5)) and row["departs"] is False
    # z = 5 with the exact (σ = 0) phonopy side: departs at 3, not at 6
    row = one_row(1.0, 0.01, 1.05, 0.0)
    assert row["z"] == pytest.approx(5.0) and row["departs"] is True
    assert one_row(1.0, 0.01, 1.05, 0.0, z_threshold=6.0)["departs"] is False
    # at the threshold exactly: departs (z >= threshold)
    assert departs(3.0, 3.0) is True and departs(2.999, 3.0) is False
    # no error bar on either side: no z, no claim either way
    row = one_row(1.0, 0.0, 1.05, 0.0)
    assert row["z"] is None and row["departs"] is None
    assert z_score(1.0, float("nan"), 1.2, 0.1) == pytest.approx(2.0)      # a missing error is none
    assert z_score(1.0, float("nan"), 1.2, float("nan")) is None


def test_report_states_the_threshold_and_decides_every_row_by_it(pipeline, tmp_path):
    d, result = pipeline
    assert result["z_threshold"] == 3.0
    for r in result["rows"]:
        assert r["departs"] == (r["z"] >= 3.0)
    report = (d / "report" / "report.md").read_text()
    assert "A quantity **departs** when z ≥ 3" in report
    # a lower threshold can only add departures, and the report says which threshold it used
    low = compare([f"{d / 'harmonic.json'}:all"], d / "scan.json", tmp_path / "low", z_threshold=0.5)
    assert low["n_departing"] >= result["n_departing"]
    assert [r["departs"] for r in low["rows"]] == [r["z"] >= 0.5 for r in low["rows"]]
    assert "A quantity **departs** when z ≥ 0.5" in (tmp_path / "low" / "report.md").read_text()
    with pytest.raises(ValueError, match="z-threshold"):
        compare([f"{d / 'harmonic.json'}:all"], d / "scan.json", tmp_path / "bad", z_threshold=0.0)


# --------------------------------------------------------------------------------------------
# Which baseline at which temperature
# --------------------------------------------------------------------------------------------
def test_reference_ranges_parse_and_may_not_overlap(tmp_path):
    ref = HarmonicReference.parse("out/harmonic_ortho.json:0-250")
    assert (str(ref.path), ref.t_min_K, ref.t_max_K) == ("out/harmonic_ortho.json", 0.0, 250.0)
    assert ref.covers(250.0) and not ref.covers(250.5)
    cubic = HarmonicReference.parse("c:/runs/harmonic_cubic.json:620-")     # the range after the last ':'
    assert str(cubic.path) == "c:/runs/harmonic_cubic.json" and cubic.t_max_K == math.inf
    assert cubic.covers(1e4) and not cubic.covers(600.0) and cubic.range_text == "≥ 620"
    assert HarmonicReference.parse("h.json:-300").t_min_K == -math.inf
    assert HarmonicReference.parse("h.json:all").covers(5.0)
    for bad in ("harmonic.json", "h.json:300", "h.json:a-b", "h.json:300-100"):
        with pytest.raises(ValueError, match=r"--harmonic"):
            HarmonicReference.parse(bad)
    with pytest.raises(ValueError, match=r"ranges of a.json \(0–300 K\) and b.json \(≥ 300 K\) overlap"):
        compare(["a.json:0-300", "b.json:300-"], tmp_path / "scan.json", tmp_path / "out")


def test_each_temperature_gets_the_baseline_of_its_range(pipeline, tmp_path):
    """20 K against the stable springs, 40 K against a reference with imaginary modes (its
    unstable modes named, its rows marked), and with the springs alone 40 K has none."""
    d, _ = pipeline
    result = compare([f"{d / 'harmonic.json'}:0-30", f"{d / 'harmonic_unstable.json'}:35-"],
                     d / "scan.json", tmp_path / "two")
    assert [(p["temperature_K"], p["reference"]) for p in result["temperatures"]] == \
        [(20.0, "harmonic"), (40.0, "harmonic_unstable")]
    assert {(r["temperature_K"], r["reference"]) for r in result["rows"]} == \
        {(20.0, "harmonic"), (40.0, "harmonic_unstable")}
    stable, unstable = result["references"]
    assert stable["dynamically_stable"] and stable["md_temperatures_K"] == [20.0]
    assert not unstable["dynamically_stable"] and unstable["md_temperatures_K"] == [40.0]
    labels = {m["label"] for m in unstable["unstable_modes"]}
    assert {"R", "M"} <= labels and all(m["frequency_THz"] < 0 for m in unstable["unstable_modes"])
    report = (tmp_path / "two" / "report.md").read_text()
    assert "| `harmonic_unstable` (≥ 35 K) | Pm-3m (221) | 40 | **unstable**: " in report
    r_mode = next(m for m in unstable["unstable_modes"] if m["label"] == "R")
    assert f"R [0.5, 0.5, 0.5] {r_mode['frequency_THz']:.3f} THz" in report
    assert "MSD and EFG from the stable modes only" in report
    assert "| 40 | `harmonic_unstable` † |" in report and "| 20 | `harmonic` |" in report

    alone = compare([f"{d / 'harmonic.json'}:0-30"], d / "scan.json", tmp_path / "one")
    assert [p["reference"] for p in alone["temperatures"]] == ["harmonic", None]
    assert {r["temperature_K"] for r in alone["rows"]} == {20.0}
    assert "**No harmonic reference** at 40 K" in (tmp_path / "one" / "report.md").read_text()


def test_cli_takes_ranges_and_threshold(pipeline, tmp_path, capsys):
    d, _ = pipeline
    parser = argparse.ArgumentParser(prog="efg")
    compare_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["compare", str(d / "scan.json"), "--harmonic", f"{d / 'harmonic.json'}:-30",
                              "--z-threshold", "2", "-o", str(tmp_path / "cli")])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "harmonic (Pm-3m (221), all modes real): MD at 20 K" in printed
    assert "no harmonic reference at 40 K" in printed and "(z >= 2)" in printed
    saved = json.loads((tmp_path / "cli" / "compare.json").read_text())
    assert saved["z_threshold"] == 2.0 and saved["temperatures"][1]["reference"] is None
    with pytest.raises(SystemExit):
        parser.parse_args(["compare", str(d / "scan.json"), "--harmonic", "h.json:warm", "-o", "x"])
