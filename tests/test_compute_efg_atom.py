"""compute efg/atom (in situ EFG in LAMMPS) against the Python evaluation of the same file."""
import numpy as np
import pytest

from contract_models import export, many_body_module, point_charge_efg_module
from lammps_run import read_dump_sorted, run_lammps
from pyexport.contract import build_inputs, load_model
from pyexport.lammps.data_file import write_lammps_data
from test_pair_mlff import HEADER, TYPE_ORDER, perovskite

VOIGT6 = [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]   # VASP order xx yy zz xy xz yz


def python_efg(model_path, atoms):
    model, meta = load_model(model_path, kind="efg")
    inputs = build_inputs(atoms, meta["cutoff"], meta["elements"])
    return model(*inputs.as_args())["efg"].detach().numpy()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("efgmodels")
    return export(many_body_module(), d / "pot.pt"), export(point_charge_efg_module(), d / "efg.pt")


@pytest.mark.parametrize("nprocs", [None, 2])
def test_compute_efg_atom_equals_python(tmp_path, models, nprocs):
    pot, efg = models
    atoms = perovskite(reps=(3, 2, 2), rattle=0.15, seed=17)
    write_lammps_data(tmp_path / "data.lmp", atoms, TYPE_ORDER)
    script = HEADER + f"""pair_style mlff
pair_coeff * * {pot} Br Cs Pb
group notcs type 1 3
compute efg all efg/atom {efg} Br Cs Pb
compute efg_g notcs efg/atom {efg} Br Cs Pb
run 0
write_dump all custom efg.dump id c_efg[*] c_efg_g[*] modify format float %.17g
"""
    run_lammps(script, tmp_path, nprocs=nprocs)
    dump = read_dump_sorted(tmp_path / "efg.dump")
    v_py = python_efg(efg, atoms)
    lmp = np.stack([dump[f"c_efg[{k + 1}]"] for k in range(6)], axis=1)
    py6 = np.stack([v_py[:, a, b] for a, b in VOIGT6], axis=1)
    assert np.abs(lmp - py6).max() <= 1e-10
    assert np.abs(py6).max() > 0.1                      # not a vacuous comparison
    grouped = np.stack([dump[f"c_efg_g[{k + 1}]"] for k in range(6)], axis=1)
    is_cs = np.array([s == "Cs" for s in atoms.get_chemical_symbols()])
    assert np.all(grouped[is_cs] == 0.0)
    assert np.abs(grouped[~is_cs] - py6[~is_cs]).max() <= 1e-10


@pytest.mark.parametrize("nprocs", [None, 2])
def test_compute_efg_atom_has_its_own_cutoff(tmp_path, models, nprocs):
    """With pair_style hybrid/overlay the pair list of Br-Br pairs has lj/cut's 2 A + skin, less
    than the Br-Br distance (4.2 A) and the EFG cutoff (5.5 A): the compute builds its own list
    with the EFG model's cutoff and equals the Python evaluation of the frame. It used to miss
    those neighbours silently."""
    pot, efg = models
    atoms = perovskite(reps=(3, 2, 2), rattle=0.15, seed=23)
    write_lammps_data(tmp_path / "data.lmp", atoms, TYPE_ORDER)
    script = HEADER + f"""pair_style hybrid/overlay mlff lj/cut 2.0
pair_coeff * * mlff {pot} NULL Cs Pb
pair_coeff * * lj/cut 0.0 1.0
compute efg all efg/atom {efg} Br Cs Pb
run 0
write_dump all custom efg.dump id c_efg[*] modify format float %.17g
"""
    run_lammps(script, tmp_path, nprocs=nprocs)
    dump = read_dump_sorted(tmp_path / "efg.dump")
    v_py = python_efg(efg, atoms)
    lmp = np.stack([dump[f"c_efg[{k + 1}]"] for k in range(6)], axis=1)
    py6 = np.stack([v_py[:, a, b] for a, b in VOIGT6], axis=1)
    assert np.abs(lmp - py6).max() <= 1e-10
    assert np.abs(py6).max() > 0.1


def test_compute_efg_atom_bad_inputs(tmp_path, models):
    pot, efg = models
    atoms = perovskite(seed=1)
    cases = {
        "potential_as_efg": (f"compute e all efg/atom {pot} Br Cs Pb\n", "is of kind 'potential', expected 'efg'"),
        "unknown_element": (f"compute e all efg/atom {efg} Br Cs Kr\n", "element Kr (atom type 3) is not in model"),
        "too_few": (f"compute e all efg/atom {efg} Br Cs\n", "2 element symbols given for 3 atom types"),
        "short_ghost_cutoff": (f"neighbor 0.1 bin\ncompute e all efg/atom {efg} Br Cs Pb\n"
                               "dump d all custom 1 x.dump id c_e[1]\n",
                               "less than the EFG model cutoff 5.5 A + skin 0.1 A; use comm_modify cutoff 5.6"),
    }
    for name, (lines, message) in cases.items():
        wd = tmp_path / name
        wd.mkdir()
        write_lammps_data(wd / "data.lmp", atoms, TYPE_ORDER)
        script = HEADER + "pair_style lj/cut 5.0\npair_coeff * * 0.0 1.0\n" + lines + "run 0\n"
        proc = run_lammps(script, wd, check=False)
        text = proc.stdout + proc.stderr
        assert proc.returncode > 0 and message in text, f"{name}: {text[-1200:]}"
