"""compute mlff/grade: the extrapolation grade of pair_style mlff's potential in LAMMPS against
the Python evaluation of the same file, on one and two ranks, with fix halt, and its errors.
The same comparison with a fitted cluster potential is in test_grade.py."""
import numpy as np
import pytest

from contract_models import export, graded_module, many_body_module
from lammps_run import assert_lammps_stops, read_dump_sorted, read_values, run_lammps
from pyexport.contract import build_inputs, load_model
from pyexport.lammps.data_file import write_lammps_data
from test_pair_mlff import HEADER, TYPE_ORDER, perovskite


@pytest.fixture(scope="module")
def graded_pt(tmp_path_factory):
    return export(graded_module(), tmp_path_factory.mktemp("models") / "graded.pt")


def python_grade(model_path, atoms):
    """γ_i of every atom of ``atoms`` from the Python evaluation of the exported file."""
    model, meta = load_model(model_path, kind="potential")
    model.compute_extrapolation_grade = True
    inputs = build_inputs(atoms, meta["cutoff"], meta["elements"])
    return model(*inputs.as_args())["extrapolation_grade"].detach().numpy()[:len(atoms)]


@pytest.mark.parametrize("nprocs", [None, 2])
def test_grade_equals_python(tmp_path, graded_pt, nprocs):
    atoms = perovskite(reps=(3, 2, 2), rattle=0.15, seed=31)
    write_lammps_data(tmp_path / "data.lmp", atoms, TYPE_ORDER)
    script = HEADER + f"""pair_style mlff
pair_coeff * * {graded_pt} Br Cs Pb
group notcs type 1 3
compute g all mlff/grade
compute g_notcs notcs mlff/grade
thermo_style custom step pe c_g c_g_notcs
run 0
print "gmax $(c_g:%.17g)" file values.txt
print "gmax_notcs $(c_g_notcs:%.17g)" append values.txt
write_dump all custom grade.dump id c_g c_g_notcs modify format float %.17g
"""
    run_lammps(script, tmp_path, nprocs=nprocs)
    dump = read_dump_sorted(tmp_path / "grade.dump")
    values = read_values(tmp_path / "values.txt")
    gamma = python_grade(graded_pt, atoms)
    assert np.abs(dump["c_g"] - gamma).max() <= 1e-12
    assert gamma.min() > 0.1 and np.ptp(gamma) > 0.1                     # not a vacuous comparison
    is_cs = np.array([s == "Cs" for s in atoms.get_chemical_symbols()])
    assert np.all(dump["c_g_notcs"][is_cs] == 0.0)
    assert np.abs(dump["c_g_notcs"][~is_cs] - gamma[~is_cs]).max() <= 1e-12
    assert abs(values["gmax"] - gamma.max()) <= 1e-12
    assert abs(values["gmax_notcs"] - gamma[~is_cs].max()) <= 1e-12


def test_fix_halt_stops_the_run_when_the_grade_exceeds_a_threshold(tmp_path, graded_pt):
    """The recipe of the documentation: `fix halt` on the maximum grade. The threshold lies
    between the grade of the starting structure and that of a compressed copy, so the run stops at
    the first check after the compression (step 20), not before."""
    atoms = perovskite(reps=(2, 2, 2), rattle=0.05, seed=2)
    start = python_grade(graded_pt, atoms).max()
    squeezed = atoms.copy()
    squeezed.set_cell(atoms.cell.array * 0.9, scale_atoms=True)
    threshold = 0.5 * (start + python_grade(graded_pt, squeezed).max())
    assert python_grade(graded_pt, squeezed).max() > start + 0.1
    write_lammps_data(tmp_path / "data.lmp", atoms, TYPE_ORDER)
    script = HEADER + f"""pair_style mlff
pair_coeff * * {graded_pt} Br Cs Pb
compute g all mlff/grade
variable gmax equal c_g
fix nve all nve
timestep 0.001
fix guard all halt 10 v_gmax > {threshold:.10f} error soft
thermo 5
run 15
change_box all x scale 0.9 y scale 0.9 z scale 0.9 remap
run 30
print "stopped $(step)" file values.txt
"""
    run_lammps(script, tmp_path)
    assert read_values(tmp_path / "values.txt")["stopped"] == 20


def test_grade_is_computed_only_on_the_steps_that_use_it(tmp_path):
    """The grade costs model time: over 40 MD steps with thermo output every 10 steps (which
    prints c_g) the model evaluates it 5 times (steps 0, 10, 20, 30, 40), not 41; without the
    compute, never."""
    announcing = export(graded_module(announce=True), tmp_path / "announcing.pt")
    atoms = perovskite(reps=(2, 2, 2), rattle=0.05, seed=4)
    runs = {"with_compute": "compute g all mlff/grade\nthermo_style custom step pe c_g\n",
            "without_compute": "thermo_style custom step pe\n"}
    counts = {}
    for name, lines in runs.items():
        wd = tmp_path / name
        wd.mkdir()
        write_lammps_data(wd / "data.lmp", atoms, TYPE_ORDER)
        proc = run_lammps(HEADER + f"pair_style mlff\npair_coeff * * {announcing} Br Cs Pb\n" + lines +
                          "fix nve all nve\ntimestep 0.001\nthermo 10\nrun 40\n", wd)
        counts[name] = proc.stdout.count("efgmd-test: extrapolation grade evaluated")
    assert counts == {"with_compute": 5, "without_compute": 0}


def test_grade_errors(tmp_path, graded_pt):
    plain = export(many_body_module(), tmp_path / "plain.pt")
    atoms = perovskite(seed=1)
    cases = {
        "no_active_set": (f"pair_style mlff\npair_coeff * * {plain} Br Cs Pb\ncompute g all mlff/grade\n"
                          "thermo_style custom step c_g\n",
                          f"the model {plain} of pair_style mlff has no extrapolation grade: fit a "
                          "cluster/cluster-nn potential with the active set"),
        "not_mlff": ("pair_style lj/cut 5.0\npair_coeff * * 0.01 3.0\ncompute g all mlff/grade\n"
                     "thermo_style custom step c_g\n", "compute mlff/grade requires pair_style mlff"),
        "arguments": (f"pair_style mlff\npair_coeff * * {graded_pt} Br Cs Pb\ncompute g all mlff/grade 3\n",
                      "compute mlff/grade takes no arguments after the style"),
    }
    for name, (lines, message) in cases.items():
        wd = tmp_path / name
        wd.mkdir()
        write_lammps_data(wd / "data.lmp", atoms, TYPE_ORDER)
        assert_lammps_stops(HEADER + lines + "run 0\n", wd, message, name)
