"""The extrapolation grade γ of `cluster` potentials (pyexport.models.grade): MaxVol active set of the
training atoms, stored by `pyexport fit` and exported inside the model.

Data: the relaxed phases and every 10th structure of the shipped CsPbBr3 reference set (7net-0 labels: phases, strains,
rattles, MD and active-learning frames), fitted with the tiny basis."""
import lzma
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch

from pyexport.calculator import MLFFCalculator
from pyexport.cli import main
from pyexport.contract import GradedPotentialModule, PotentialModule, build_inputs
from pyexport.training.checkpoints import load_checkpoint, model_from_checkpoint, potential_from_checkpoint
from pyexport.training.data import split_indices
from pyexport.models.grade import ExtrapolationGrade, grade_numpy, maxvol, species_active_set

REFERENCE = Path(__file__).resolve().parents[1] / "examples" / "cspbbr3" / "reference" / "cspbbr3_7net0.extxyz.xz"
CUTOFF = 6.5


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("grade")
    (root / "all.xyz").write_bytes(lzma.decompress(REFERENCE.read_bytes()))
    everything = ase.io.read(root / "all.xyz", index=":")
    minima = [a for a in everything if a.info.get("config_type") == "phase_min"]
    ase.io.write(root / "data.xyz", minima + everything[::10], format="extxyz")
    ckpt = str(root / "pot.ckpt")
    assert main(["fit", str(root / "data.xyz"), "--basis", "tiny", "--cutoff", str(CUTOFF),
                 "--lambdas", "1e-8:1e-2:4", "-o", ckpt, "--no-progress"]) == 0
    assert main(["export", ckpt, "-o", str(root / "pot.pt")]) == 0
    frames = ase.io.read(root / "data.xyz", index=":")    # as the fit read them
    train = split_indices(len(frames), (0.8, 0.1, 0.1), 0)["train"]
    return {"root": root, "ckpt": ckpt, "pt": str(root / "pot.pt"), "frames": frames,
            "train": [frames[i] for i in train],
            "ground": next(a for a in frames if a.info.get("config_type") == "phase_min"
                           and a.info.get("phase") == "orthorhombic")}


def grades(calc, atoms):
    atoms = atoms.copy()
    atoms.calc = calc
    return calc.get_property("extrapolation_grade", atoms)


def test_maxvol_spans_every_row_with_coefficients_at_most_one():
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(300, 12)) @ rng.normal(size=(12, 12))
    chosen = maxvol(rows)
    assert len(set(chosen.tolist())) == 12
    coef = rows @ np.linalg.inv(rows[chosen])
    assert np.abs(coef).max() <= 1.0 + 1e-9
    assert np.allclose(coef[chosen], np.eye(12), atol=1e-9)
    # a local maximum of |det|: no single swap increases it
    det = abs(np.linalg.det(rows[chosen]))
    for j in range(12):
        for i in rng.choice(300, 20, replace=False):
            trial = chosen.copy()
            trial[j] = i
            assert abs(np.linalg.det(rows[trial])) <= det * (1.0 + 1e-9)


def test_directions_the_data_hardly_spans_are_left_out_of_the_grade():
    """Features with one direction of almost no spread in the training rows (1e-9 of the others):
    kept (rtol 1e-10), a small step along it gives a huge γ; left out (the default 1e-6), the
    same step leaves γ where the other features put it. Training rows stay at γ ≤ 1 either way."""
    rng = np.random.default_rng(5)
    base = rng.normal(size=(400, 6))
    features = np.concatenate([base, base[:, :1] + 1e-9 * rng.normal(size=(400, 1))], axis=1)
    probe = features[:1].copy()
    probe[0, 6] += 1e-4                       # off the near-null direction by 1e-4 of a unit step
    for rtol, rank in ((1e-10, 8), (1e-6, 7)):
        active = species_active_set(features, rtol)
        assert active.rank == rank
        inside = np.abs(features @ active.weight + active.bias).max(axis=1)
        assert inside.max() <= 1.0 + 1e-6          # MaxVol tolerance and the near-singular solve
        gamma = float(np.abs(probe @ active.weight + active.bias).max())
        assert (gamma > 100.0) if rtol == 1e-10 else (gamma <= 1.0 + 1e-6)


def test_active_set_rtol_option_sets_the_rank(graded, tmp_path):
    ranks = {}
    for rtol in ("1e-6", "1e-3"):
        ckpt = str(tmp_path / f"pot_{rtol}.ckpt")
        assert main(["fit", str(graded["root"] / "data.xyz"), "--basis", "tiny", "--cutoff", str(CUTOFF),
                     "--lambdas", "1e-8:1e-2:4", "--active-set-rtol", rtol, "-o", ckpt, "--no-progress"]) == 0
        species = load_checkpoint(ckpt)["active_set"]["species"]
        ranks[rtol] = {e: v["rank"] for e, v in species.items()}
    default = {e: v["rank"] for e, v in load_checkpoint(graded["ckpt"])["active_set"]["species"].items()}
    assert ranks["1e-6"] == default                        # 1e-6 is the default
    assert all(ranks["1e-3"][e] < default[e] for e in default)


def test_training_structures_are_inside_the_active_set(graded):
    calc = MLFFCalculator(graded["pt"])
    worst = max(grades(calc, atoms).max() for atoms in graded["train"])
    assert worst <= 1.0 + 1e-6
    assert worst > 0.5     # the active rows themselves sit at 1


def test_grade_rises_with_rattle_amplitude(graded):
    calc = MLFFCalculator(graded["pt"])
    ground = graded["ground"].repeat((2, 1, 1))
    noise = np.random.default_rng(0).normal(size=(len(ground), 3))
    maxima = []
    for sigma in (0.0, 0.1, 0.2, 0.35, 0.5):
        atoms = ground.copy()
        atoms.positions += sigma * noise
        maxima.append(grades(calc, atoms).max())
    assert maxima[0] <= 1.0 + 1e-6          # the relaxed ground state is in the data
    assert all(b > a for a, b in zip(maxima[1:], maxima[2:])), maxima
    assert maxima[-1] > 2.0


def test_grade_rises_with_strain_beyond_the_data(graded):
    calc = MLFFCalculator(graded["pt"])
    ground = graded["ground"]
    maxima = []
    for strain in (0.0, 0.08, 0.15, 0.25):
        atoms = ground.copy()
        atoms.set_cell(atoms.cell.array * (1.0 + strain), scale_atoms=True)
        maxima.append(grades(calc, atoms).max())
    assert all(b > a for a, b in zip(maxima, maxima[1:])), maxima
    assert maxima[-1] > 2.0


def test_grade_is_the_active_set_projection_and_leaves_energies_alone(graded):
    """The exported grade equals max |x W + b| of the checkpoint's arrays on the model's own
    invariants; with the flag off the module returns no grade; energies and forces are those of
    the plain PotentialModule bit for bit."""
    ckpt = load_checkpoint(graded["ckpt"])
    module = potential_from_checkpoint(ckpt)
    assert isinstance(module, GradedPotentialModule)
    plain = PotentialModule(model_from_checkpoint(ckpt), ckpt["elements"], ckpt["cutoff"])
    atoms = graded["frames"][-1]
    inputs = build_inputs(atoms, CUTOFF, ckpt["elements"])
    off = module(*inputs.as_args())
    assert "extrapolation_grade" not in off
    module.compute_extrapolation_grade = True
    on = module(*inputs.as_args())
    ref = plain(*inputs.as_args())
    for key in ("energy", "forces", "virial", "atom_virial"):
        assert torch.equal(on[key], ref[key]), key
        assert torch.equal(off[key], ref[key]), key
    model = model_from_checkpoint(ckpt)
    pos = inputs.pos
    edge_vec = pos[inputs.edge_index[1]] - pos[inputs.edge_index[0]]
    _, features = model.energy_and_features(edge_vec, inputs.species, inputs.edge_index, inputs.n_local)
    expected = grade_numpy(features.detach().numpy(), inputs.species[: inputs.n_local].numpy(), ckpt["active_set"])
    assert np.allclose(on["extrapolation_grade"].numpy(), expected, rtol=1e-10, atol=1e-12)


def test_scripted_float32_grade_follows_float64(graded):
    ckpt = load_checkpoint(graded["ckpt"])
    atoms = graded["frames"][3]
    inputs = build_inputs(atoms, CUTOFF, ckpt["elements"])
    out = {}
    for dtype in ("float64", "float32"):
        module = torch.jit.script(potential_from_checkpoint(ckpt, dtype))
        module.compute_extrapolation_grade = True
        out[dtype] = module(*inputs.as_args())["extrapolation_grade"]
        assert out[dtype].dtype == torch.float64
    # the projection through A⁻¹ amplifies float32 rounding of the invariants (0.2 % here):
    # good enough for a threshold quantity
    assert torch.allclose(out["float32"], out["float64"], rtol=1e-2, atol=1e-3)


def test_checkpoint_records_the_active_set(graded):
    ckpt = load_checkpoint(graded["ckpt"])
    active = ckpt["active_set"]
    assert active["weight"].shape[0] == 3 and active["bias"].shape == (3, active["weight"].shape[2])
    assert active["size"] == sum(v["rank"] for v in active["species"].values())
    assert ExtrapolationGrade(active).size == active["size"]
    assert ckpt["metrics"]["active_set"]["size"] == active["size"]


def energy_and_forces(calc, atoms):
    """(eV, (n, 3) eV/Å) of ``calc`` on a copy of ``atoms``."""
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_potential_energy(), atoms.get_forces()


def test_model_without_active_set_has_no_grade(graded, tmp_path):
    from pyexport.contract import export_model

    ckpt = load_checkpoint(graded["ckpt"])
    ckpt["active_set"] = None          # what `pyexport fit --no-active-set` writes
    export_model(potential_from_checkpoint(ckpt), tmp_path / "plain.pt")
    calc = MLFFCalculator(str(tmp_path / "plain.pt"))
    assert "extrapolation_grade" not in calc.implemented_properties
    from ase.calculators.calculator import PropertyNotImplementedError

    with pytest.raises(PropertyNotImplementedError):
        grades(calc, graded["ground"])


def test_export_can_leave_the_active_set_out(graded, tmp_path, capsys):
    """`pyexport export --no-active-set`: the same energies and forces without the grade, in a file
    smaller by the active set's float64 arrays; refused for a checkpoint that has none."""
    import json
    import zipfile
    from ase.calculators.calculator import PropertyNotImplementedError
    from pyexport.training.checkpoints import write_checkpoint

    lean = tmp_path / "lean.pt"
    assert main(["export", graded["ckpt"], "-o", str(lean), "--no-active-set"]) == 0
    active = load_checkpoint(graded["ckpt"])["active_set"]
    arrays = 8 * (active["weight"].numel() + active["bias"].numel())
    assert Path(graded["pt"]).stat().st_size - lean.stat().st_size >= 0.95 * arrays
    full, plain = MLFFCalculator(graded["pt"]), MLFFCalculator(str(lean))
    assert "extrapolation_grade" in full.implemented_properties
    assert "extrapolation_grade" not in plain.implemented_properties
    atoms = graded["frames"][-1].copy()
    atoms.rattle(0.05, seed=1)
    (e_full, f_full), (e_plain, f_plain) = (energy_and_forces(calc, atoms) for calc in (full, plain))
    assert abs(e_full - e_plain) < 1e-9 and np.abs(f_full - f_plain).max() < 1e-10
    with pytest.raises(PropertyNotImplementedError):
        grades(plain, atoms)
    with zipfile.ZipFile(lean) as archive:
        meta = json.loads(archive.read(next(n for n in archive.namelist() if n.endswith("metadata.json"))))
    assert meta["active_set_left_out"] is True
    # a checkpoint without an active set has nothing to leave out: one line naming it
    bare = load_checkpoint(graded["ckpt"])
    bare["active_set"] = None
    write_checkpoint(bare, str(tmp_path / "bare.ckpt"))
    capsys.readouterr()
    assert main(["export", str(tmp_path / "bare.ckpt"), "-o", str(tmp_path / "x.pt"), "--no-active-set"]) != 0
    err = capsys.readouterr().err
    assert "bare.ckpt" in err and "without an active set" in err and not (tmp_path / "x.pt").exists()


def test_no_active_set_option(graded):
    from pyexport.cli import build_parser
    from pyexport.cli.fit import fit_config_from_options, resolve_fit_options

    options = resolve_fit_options(build_parser().parse_args(["fit", "x.xyz", "--no-active-set"]))
    assert fit_config_from_options(options).active_set is False
    options = resolve_fit_options(build_parser().parse_args(["fit", "x.xyz"]))
    assert fit_config_from_options(options).active_set is True


def test_eval_reports_the_grade_of_every_structure(graded, tmp_path):
    out = tmp_path / "eval.json"
    assert main(["eval", graded["pt"], str(graded["root"] / "data.xyz"), "-o", str(out)]) == 0
    import json

    grade = json.loads(out.read_text())["extrapolation_grade"]
    calc = MLFFCalculator(graded["pt"])
    expected = [grades(calc, atoms).max() for atoms in graded["frames"]]
    assert np.allclose(grade["per_structure_max"], expected, rtol=0, atol=1e-12)
    assert grade["structures_above_1"] == sum(g > 1.0 for g in expected)


@pytest.mark.parametrize("nprocs", [None, 2])
def test_lammps_grade_of_the_fitted_potential_equals_python(graded, tmp_path, nprocs):
    """compute mlff/grade with the real fitted cluster potential, serial and on 2 MPI ranks, on a
    rattled 2x2x2 supercell of the orthorhombic ground state (ghost atoms on every side). The
    rattle (σ 0.3 Å) is twice the largest of the reference's rattles: since the set holds 800 K
    frames of 2,560 atoms, σ 0.15 Å stays inside the data (max γ 0.96)."""
    from lammps_run import read_dump_sorted, read_values, run_lammps
    from pyexport.lammps.data_file import write_lammps_data

    atoms = graded["ground"].repeat((2, 2, 2))
    atoms.rattle(0.3, seed=11)
    expected = grades(MLFFCalculator(graded["pt"]), atoms)
    order = ["Cs", "Pb", "Br"]
    write_lammps_data(tmp_path / "data.lmp", atoms, order)
    run_lammps(f"""units metal
atom_style atomic
boundary p p p
atom_modify map array
read_data data.lmp
pair_style mlff
pair_coeff * * {graded['pt']} {' '.join(order)}
compute g all mlff/grade
thermo_style custom step pe c_g
run 0
print "gmax $(c_g:%.17g)" file values.txt
write_dump all custom grade.dump id c_g modify format float %.17g
""", tmp_path, nprocs=nprocs)
    gamma = read_dump_sorted(tmp_path / "grade.dump")["c_g"]
    # neighbour sums in LAMMPS's order: rounding ~1e-14 in the invariants, amplified by A⁻¹
    assert np.abs(gamma - expected).max() <= 1e-10
    assert abs(read_values(tmp_path / "values.txt")["gmax"] - expected.max()) <= 1e-10
    assert expected.max() > 1.0          # rattled beyond the data somewhere: a grade worth comparing


def test_cluster_nn_is_graded_on_the_same_invariants(graded):
    """cluster-nn reads the invariants of the same descriptor: with the linear fit's active set its
    scripted, exported grade equals the cluster model's (the network's output does not enter)."""
    from pyexport.contract import export_model
    from pyexport.models.cluster import ClusterNN
    from pyexport.models.cluster_basis import ClusterBasis

    ckpt = load_checkpoint(graded["ckpt"])
    basis = ClusterBasis.from_dict(ckpt["hyperparameters"]["basis"])
    torch.manual_seed(0)
    nn = ClusterNN(len(ckpt["elements"]), basis, hidden=(8,), elements=ckpt["elements"])
    linear = model_from_checkpoint(ckpt).model          # the fitted cluster model inside its core
    with torch.no_grad():
        nn.coef.copy_(linear.coef)
        nn.e0.copy_(linear.e0)
        for p in nn.mlps.parameters():
            p.normal_(0.0, 0.1)
    module = GradedPotentialModule(nn, ExtrapolationGrade(ckpt["active_set"]), ckpt["elements"], ckpt["cutoff"])
    scripted = export_model(module, graded["root"] / "nn.pt")
    atoms = graded["ground"].copy()
    atoms.rattle(0.2, seed=3)
    inputs = build_inputs(atoms, CUTOFF, ckpt["elements"])
    scripted.compute_extrapolation_grade = True
    out = scripted(*inputs.as_args())
    assert np.allclose(out["extrapolation_grade"].numpy(), grades(MLFFCalculator(graded["pt"]), atoms),
                       rtol=1e-10, atol=1e-12)
    plain = potential_from_checkpoint(ckpt)
    assert not torch.allclose(out["energy"], plain(*inputs.as_args())["energy"])   # a different energy model
