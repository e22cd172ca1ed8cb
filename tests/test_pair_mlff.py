"""pair_style mlff through the real LAMMPS executable: agreement with the Python evaluation of
the same file, with LAMMPS's own Morse, across MPI ranks, energy conservation, virial, errors."""
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.units import GPa

from contract_models import CUTOFF, MORSE, export, many_body_module, morse_module
from lammps_run import assert_lammps_stops, read_dump_sorted, read_values, run_lammps
from pyexport.calculator import MLFFCalculator
from pyexport.contract import CONTRACT_VERSION, EFGModule, export_model
from pyexport.lammps.data_file import write_lammps_data
from pyexport.units import LAMMPS_BAR_PER_EV_A3 as EV_PER_A3_IN_BAR

TYPE_ORDER = ["Br", "Cs", "Pb"]          # LAMMPS types 1..3, permuted against the model's Cs Pb Br


def perovskite(reps=(2, 2, 3), a=5.9, shear=(0.35, -0.25, 0.4), rattle=0.12, seed=7):
    """Triclinic CsPbBr3 supercell (cell already in LAMMPS's lower-triangular form), rattled."""
    unit = Atoms("CsPbBr3", scaled_positions=[[.5, .5, .5], [0, 0, 0], [.5, 0, 0], [0, .5, 0], [0, 0, .5]],
                 cell=np.eye(3) * a, pbc=True)
    atoms = unit.repeat(reps)
    cell = atoms.cell.array.copy()
    cell[1, 0], cell[2, 0], cell[2, 1] = shear
    atoms.set_cell(cell, scale_atoms=True)
    atoms.rattle(rattle, seed=seed)
    return atoms


HEADER = """units metal
atom_style atomic
boundary p p p
atom_modify map array
read_data data.lmp
"""

DUMP_STEP0 = """compute pe_atom all pe/atom
compute s_atom all stress/atom NULL
compute pe_sum all reduce sum c_pe_atom
thermo_style custom step pe press pxx pyy pzz pxy pxz pyz c_pe_sum
thermo_modify format float %.17g
run 0
print "pe $(pe:%.17g)" file values.txt
print "pxx $(pxx:%.17g)" append values.txt
print "pyy $(pyy:%.17g)" append values.txt
print "pzz $(pzz:%.17g)" append values.txt
print "pxy $(pxy:%.17g)" append values.txt
print "pxz $(pxz:%.17g)" append values.txt
print "pyz $(pyz:%.17g)" append values.txt
print "vol $(vol:%.17g)" append values.txt
write_dump all custom forces.dump id type x y z fx fy fz c_pe_atom c_s_atom[*] modify format float %.17g
"""


def lammps_step0(tmp_path, atoms, pair_lines, nprocs=None, extra=""):
    write_lammps_data(tmp_path / "data.lmp", atoms, TYPE_ORDER)
    run_lammps(HEADER + pair_lines + extra + DUMP_STEP0, tmp_path, nprocs=nprocs)
    values = read_values(tmp_path / "values.txt")
    dump = read_dump_sorted(tmp_path / "forces.dump")
    forces = np.stack([dump["fx"], dump["fy"], dump["fz"]], axis=1)
    return values, dump, forces


def lammps_stress_ev_a3(values):
    """ASE-convention stress (Voigt xx yy zz yz xz xy, eV/Å³) from LAMMPS pressure (bar), T = 0."""
    p = np.array([values[k] for k in ("pxx", "pyy", "pzz", "pyz", "pxz", "pxy")])
    return -p / EV_PER_A3_IN_BAR


@pytest.fixture(scope="module")
def many_body_pt(tmp_path_factory):
    return export(many_body_module(), tmp_path_factory.mktemp("models") / "many_body.pt")


def test_python_and_lammps_agree_triclinic_permuted_types(tmp_path, many_body_pt):
    atoms = perovskite()
    values, dump, f_lmp = lammps_step0(tmp_path, atoms, f"pair_style mlff\npair_coeff * * {many_body_pt} Br Cs Pb\n")

    atoms.calc = MLFFCalculator(many_body_pt)
    e_py = atoms.get_potential_energy()
    assert abs(values["pe"] - e_py) <= 1e-9
    assert np.abs(f_lmp - atoms.get_forces()).max() <= 1e-10
    stress_diff_gpa = (lammps_stress_ev_a3(values) - atoms.get_stress()) / GPa
    assert np.abs(stress_diff_gpa).max() <= 1e-8
    # per-atom energy (compute pe/atom) and per-atom virial (compute stress/atom, bar·Å³)
    assert np.abs(dump["c_pe_atom"] - atoms.get_potential_energies()).max() <= 1e-10
    s_atom = np.stack([dump[f"c_s_atom[{k}]"] for k in range(1, 7)], axis=1)   # xx yy zz xy xz yz
    stresses = atoms.calc.get_property("stresses") * atoms.get_volume()        # ASE voigt, eV
    # compute stress/atom = -(per-atom virial) in bar·Å³; ASE stresses·V = -(per-atom virial) in eV
    s_lmp = s_atom[:, [0, 1, 2, 5, 4, 3]] / EV_PER_A3_IN_BAR
    assert np.abs(s_lmp - stresses).max() <= 1e-9
    # the test is not vacuous: forces and stress are large compared to the tolerances
    assert np.abs(f_lmp).max() > 0.1 and np.abs(atoms.get_stress()).max() / GPa > 0.01


def test_morse_matches_lammps_native_pair_style(tmp_path):
    """External truth: the TorchScript Morse through pair_style mlff equals pair_style morse."""
    model = export(morse_module(), tmp_path / "morse.pt")
    atoms = perovskite(rattle=0.2, seed=11)
    (tmp_path / "native").mkdir()
    (tmp_path / "mlff").mkdir()
    native_coeffs = "".join(
        f"pair_coeff {min(TYPE_ORDER.index(a), TYPE_ORDER.index(b)) + 1} "
        f"{max(TYPE_ORDER.index(a), TYPE_ORDER.index(b)) + 1} "
        f"{MORSE['d0'][(a, b)]} {MORSE['alpha'][(a, b)]} {MORSE['r0'][(a, b)]}\n"
        for (a, b) in MORSE["d0"])
    v_nat, _, f_nat = lammps_step0(tmp_path / "native", atoms, f"pair_style morse {CUTOFF}\n{native_coeffs}")
    v_ml, _, f_ml = lammps_step0(tmp_path / "mlff", atoms, f"pair_style mlff\npair_coeff * * {model} Br Cs Pb\n")

    assert abs(v_ml["pe"] - v_nat["pe"]) <= 1e-10 * abs(v_nat["pe"])
    assert np.abs(f_ml - f_nat).max() <= 1e-10 * np.abs(f_nat).max()
    for key in ("pxx", "pyy", "pzz", "pxy", "pxz", "pyz"):
        assert abs(v_ml[key] - v_nat[key]) <= 1e-10 * max(abs(v_nat["pxx"]), abs(v_nat["pyy"]), abs(v_nat["pzz"]))


MD_RUN = """velocity all create 600.0 4928459 mom yes rot no dist gaussian loop geom
fix nve all nve
timestep 0.002
thermo_style custom step pe ke etotal press
thermo_modify format float %.17g
run 50
print "pe $(pe:%.17g)" file values_md.txt
write_dump all custom md.dump id x y z fx fy fz modify format float %.17g
"""


@pytest.mark.parametrize("nprocs", [1, 2, 3])
def test_mpi_ranks_agree_with_serial(tmp_path, many_body_pt, nprocs):
    """mpirun -np N against a plain serial run: step 0 to 1e-10, after 50 NVE steps to 1e-8."""
    atoms = perovskite(reps=(3, 3, 3), shear=(0.5, 0.3, -0.6), rattle=0.1, seed=3)
    pair = f"pair_style mlff\npair_coeff * * {many_body_pt} Br Cs Pb\n"
    results = {}
    for n in (None, nprocs):
        wd = tmp_path / f"np{n}"
        wd.mkdir()
        values, _, forces = lammps_step0(wd, atoms, pair, nprocs=n)
        run_lammps(HEADER + pair + MD_RUN, wd, nprocs=n)
        md = read_dump_sorted(wd / "md.dump")
        results[n] = (values["pe"], forces, read_values(wd / "values_md.txt")["pe"],
                      np.stack([md["x"], md["y"], md["z"]], 1), np.stack([md["fx"], md["fy"], md["fz"]], 1))
    e1, f1, e1_md, x1_md, f1_md = results[None]
    en, fn, en_md, xn_md, fn_md = results[nprocs]
    assert abs(en - e1) <= 1e-10 * abs(e1)
    assert np.abs(fn - f1).max() <= 1e-10
    assert abs(en_md - e1_md) <= 1e-8 * abs(e1_md)
    assert np.abs(xn_md - x1_md).max() <= 1e-8
    assert np.abs(fn_md - f1_md).max() <= 1e-8


def test_nve_conserves_energy(tmp_path, many_body_pt):
    atoms = perovskite(reps=(3, 3, 3), shear=(0.0, 0.0, 0.0), rattle=0.02, seed=5)
    write_lammps_data(tmp_path / "data.lmp", atoms, TYPE_ORDER)
    script = HEADER + f"pair_style mlff\npair_coeff * * {many_body_pt} Br Cs Pb\n" + """
velocity all create 300.0 87287 mom yes rot yes dist gaussian loop geom
fix nve all nve
timestep 0.002
thermo 20
thermo_style custom step temp pe etotal
thermo_modify format float %.17g
fix out all print 20 "$(step) $(etotal:%.17g) $(temp:%.10g)" file energy.txt screen no
run 2000
"""
    run_lammps(script, tmp_path)
    data = np.loadtxt(tmp_path / "energy.txt", comments="#")
    drift_per_atom = np.abs(data[:, 1] - data[0, 1]).max() / len(atoms)
    assert data[-1, 0] == 2000
    assert drift_per_atom <= 1e-3
    assert data[1:, 2].mean() > 50.0   # atoms really moved


def test_pressure_equals_volume_derivative_of_energy(tmp_path, many_body_pt):
    """P_virial = -dE/dV (T = 0) and P_xx = -(1/V) dE/dε_xx, by central differences of LAMMPS
    energies of homogeneously strained copies of a triclinic cell."""
    atoms = perovskite(reps=(2, 2, 2), rattle=0.08, seed=9)
    h = 1e-5
    strains = {"iso_p": np.eye(3) * h, "iso_m": -np.eye(3) * h,
               "xx_p": np.diag([h, 0, 0]), "xx_m": np.diag([-h, 0, 0]), "ref": np.zeros((3, 3))}
    script = ""
    for name, eps in strains.items():
        strained = atoms.copy()
        strained.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        write_lammps_data(tmp_path / f"{name}.lmp", strained, TYPE_ORDER)
        script += HEADER.replace("data.lmp", f"{name}.lmp") + \
            f"pair_style mlff\npair_coeff * * {many_body_pt} Br Cs Pb\nrun 0\n" + \
            f'print "e_{name} $(pe:%.17g)" append fd.txt\n' + \
            f'print "v_{name} $(vol:%.17g)" append fd.txt\n' + \
            f'print "p_{name} $(press:%.17g)" append fd.txt\n' + \
            f'print "pxx_{name} $(pxx:%.17g)" append fd.txt\nclear\n'
    run_lammps(script, tmp_path)
    v = read_values(tmp_path / "fd.txt")
    p_fd = -(v["e_iso_p"] - v["e_iso_m"]) / (v["v_iso_p"] - v["v_iso_m"]) * EV_PER_A3_IN_BAR
    assert abs(v["p_ref"] - p_fd) <= 1e-6 * abs(v["p_ref"])
    pxx_fd = -(v["e_xx_p"] - v["e_xx_m"]) / (2 * h) / v["v_ref"] * EV_PER_A3_IN_BAR
    assert abs(v["pxx_ref"] - pxx_fd) <= 1e-6 * abs(v["pxx_ref"])
    assert abs(v["p_ref"]) > 1e3   # a real pressure, not zero


def test_float32_model_runs_and_agrees_with_its_python_evaluation(tmp_path):
    model = export(many_body_module(dtype="float32"), tmp_path / "mb32.pt")
    atoms = perovskite(seed=21)
    values, _, f_lmp = lammps_step0(tmp_path, atoms, f"pair_style mlff\npair_coeff * * {model} Br Cs Pb\n")
    atoms.calc = MLFFCalculator(model)
    assert abs(values["pe"] - atoms.get_potential_energy()) <= 1e-5 * abs(values["pe"])
    assert np.abs(f_lmp - atoms.get_forces()).max() <= 1e-4


def test_threads_keyword_gives_same_result(tmp_path, many_body_pt):
    atoms = perovskite(seed=4)
    (tmp_path / "t1").mkdir()
    (tmp_path / "t2").mkdir()
    v1, _, f1 = lammps_step0(tmp_path / "t1", atoms, f"pair_style mlff threads 1\npair_coeff * * {many_body_pt} Br Cs Pb\n")
    v2, _, f2 = lammps_step0(tmp_path / "t2", atoms, f"pair_style mlff threads 2\npair_coeff * * {many_body_pt} Br Cs Pb\n")
    assert abs(v1["pe"] - v2["pe"]) <= 1e-10 * abs(v1["pe"])
    assert np.abs(f1 - f2).max() <= 1e-10


def test_hybrid_overlay_with_null_type(tmp_path, many_body_pt):
    """Types mapped to NULL are left to another style: mlff then sees the other atoms only."""
    atoms = perovskite(seed=13)
    pair = (f"pair_style hybrid/overlay mlff lj/cut 5.0\n"
            f"pair_coeff * * mlff {many_body_pt} NULL Cs Pb\n"
            f"pair_coeff * * lj/cut 0.0 1.0\n")
    values, _, f_lmp = lammps_step0(tmp_path, atoms, pair)
    without_br = atoms[[s != "Br" for s in atoms.get_chemical_symbols()]]
    without_br.calc = MLFFCalculator(many_body_pt)
    assert abs(values["pe"] - without_br.get_potential_energy()) <= 1e-9
    is_br = np.array([s == "Br" for s in atoms.get_chemical_symbols()])
    assert np.abs(f_lmp[is_br]).max() == 0.0
    assert np.abs(f_lmp[~is_br] - without_br.get_forces()).max() <= 1e-10


def test_explicit_plugin_load(tmp_path, many_body_pt):
    """`plugin load .../mlffplugin.so` works without the entry point (plain liblammps process)."""
    import subprocess
    from pathlib import Path

    from pyexport.plugin import mpi_lib_dir, plugin_path
    import lammps
    atoms = perovskite(seed=2)
    write_lammps_data(tmp_path / "data.lmp", atoms, TYPE_ORDER)
    script = f"plugin load {plugin_path()}\n" + HEADER + f"pair_style mlff\npair_coeff * * {many_body_pt} Br Cs Pb\n" + \
        'run 0\nprint "pe $(pe:%.17g)" file values.txt\n'
    (tmp_path / "in.lmp").write_text(script)
    env = {"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": mpi_lib_dir(), "HOME": str(tmp_path)}
    binary = Path(lammps.__file__).parent / "lmp"
    proc = subprocess.run([str(binary), "-in", "in.lmp", "-log", "none"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:]
    atoms.calc = MLFFCalculator(many_body_pt)
    assert abs(read_values(tmp_path / "values.txt")["pe"] - atoms.get_potential_energy()) <= 1e-9


# ------------------------------------------------------------------------------------------
# Bad input: LAMMPS stops with a message that names the problem, never a crash.
# ------------------------------------------------------------------------------------------
class _ZeroEFG(torch.nn.Module):
    def forward(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                n_local: int) -> torch.Tensor:
        return torch.zeros((n_local, 3, 3), dtype=edge_vec.dtype)


def _bad_models(tmp_path):
    efg = tmp_path / "efg.pt"
    export_model(EFGModule(_ZeroEFG(), ["Cs", "Pb", "Br"], 5.0), efg)
    future = tmp_path / "future.pt"
    module = many_body_module()
    scripted = torch.jit.script(module.eval())
    scripted.contract_version = CONTRACT_VERSION + 1
    torch.jit.save(scripted, str(future))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 this is not a torchscript archive" * 10)
    no_virial = tmp_path / "no_atom_virial.pt"
    export(many_body_module(per_atom_virial=False), no_virial)
    return efg, future, corrupt, no_virial


def test_bad_inputs_stop_lammps_with_a_message(tmp_path, many_body_pt):
    efg, future, corrupt, no_virial = _bad_models(tmp_path)
    atoms = perovskite(seed=1)
    cases = {
        "unknown_element": (f"pair_style mlff\npair_coeff * * {many_body_pt} Br Cs Xe\n",
                            "element Xe (atom type 3) is not in model"),
        "wrong_count": (f"pair_style mlff\npair_coeff * * {many_body_pt} Br Cs\n",
                        "2 element symbols given for 3 atom types"),
        "not_star_star": (f"pair_style mlff\npair_coeff 1 2 {many_body_pt} Br Cs Pb\n",
                          "Pair_coeff must start with * * for pair style mlff"),
        "missing_file": ("pair_style mlff\npair_coeff * * /nonexistent/model.pt Br Cs Pb\n",
                         "cannot open model file /nonexistent/model.pt"),
        "corrupt_file": (f"pair_style mlff\npair_coeff * * {corrupt} Br Cs Pb\n",
                         f"cannot read model file {corrupt} as a TorchScript archive"),
        "wrong_kind": (f"pair_style mlff\npair_coeff * * {efg} Br Cs Pb\n",
                       "is of kind 'efg', expected 'potential'"),
        "wrong_version": (f"pair_style mlff\npair_coeff * * {future} Br Cs Pb\n",
                          f"has contract_version {CONTRACT_VERSION + 1}"),
        "newton_off": (f"newton off\npair_style mlff\npair_coeff * * {many_body_pt} Br Cs Pb\n",
                       "requires newton pair on"),
        "bad_keyword": ("pair_style mlff speed 3\n", "Unknown pair_style mlff keyword: speed"),
        "bad_device": ("pair_style mlff device tpu\n", "device must be cpu or cuda, got tpu"),
        "bad_threads": ("pair_style mlff threads 0\n", "threads must be >= 1, got 0"),
        "no_atom_virial": (f"pair_style mlff\npair_coeff * * {no_virial} Br Cs Pb\n"
                           "compute s all stress/atom NULL\ncompute r all reduce sum c_s[1]\n"
                           "thermo_style custom step c_r\n",
                           "provides no atom_virial"),
    }
    for name, (pair, message) in cases.items():
        wd = tmp_path / name
        wd.mkdir()
        write_lammps_data(wd / "data.lmp", atoms, TYPE_ORDER)
        head = HEADER
        if pair.startswith("newton off"):
            head = head.replace("atom_style atomic\n", "atom_style atomic\nnewton off\n")
            pair = pair.replace("newton off\n", "")
        assert_lammps_stops(head + pair + "run 0\n", wd, message, name)


def test_units_other_than_metal_are_refused(tmp_path, many_body_pt):
    atoms = perovskite(seed=1)
    write_lammps_data(tmp_path / "data.lmp", atoms, TYPE_ORDER)
    script = HEADER.replace("units metal", "units real") + \
        f"pair_style mlff\npair_coeff * * {many_body_pt} Br Cs Pb\nrun 0\n"
    proc = run_lammps(script, tmp_path, check=False)
    assert proc.returncode > 0
    assert "requires units metal" in proc.stdout + proc.stderr
