"""pair_style mlff chunk N: the owned atoms evaluated N at a time (several model calls per step)
give what one call over all of them gives: energy, pressure, forces, per-atom energy and virial,
the extrapolation grade, and with a committee the force uncertainty, serially and on two ranks;
and both equal the Python evaluation of the same file."""
import numpy as np
import pytest

from contract_models import export, graded_module
from lammps_run import assert_lammps_stops, read_dump_sorted, read_values, run_lammps
from pyexport.contract import build_inputs, load_model
from pyexport.lammps.data_file import write_lammps_data
from test_pair_mlff import HEADER, TYPE_ORDER, perovskite

STEP0 = """compute pe_atom all pe/atom
compute s_atom all stress/atom NULL pair
compute g all mlff/grade
thermo_style custom step pe press c_g
run 0
print "pe $(pe:%.17g)" file values.txt
print "pxx $(pxx:%.17g)" append values.txt
print "pyz $(pyz:%.17g)" append values.txt
print "gmax $(c_g:%.17g)" append values.txt
write_dump all custom step0.dump id fx fy fz c_pe_atom c_s_atom[*] c_g modify format float %.17g
"""


@pytest.fixture(scope="module")
def graded_pt(tmp_path_factory):
    return export(graded_module(), tmp_path_factory.mktemp("models") / "graded.pt")


def step0(workdir, atoms, model, chunk, nprocs):
    workdir.mkdir()
    write_lammps_data(workdir / "data.lmp", atoms, TYPE_ORDER)
    style = "pair_style mlff" + (f" chunk {chunk}" if chunk is not None else "")
    proc = run_lammps(HEADER + f"{style}\npair_coeff * * {model} Br Cs Pb\n" + STEP0, workdir, nprocs=nprocs)
    return read_values(workdir / "values.txt"), read_dump_sorted(workdir / "step0.dump"), proc.stdout


@pytest.mark.parametrize("nprocs", [None, 2])
def test_chunks_give_the_results_of_one_call(tmp_path, graded_pt, nprocs):
    atoms = perovskite(reps=(3, 2, 2), rattle=0.15, seed=31)          # 60 atoms
    runs = {chunk: step0(tmp_path / f"chunk_{chunk}", atoms, graded_pt, chunk, nprocs) for chunk in (0, 7, None)}
    (v_one, d_one, log_one), (v_7, d_7, log_7), (v_def, d_def, _) = runs[0], runs[7], runs[None]
    assert "all owned atoms per model call" in log_one and "7 owned atoms per model call" in log_7
    for key in ("pe", "pxx", "pyz", "gmax"):
        assert abs(v_7[key] - v_one[key]) <= 1e-11 * max(1.0, abs(v_one[key])), key
        assert v_def[key] == v_one[key], key        # 60 atoms: the default chunk holds them all
    columns = [c for c in d_one if c != "id"]
    assert "c_s_atom[4]" in columns and "c_g" in columns
    for column in columns:
        scale = max(1.0, np.abs(d_one[column]).max())
        assert np.abs(d_7[column] - d_one[column]).max() <= 1e-11 * scale, column
    # and both are the Python evaluation of the file
    model, meta = load_model(graded_pt, kind="potential")
    model.compute_extrapolation_grade = True
    out = model(*build_inputs(atoms, meta["cutoff"], meta["elements"]).as_args())
    gamma = out["extrapolation_grade"].detach().numpy()[:len(atoms)]
    assert np.abs(d_7["c_g"] - gamma).max() <= 1e-12 and np.ptp(gamma) > 0.1
    from pyexport.calculator import MLFFCalculator
    atoms.calc = MLFFCalculator(graded_pt)
    forces = np.stack([d_7["fx"], d_7["fy"], d_7["fz"]], axis=1)
    assert np.abs(forces - atoms.get_forces()).max() <= 1e-10 and np.abs(forces).max() > 1e-3
    assert abs(v_7["pe"] - atoms.get_potential_energy()) <= 1e-9


def test_chunk_must_not_be_negative(tmp_path):
    assert_lammps_stops(HEADER.replace("read_data data.lmp\n", "") + "pair_style mlff chunk -3\n", tmp_path,
                        "chunk must be >= 0 (0: all owned atoms in one call), got -3")
