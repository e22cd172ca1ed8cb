"""Committees of ``cluster`` potentials (``pyexport committee fit``): the exported file against
its members evaluated one by one, the force uncertainty in Python and in LAMMPS (compute
mlff/uncertainty, serial and MPI), its growth away from the training data, and ``fix halt``.

Labels come from the smooth many-body test model (tests/contract_models.py), which the tiny
cluster basis fits well but not exactly, on 2x2x2 CsPbBr3 cells rattled by 0.03-0.05 Å.
"""
import json

import ase.io
import numpy as np
import pytest
import torch
from ase.calculators.singlepoint import SinglePointCalculator

from contract_models import export, many_body_module
from lammps_run import assert_lammps_stops, read_dump_sorted, read_values, run_lammps
from pyexport.calculator import MLFFCalculator
from pyexport.cli import main
from pyexport.committee import CommitteeEvaluator, force_deviation
from pyexport.contract import PotentialModule, build_inputs, fold_to_atoms, load_model
from pyexport.lammps.data_file import write_lammps_data
from pyexport.models.cluster import ClusterLinear
from pyexport.models.cluster_basis import ClusterBasis
from pyexport.structures import cspbbr3, rattled

ELEMENTS = ["Br", "Cs", "Pb"]          # what the fit picks: ordered by atomic number
TYPE_ORDER = ["Pb", "Br", "Cs"]        # LAMMPS types 1..3, permuted against the model
TINY = ClusterBasis.preset("tiny", cutoff=5.0)
MEMBERS = 4
A0 = 6.0                               # Å, lattice parameter of the cells


pytestmark = pytest.mark.usefixtures("one_thread")


def _label(truth, atoms):
    inputs = build_inputs(atoms, truth.cutoff, truth.elements)
    out = {k: v.detach().numpy() for k, v in truth(*inputs.as_args()).items()}
    w = 0.5 * (out["virial"] + out["virial"].T)
    labelled = atoms.copy()
    labelled.calc = SinglePointCalculator(
        labelled, energy=float(out["energy"]), forces=fold_to_atoms(out["forces"], inputs.image_of, len(atoms)),
        stress=-np.array([w[0, 0], w[1, 1], w[2, 2], w[1, 2], w[0, 2], w[0, 1]]) / atoms.get_volume())
    return labelled


@pytest.fixture(scope="module")
def committee(tmp_path_factory):
    """committee.pt fitted by the CLI to 16 small-amplitude rattles, and its metrics."""
    root = tmp_path_factory.mktemp("committee")
    truth = many_body_module()
    frames = [_label(truth, rattled(cspbbr3(a=A0), 0.03 + 0.01 * (s % 3), s)) for s in range(16)]
    ase.io.write(root / "data.xyz", frames, format="extxyz")
    path = root / "committee.pt"
    assert main(["committee", "fit", str(root / "data.xyz"), "--basis", "tiny", "--cutoff", "5.0",
                 "--split", "0.75,0.125,0.125", "--members", str(MEMBERS), "-o", str(path), "--no-progress"]) == 0
    with open(root / "committee.metrics.json") as fh:
        metrics = json.load(fh)
    return {"path": str(path), "root": root, "metrics": metrics, "truth": truth}


def _coefficients(path):
    """(K, S, F) coefficients and (K, S) reference energies stored in the exported file."""
    module, _ = load_model(path)
    return module.model.coef.detach().clone(), module.model.e0.detach().clone()


def _linear(coef, e0):
    model = ClusterLinear(len(ELEMENTS), TINY)
    with torch.no_grad():
        model.coef.copy_(coef)
        model.e0.copy_(e0)
    return PotentialModule(model.eval(), ELEMENTS, TINY.cutoff)


def _test_cell(amplitude=0.12, seed=41):
    """A triclinic, rattled 2x2x2 cell (lower-triangular, as LAMMPS wants it)."""
    atoms = cspbbr3(a=A0)
    cell = atoms.cell.array.copy()
    cell[1, 0], cell[2, 0], cell[2, 1] = 0.3, -0.2, 0.25
    atoms.set_cell(cell, scale_atoms=True)
    return rattled(atoms, amplitude, seed)


# --------------------------------------------------------------------------------------------
# The file: committee mean and member forces
# --------------------------------------------------------------------------------------------
def test_fit_writes_a_committee_model_with_metadata_and_metrics(committee, capsys):
    module, meta = load_model(committee["path"], kind="potential")
    assert meta["committee_size"] == MEMBERS and module.committee_size == MEMBERS
    assert meta["model_type"] == "cluster-committee" and meta["elements"] == ELEMENTS and meta["cutoff"] == 5.0
    assert meta["hyperparameters"]["members"] == MEMBERS
    fit = committee["metrics"]["fit"]
    assert fit["split_sizes"] == {"train": 12, "val": 2, "test": 2}
    # bootstrap resamples: 12 draws each, with repeats, so fewer distinct structures
    assert all(len(s) == 12 for s in fit["bootstrap_sources"])
    assert all(n < 12 for n in fit["bootstrap_distinct_structures"])
    assert len(fit["val_loss"]["members"]) == MEMBERS
    unc = committee["metrics"]["force_uncertainty"]["val"]
    assert unc["n_atoms"] == 80 and unc["sigma_mean_meV_per_A"] > 0
    # the members really differ, and the coefficients of different members are not equal
    coef, _ = _coefficients(committee["path"])
    assert coef.shape == (MEMBERS, 3, module.model.descriptor.n_features)
    assert torch.abs(coef[0] - coef[1]).max() > 1e-6 * torch.abs(coef).max()

    capsys.readouterr()
    assert main(["inspect", committee["path"]]) == 0
    text = capsys.readouterr().out
    assert "committee_size     4" in text and "mean σ" in text


def test_mean_outputs_equal_cluster_model_with_averaged_coefficients(committee):
    """(a) energy, atom energies, forces, virials of the file = one ClusterLinear with the mean
    coefficients, to 1e-10."""
    module, _ = load_model(committee["path"])
    coef, e0 = _coefficients(committee["path"])
    mean = _linear(coef.mean(0), e0.mean(0))
    inputs = build_inputs(_test_cell(), 5.0, ELEMENTS)
    a, b = module(*inputs.as_args()), mean(*inputs.as_args())
    for key in ("energy", "atom_energy", "forces", "virial", "atom_virial"):
        assert torch.abs(a[key] - b[key]).max() <= 1e-10, key
    assert torch.abs(a["forces"]).max() > 0.1     # not vacuous


def test_python_uncertainty_equals_members_evaluated_one_by_one(committee):
    """(b) committee_forces rows are each member's forces, and the calculator's σ_i is the
    deviation of the members' folded forces, computed here directly in numpy."""
    module, _ = load_model(committee["path"])
    coef, e0 = _coefficients(committee["path"])
    atoms = _test_cell()
    inputs = build_inputs(atoms, 5.0, ELEMENTS)
    rows = module(*inputs.as_args())["committee_forces"]
    assert rows.shape == (MEMBERS, inputs.pos.shape[0], 3)
    members = []
    for k in range(MEMBERS):
        f_rows = _linear(coef[k], e0[k])(*inputs.as_args())["forces"]
        assert torch.abs(rows[k] - f_rows).max() <= 1e-10
        members.append(fold_to_atoms(f_rows.detach().numpy(), inputs.image_of, len(atoms)))
    members = np.stack(members)
    mean = members.mean(axis=0)
    sigma = np.sqrt(np.mean([np.sum((f - mean) ** 2, axis=1) for f in members], axis=0))

    atoms.calc = MLFFCalculator(committee["path"])
    assert np.abs(atoms.calc.get_property("force_uncertainty", atoms) - sigma).max() <= 1e-10
    assert np.abs(atoms.get_forces() - mean).max() <= 1e-10
    assert np.abs(CommitteeEvaluator(committee["path"]).force_uncertainty(atoms) - sigma).max() <= 1e-10
    assert sigma.min() > 1e-6                # every atom has a non-trivial spread


# --------------------------------------------------------------------------------------------
# LAMMPS: compute mlff/uncertainty
# --------------------------------------------------------------------------------------------
HEADER = """units metal
atom_style atomic
boundary p p p
atom_modify map array
read_data data.lmp
"""


@pytest.mark.parametrize("nprocs,chunk", [(None, ""), (2, ""), (2, " chunk 5")])
def test_lammps_uncertainty_matches_python(tmp_path, committee, nprocs, chunk):
    """(c) per-atom σ_i (dump), its max (thermo variable) and the max over a group, serial and
    on 2 MPI ranks, also with the owned atoms evaluated 5 per model call (the members' forces of
    every call add up before σ), equal the Python evaluation of the same file to 1e-9 eV/Å."""
    atoms = _test_cell()
    write_lammps_data(tmp_path / "data.lmp", atoms, TYPE_ORDER)
    script = HEADER + f"pair_style mlff{chunk}\npair_coeff * * {committee['path']} {' '.join(TYPE_ORDER)}\n" + """
group bromine type 2
compute unc all mlff/uncertainty
compute unc_br bromine mlff/uncertainty
variable umax equal c_unc
variable umax_br equal c_unc_br
thermo_style custom step pe c_unc c_unc_br
thermo_modify format float %.17g
run 0
print "umax ${umax}" file values.txt
print "umax_br ${umax_br}" append values.txt
write_dump all custom sigma.dump id type fx fy fz c_unc c_unc_br modify format float %.17g
"""
    run_lammps(script, tmp_path, nprocs=nprocs)
    dump = read_dump_sorted(tmp_path / "sigma.dump")
    values = read_values(tmp_path / "values.txt")

    atoms.calc = MLFFCalculator(committee["path"])
    sigma = atoms.calc.get_property("force_uncertainty", atoms)
    is_br = np.array(atoms.get_chemical_symbols()) == "Br"
    assert np.abs(dump["c_unc"] - sigma).max() <= 1e-9
    assert abs(values["umax"] - sigma.max()) <= 1e-9
    assert np.abs(dump["c_unc_br"] - np.where(is_br, sigma, 0.0)).max() <= 1e-9
    assert abs(values["umax_br"] - sigma[is_br].max()) <= 1e-9
    assert sigma[is_br].max() < sigma.max()             # the group makes a difference
    forces = np.stack([dump["fx"], dump["fy"], dump["fz"]], axis=1)
    assert np.abs(forces - atoms.get_forces()).max() <= 1e-10
    assert sigma.max() > 1e-3                            # far above the tolerance


# --------------------------------------------------------------------------------------------
# The uncertainty grows away from the training data
# --------------------------------------------------------------------------------------------
def test_uncertainty_grows_with_rattle_amplitude(committee):
    """(d) trained on rattles of 0.03-0.05 Å: the mean (over 6 random rattles) of max_i σ_i
    increases with the rattle amplitude, and the largest is far above the smallest."""
    evaluator = CommitteeEvaluator(committee["path"])
    amplitudes = [0.02, 0.05, 0.1, 0.2]
    mean_max = [np.mean([evaluator.max_force_uncertainty(rattled(cspbbr3(a=A0), amp, 1000 + s))
                         for s in range(6)]) for amp in amplitudes]
    assert np.all(np.diff(mean_max) > 0), mean_max
    assert mean_max[-1] > 20 * mean_max[0], mean_max
    # inside the training domain the spread is below the committee mean's error on held-out data
    val = committee["metrics"]["force_uncertainty"]["val"]
    assert mean_max[0] * 1000 < 5 * val["force_error_rms_meV_per_A"]


# --------------------------------------------------------------------------------------------
# fix halt stops an MD that leaves the training domain
# --------------------------------------------------------------------------------------------
def _hot_md(tmp_path, model, threshold, steps=60):
    atoms = rattled(cspbbr3(a=A0), 0.03, 99)     # inside the training domain at the start
    write_lammps_data(tmp_path / "data.lmp", atoms, TYPE_ORDER)
    script = HEADER + f"pair_style mlff\npair_coeff * * {model} {' '.join(TYPE_ORDER)}\n" + f"""
compute unc all mlff/uncertainty
variable umax equal c_unc
velocity all create 1500.0 4928459 mom yes rot no dist gaussian loop geom
fix nve all nve
timestep 0.002
thermo 5
thermo_style custom step temp pe c_unc
fix trace all print 1 "$(step) $(c_unc:%.17g)" file sigma.txt screen no
fix stop all halt 5 v_umax > {threshold} error soft
run {steps}
print "last_step $(step)" file values.txt
"""
    proc = run_lammps(script, tmp_path)
    trace = np.loadtxt(tmp_path / "sigma.txt", comments="#")
    return proc, trace, read_values(tmp_path / "values.txt")["last_step"]


def test_fix_halt_stops_md_when_uncertainty_exceeds_threshold(tmp_path, committee):
    """(e) a hot MD (1500 K) leaves the small-amplitude training domain: with a threshold of
    0.005 eV/Å fix halt stops it at the first check (every 5 steps) where max σ exceeds it;
    with 10 eV/Å it runs all 60 steps."""
    (tmp_path / "low").mkdir()
    (tmp_path / "high").mkdir()
    threshold = 0.005
    proc, trace, last = _hot_md(tmp_path / "low", committee["path"], threshold)
    text = proc.stdout
    assert "Fix halt condition for fix-id stop met on step" in text
    assert 0 < last < 60 and last % 5 == 0
    sigma = dict(zip(trace[:, 0].astype(int), trace[:, 1]))
    assert sigma[0] < threshold                          # it started inside
    assert sigma[int(last)] > threshold
    assert all(sigma[s] <= threshold for s in range(5, int(last), 5))

    proc, trace, last = _hot_md(tmp_path / "high", committee["path"], 10.0)
    assert last == 60 and "Fix halt condition" not in proc.stdout
    assert trace[-1, 0] == 60 and trace[:, 1].max() > threshold   # the same MD went outside


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------
def test_bad_inputs_name_the_problem(tmp_path, committee, capsys):
    """(f) compute mlff/uncertainty without a committee or without pair_style mlff stops
    LAMMPS with a message; --members 1 is a clear CLI error."""
    single = export(many_body_module(), tmp_path / "single.pt")
    atoms = _test_cell()
    cases = {
        "not_committee": (f"pair_style mlff\npair_coeff * * {single} Pb Br Cs\n"
                          "compute unc all mlff/uncertainty\nthermo_style custom step c_unc\n",
                          f"the model {single} of pair_style mlff is not a committee"),
        "no_mlff": ("pair_style lj/cut 5.0\npair_coeff * * 0.01 3.0\n"
                    "compute unc all mlff/uncertainty\nthermo_style custom step c_unc\n",
                    "compute mlff/uncertainty requires pair_style mlff"),
        "arguments": (f"pair_style mlff\npair_coeff * * {committee['path']} Pb Br Cs\n"
                      "compute unc all mlff/uncertainty 0.3\n",
                      "compute mlff/uncertainty takes no arguments"),
    }
    for name, (lines, message) in cases.items():
        wd = tmp_path / name
        wd.mkdir()
        write_lammps_data(wd / "data.lmp", atoms, TYPE_ORDER)
        assert_lammps_stops(HEADER + lines + "run 0\n", wd, message, name)

    capsys.readouterr()
    data = str(committee["root"] / "data.xyz")
    assert main(["committee", "fit", data, "--basis", "tiny", "--members", "1", "-o", str(tmp_path / "c.pt")]) == 1
    assert "--members must be an integer of at least 2" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not a committee model"):
        CommitteeEvaluator(single)
    with pytest.raises(ValueError, match=r"expected shape \(K, n, 3\)"):
        force_deviation(np.zeros((3, 4)))
