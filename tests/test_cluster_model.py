"""The cluster / cluster-nn potentials: symmetry, derivatives, locality, export, and the fit.

Structures are rattled 2x2x2 CsPbBr3 cells (40 atoms); models have random coefficients scaled so
that per-atom energies are of order 1 eV, which makes the absolute tolerances below meaningful.
"""
import math

import numpy as np
import pytest
import torch
from ase import Atoms
from scipy.spatial.transform import Rotation

from pyexport.contract import PotentialModule, build_inputs, export_model, fold_to_atoms, load_model
from pyexport.training.batches import batch_forward, batches, make_batch
from pyexport.training.data import Structure, prepare, split_indices
from pyexport.training.design import design_rows
from pyexport.training.loss import LossWeights, mean_loss
from pyexport.training.metrics import error_metrics, predict
from pyexport.training.nn import NNTraining, standardise, start_nn, train_nn
from pyexport.training.ridge import fit_linear
from pyexport.units import GPA_PER_EV_A3
from pyexport.models.cluster import ClusterLinear, ClusterNN
from pyexport.models.cluster_basis import (ClusterBasis, ClusterDescriptor, RadialBasis, SphericalHarmonics,
                                           _coupling_triples, gaunt_tensor)
from pyexport.structures import cspbbr3, rattled

ELEMENTS = ["Cs", "Pb", "Br"]
BASIS = ClusterBasis(cutoff=5.0, n_radial_2=4, n_radial_3=3, l_max_3=3, n_radial_4=2, l_max_4=2)


def _structure(seed=0, stdev=0.15):
    return rattled(cspbbr3(repeat=(2, 2, 2)), stdev, seed)


def _random_model(cls=ClusterLinear, seed=0, basis=BASIS, **kwargs):
    """A model with random coefficients scaled by the features' size on a rattled cell."""
    torch.manual_seed(seed)
    model = cls(len(ELEMENTS), basis, **kwargs)
    inp = build_inputs(_structure(seed=99), basis.cutoff, ELEMENTS)
    ev = inp.pos[inp.edge_index[1]] - inp.pos[inp.edge_index[0]]
    with torch.no_grad():
        feats = model.descriptor(ev, inp.species, inp.edge_index, inp.n_local)
        size = feats.pow(2).mean(0).sqrt().clamp_min(1e-8)
        model.coef.copy_(torch.randn_like(model.coef) / size / math.sqrt(feats.shape[1]))
        model.e0.copy_(torch.tensor([-1.0, -2.0, -3.0]))
    return model


def _outputs(module, atoms):
    inp = build_inputs(atoms, module.cutoff, ELEMENTS)
    out = module(*inp.as_args())
    forces = fold_to_atoms(out["forces"].detach().numpy(), inp.image_of, len(atoms))
    return float(out["energy"]), forces, out["virial"].detach().numpy(), out["atom_energy"].detach().numpy()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def potential():
    return PotentialModule(_random_model(), ELEMENTS, BASIS.cutoff)


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------
def test_spherical_harmonics_closed_forms_and_orthonormality():
    u = torch.from_numpy(np.random.default_rng(0).normal(size=(50, 3)))
    u = u / u.norm(dim=1, keepdim=True)
    y = SphericalHarmonics(4)(u)
    x_, y_, z_ = u[:, 0], u[:, 1], u[:, 2]
    assert torch.allclose(y[:, 0], torch.ones(50, dtype=torch.float64))
    assert torch.allclose(y[:, 1:4], math.sqrt(3) * torch.stack([y_, z_, x_], 1), atol=1e-14)
    assert torch.allclose(y[:, 6], math.sqrt(5) * (3 * z_ ** 2 - 1) / 2, atol=1e-14)
    assert torch.allclose(y[:, 8], math.sqrt(15) / 2 * (x_ ** 2 - y_ ** 2), atol=1e-14)
    # mean of Y_a Y_b over the sphere = δ_ab, by a quadrature exact for degree 8
    for l1 in range(5):
        for l2 in range(5):
            g = gaunt_tensor(l1, l2, 0)[:, :, 0]
            expected = np.eye(2 * l1 + 1) if l1 == l2 else np.zeros((2 * l1 + 1, 2 * l2 + 1))
            assert np.abs(g - expected).max() < 1e-13


def test_gaunt_tensor_is_rotation_invariant():
    rot = torch.from_numpy(Rotation.random(random_state=1).as_matrix())
    u = torch.from_numpy(np.random.default_rng(1).normal(size=(400, 3)))
    u = u / u.norm(dim=1, keepdim=True)
    sh = SphericalHarmonics(3)
    y, y_rot = sh(u).numpy(), sh(u @ rot.T).numpy()
    for l1, l2, l3 in _coupling_triples(3):
        blocks = []
        for l in (l1, l2, l3):
            sl = slice(l * l, (l + 1) ** 2)
            d, *_ = np.linalg.lstsq(y[:, sl], y_rot[:, sl], rcond=None)  # Y(Ru) = Y(u) D
            blocks.append(d)
        g = gaunt_tensor(l1, l2, l3)
        g_rot = np.einsum("abc,ai,bj,ck->ijk", g, *blocks)
        assert np.abs(g_rot - g).max() < 1e-12, (l1, l2, l3)
        assert np.abs(g).max() > 1e-3


def test_only_true_scalars_are_coupled():
    triples = _coupling_triples(4)
    assert all((a + b + c) % 2 == 0 and c <= a + b for a, b, c in triples)
    # odd l-sums are pseudoscalars: their Gaunt tensor vanishes, so excluding them loses nothing
    assert np.abs(gaunt_tensor(1, 1, 1)).max() < 1e-14
    assert np.abs(gaunt_tensor(1, 2, 2)).max() < 1e-14


def test_radial_basis_vanishes_to_second_order_at_the_cutoff():
    radial = RadialBasis(6, 5.0, 2.0)
    r = torch.tensor([5.0 - 1e-3, 5.0, 5.5], dtype=torch.float64, requires_grad=True)
    g = radial(r)
    assert torch.all(g[1:] == 0)
    assert g[0].abs().max() < 1e-7 * 8  # (1 - x²)³ ~ (2δ/rc)³ near rc
    first = torch.autograd.grad(g.sum(), r, create_graph=True)[0]
    second = torch.autograd.grad(first.sum(), r)[0]
    assert abs(float(first[1])) == 0.0 and abs(float(second[1])) < 1e-12
    assert abs(float(second[0])) < 1e-2  # goes to zero linearly in the distance to rc
    r_in = torch.linspace(0.0, 5.0, 200, dtype=torch.float64)
    assert radial(r_in).abs().max() <= 1.0 + 1e-12  # bounded everywhere, short distances included


# --------------------------------------------------------------------------------------------
# Symmetry, derivatives, locality
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["rotation", "reflection", "translation", "permutation"])
def test_energy_is_invariant_and_forces_covariant(potential, kind):
    atoms = _structure(seed=1)
    e0, f0, _, _ = _outputs(potential, atoms)
    moved = atoms.copy()
    transform = np.eye(3)
    order = np.arange(len(atoms))
    if kind in ("rotation", "reflection"):
        transform = Rotation.random(random_state=2).as_matrix()
        if kind == "reflection":
            transform = transform @ np.diag([1.0, 1.0, -1.0])
        moved.set_cell(atoms.cell.array @ transform.T, scale_atoms=True)
    elif kind == "translation":
        moved.positions = atoms.positions + np.array([0.37, -1.21, 2.9])
    else:
        symbols = np.array(atoms.get_chemical_symbols())
        rng = np.random.default_rng(3)
        for element in ELEMENTS:
            idx = np.flatnonzero(symbols == element)
            order[idx] = rng.permutation(idx)
        moved = atoms[order]
    e1, f1, _, _ = _outputs(potential, moved)
    assert abs(e1 - e0) <= 1e-10, f"{kind}: ΔE = {e1 - e0:.2e} eV"
    assert np.abs(f1 - (f0 @ transform.T)[order]).max() <= 1e-10
    assert np.abs(f0).max() > 0.1  # forces are not trivially zero


def test_every_feature_is_invariant_under_rotation_with_reflection():
    desc = ClusterDescriptor(3, BASIS)
    atoms = _structure(seed=4)
    transform = Rotation.random(random_state=5).as_matrix() @ np.diag([-1.0, 1.0, 1.0])
    moved = atoms.copy()
    moved.set_cell(atoms.cell.array @ transform.T, scale_atoms=True)
    feats = []
    for a in (atoms, moved):
        inp = build_inputs(a, BASIS.cutoff, ELEMENTS)
        ev = inp.pos[inp.edge_index[1]] - inp.pos[inp.edge_index[0]]
        feats.append(desc(ev, inp.species, inp.edge_index, inp.n_local))
    scale = feats[0].abs().amax(0).clamp_min(1e-6)
    assert ((feats[1] - feats[0]).abs() / scale).max() < 1e-11
    assert feats[0].shape[1] == desc.n_features == len(desc.labels)


def test_forces_and_stress_match_finite_differences(potential):
    atoms = _structure(seed=6)
    _, forces, virial, _ = _outputs(potential, atoms)
    h = 1e-5
    for atom, axis in [(0, 0), (7, 1), (23, 2), (39, 0)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[atom, axis] += h
        minus.positions[atom, axis] -= h
        fd = -(_outputs(potential, plus)[0] - _outputs(potential, minus)[0]) / (2 * h)
        assert abs(fd - forces[atom, axis]) < 1e-6
    # virial W = -dE/dε (strain applied to cell and positions)
    for a, b in [(0, 0), (0, 1), (1, 2), (2, 2)]:
        eps = np.zeros((3, 3))
        eps[a, b] = eps[b, a] = h if a != b else h
        plus, minus = atoms.copy(), atoms.copy()
        plus.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        minus.set_cell(atoms.cell.array @ (np.eye(3) - eps), scale_atoms=True)
        de = (_outputs(potential, plus)[0] - _outputs(potential, minus)[0]) / (2 * h)
        w = virial[a, b] + virial[b, a] if a != b else virial[a, a]
        assert abs(-de - w) < 1e-6, (a, b)
    assert np.abs(virial).max() > 0.1


def test_model_is_strictly_local(potential):
    atoms = _structure(seed=7)
    _, _, _, e_before = _outputs(potential, atoms)
    d = atoms.get_all_distances(mic=True)
    mover = 5
    far = d[mover] > BASIS.cutoff + 0.3
    near = (d[mover] < BASIS.cutoff - 0.5) & (d[mover] > 0)
    moved = atoms.copy()
    moved.positions[mover] += [0.1, -0.12, 0.08]
    _, _, _, e_after = _outputs(potential, moved)
    assert far.sum() > 5 and near.sum() > 5
    assert np.abs(e_after[far] - e_before[far]).max() == 0.0
    assert np.abs(e_after[near] - e_before[near]).max() > 1e-6


@pytest.mark.parametrize("cls", [ClusterLinear, ClusterNN])
def test_empty_domains_and_isolated_atoms(cls):
    """An MPI rank may own no atoms, or atoms without neighbours: energies are then e0 (the
    MLP of cluster-nn sees standardised zero features, which its zero last layer maps to 0)."""
    model = _random_model(cls, seed=20, **({"hidden": (4,)} if cls is ClusterNN else {}))
    potential = PotentialModule(model, ELEMENTS, BASIS.cutoff)
    scripted = torch.jit.script(potential)
    species = torch.tensor([0, 1, 2, 2], dtype=torch.int64)
    pos = torch.tensor([[0.0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]], dtype=torch.float64)
    no_edges = torch.zeros((2, 0), dtype=torch.int64)
    for module in (potential, scripted):
        out = module(pos, species, no_edges, 3)
        assert out["atom_energy"].tolist() == [-1.0, -2.0, -3.0]
        assert float(out["forces"].detach().abs().max()) == 0.0
        empty = module(pos[3:], species[3:], no_edges, 0)  # one ghost, nothing owned
        assert empty["atom_energy"].shape == (0,) and float(empty["energy"]) == 0.0


# --------------------------------------------------------------------------------------------
# Export and dtypes
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [ClusterLinear, ClusterNN])
def test_exported_file_equals_in_memory_model(tmp_path, cls):
    model = _random_model(cls, seed=8, **({"hidden": (8, 8)} if cls is ClusterNN else {}))
    if cls is ClusterNN:
        with torch.no_grad():
            for mlp in model.mlps:
                mlp.net[-1].weight.normal_(0.0, 0.5)
            model.output_scale.fill_(0.2)
    module = PotentialModule(model, ELEMENTS, BASIS.cutoff)
    path = tmp_path / "model.pt"
    export_model(module, path, provenance={"model_type": "test"})
    loaded, meta = load_model(path, kind="potential")
    assert meta["elements"] == ELEMENTS and meta["cutoff"] == BASIS.cutoff and meta["model_type"] == "test"
    inp = build_inputs(_structure(seed=9), BASIS.cutoff, ELEMENTS)
    a, b = module(*inp.as_args()), loaded(*inp.as_args())
    for key in ("energy", "atom_energy", "forces", "virial", "atom_virial"):
        assert torch.abs(a[key] - b[key]).max() <= 1e-12, key
    if cls is ClusterNN:
        linear_part = ClusterLinear(3, BASIS)
        linear_part.load_state_dict({k: v for k, v in model.state_dict().items() if k.startswith(("coef", "e0", "descriptor"))})
        e_lin = PotentialModule(linear_part, ELEMENTS, BASIS.cutoff)(*inp.as_args())["energy"]
        assert abs(float(a["energy"] - e_lin)) > 1e-3  # the MLP contributes


def test_float32_model(tmp_path):
    model = _random_model(seed=10)
    ref = PotentialModule(model, ELEMENTS, BASIS.cutoff)
    low = PotentialModule(_random_model(seed=10).to(torch.float32), ELEMENTS, BASIS.cutoff, dtype="float32")
    path = tmp_path / "model32.pt"
    export_model(low, path)
    loaded, meta = load_model(path)
    assert meta["dtype"] == "float32"
    inp = build_inputs(_structure(seed=11), BASIS.cutoff, ELEMENTS)
    a, b = ref(*inp.as_args()), loaded(*inp.as_args())
    assert b["forces"].dtype == torch.float64
    assert abs(float(a["energy"] - b["energy"])) < 1e-5 * abs(float(a["energy"]))
    assert torch.abs(a["forces"] - b["forces"]).max() < 1e-4 * torch.abs(a["forces"]).max()


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------
def _rattled_cell(seed):
    atoms = rattled(cspbbr3(repeat=(2, 2, 2)), 0.05 + 0.02 * (seed % 5), seed)
    atoms.set_cell(atoms.cell.array * (1.0 + 0.01 * ((seed % 3) - 1)), scale_atoms=True)
    return atoms


def _labelled(truth, seeds, builder=_rattled_cell):
    """Structures labelled by ``truth`` (an energy model): energy, forces, stress."""
    out = []
    for seed in seeds:
        atoms = builder(seed)
        blank = Structure(atoms=atoms, energy=0.0, forces=np.zeros((len(atoms), 3)), stress=np.zeros(6),
                          source="")
        e, f, s = batch_forward(truth, make_batch(prepare([blank], ELEMENTS, BASIS.cutoff)))
        out.append(Structure(atoms=atoms, energy=float(e[0].detach()), forces=f.detach().numpy(),
                             stress=s[0].detach().numpy() / GPA_PER_EV_A3, source=f"seed{seed}"))
    return out


def test_design_rows_reproduce_the_model_energy_forces_and_stress():
    model = _random_model(seed=12)
    item = prepare(_labelled(model, [1]), ELEMENTS, BASIS.cutoff)[0]
    rows = design_rows(model.descriptor, item, chunk_edges=300)  # several chunks
    coef = torch.cat([model.coef.detach().reshape(-1), model.e0.detach()])
    assert abs(float(rows.energy @ coef) * 40 - item.energy) < 1e-10
    assert torch.abs(rows.forces @ coef - item.forces.reshape(-1)).max() < 1e-10
    assert torch.abs(rows.stress @ coef - item.stress).max() < 1e-9  # GPa


def test_batches_of_structures_equal_single_structure_evaluation(potential):
    structures = _labelled(potential.model, [2, 3, 4])
    items = prepare(structures, ELEMENTS, BASIS.cutoff)
    e, f, s = batch_forward(potential.model, make_batch(items))
    for k, st in enumerate(structures):
        assert abs(float(e[k]) - st.energy) < 1e-10
        assert torch.abs(f[40 * k: 40 * (k + 1)] - torch.from_numpy(st.forces)).max() < 1e-10
        assert torch.abs(s[k] - torch.from_numpy(st.stress) * GPA_PER_EV_A3).max() < 1e-9


SMALL = ClusterBasis(cutoff=5.0, n_radial_2=3, n_radial_3=2, l_max_3=2, n_radial_4=1, l_max_4=2)


def _random_dense_cell(seed, n=24, box=9.0, min_distance=2.3):
    """Random positions (no two atoms closer than ``min_distance`` Å) of 8 Cs, 8 Pb, 8 Br: far
    more varied environments than a rattled crystal, so every feature is well excited."""
    rng = np.random.default_rng(seed)
    positions = []
    while len(positions) < n:
        p = rng.uniform(0.0, box, 3)
        if all(np.linalg.norm((p - q + box / 2) % box - box / 2) > min_distance for q in positions):
            positions.append(p)
    return Atoms([ELEMENTS[k % 3] for k in range(n)], positions=positions, cell=np.eye(3) * box, pbc=True)


def test_linear_fit_recovers_the_model_that_made_the_labels():
    truth = _random_model(seed=13, basis=SMALL)
    structures = _labelled(truth, range(16), builder=_random_dense_cell)
    items = prepare(structures, ELEMENTS, SMALL.cutoff)
    splits = {"train": np.arange(12), "val": np.arange(12, 14), "test": np.arange(14, 16)}
    fitted = ClusterLinear(3, SMALL)  # 3 x 146 + 3 columns, 12 x 79 rows
    report = fit_linear(fitted, items, splits, LossWeights(), lambdas=(1e-16, 1e-12, 1e-8), progress=False)
    assert report["lambda"] == 1e-16
    test = [items[i] for i in splits["test"]]
    pred = predict(fitted, test)
    for k, item in enumerate(test):
        assert abs(float(pred["energy"][k]) - item.energy) / item.n_atoms < 1e-8  # eV/atom
        assert torch.abs(pred["forces"][k] - item.forces).max() < 1e-7 * torch.abs(item.forces).max()
        assert torch.abs(pred["stress"][k] - item.stress).max() < 1e-7 * torch.abs(item.stress).max()
    # exact labels: the weakest regularisation wins, and stronger ridges are measurably worse
    losses = [entry["val_loss"] for entry in report["lambda_scan"]]
    assert losses[0] < losses[1] < losses[2]


def test_cluster_nn_starts_at_the_linear_fit_and_training_lowers_the_loss():
    # labels from a cluster-nn of a small basis: the linear fit cannot represent its MLP part
    small = ClusterBasis(cutoff=5.0, n_radial_2=3, n_radial_3=2, l_max_3=2, n_radial_4=1, l_max_4=0)
    truth = _random_model(ClusterNN, seed=14, basis=small, hidden=(8,))
    standardise(truth, prepare(_labelled(truth, [0]), ELEMENTS, small.cutoff))
    with torch.no_grad():
        for p in truth.mlps.parameters():
            p.normal_(0.0, p.shape[-1] ** -0.5 if p.dim() == 2 else 0.1)
        truth.output_scale.fill_(0.1)
    items = prepare(_labelled(truth, range(10)), ELEMENTS, small.cutoff)
    splits = split_indices(len(items), (0.8, 0.2, 0.0), seed=0)
    train_items = [items[i] for i in splits["train"]]
    model = ClusterNN(3, small, hidden=(8,))
    fit_linear(model, items, splits, LossWeights(), progress=False)
    linear = ClusterLinear(3, small)
    linear.load_state_dict({k: v for k, v in model.state_dict().items() if k.startswith(("coef", "e0", "descriptor"))})
    start_nn(model, train_items, error_metrics(train_items, predict(linear, train_items)))
    assert 0.1 < float(model.output_scale) < 10.0  # eV: the linear force error is large here
    assert torch.allclose(predict(model, items[:2])["energy"], predict(linear, items[:2])["energy"], atol=1e-12, rtol=0)
    report = train_nn(model, items, splits, LossWeights(),
                      NNTraining(hidden=(8,), epochs=10, patience=10, batch_atoms=40, learning_rate=3e-3),
                      progress=False)
    train_losses = [h["train_loss"] for h in report["history"][1:]]
    assert train_losses[-1] < 0.95 * train_losses[0]
    # the model handed back is the state with the best validation loss
    val = [make_batch(g) for g in batches([items[i] for i in splits["val"]], 400)]
    assert abs(mean_loss(model, val, LossWeights()) - report["best_val_loss"]) < 1e-12 * report["best_val_loss"]
    assert report["best_val_loss"] == min(h["val_loss"] for h in report["history"])


def test_ridge_choice_takes_the_largest_lambda_within_the_validation_tolerance():
    """A noisy linear problem in the LeastSquares form: rows of 'forces' only."""
    from types import SimpleNamespace

    from pyexport.training.design import DesignRows
    from pyexport.training.ridge import LeastSquares, ridge_path

    rng = np.random.default_rng(0)
    coef = rng.normal(size=12)

    def problem(n_rows):
        x = rng.normal(size=(n_rows, 12)) * np.logspace(0, -4, 12)  # badly scaled columns
        y = x @ coef + 1e-3 * rng.normal(size=n_rows)
        rows = DesignRows(energy=torch.zeros(12, dtype=torch.float64), forces=torch.from_numpy(x), stress=None)
        item = SimpleNamespace(energy=0.0, n_atoms=1, forces=torch.from_numpy(y), stress=None)
        ls = LeastSquares(12, LossWeights(energy=0.0, forces=1.0, stress=0.0), 1, n_rows, 0)
        ls.add(rows, item)
        return ls

    train, val = problem(60), problem(30)
    lambdas = [10.0 ** k for k in range(-12, 1)]
    _, best, scan = ridge_path(train, val, lambdas, tolerance=0.0)
    losses = {e["lambda"]: e["val_loss"] for e in scan}
    assert best == min(losses, key=losses.get)
    _, chosen, _ = ridge_path(train, val, lambdas, tolerance=0.5)
    assert chosen >= best and losses[chosen] <= 1.5 * losses[best]
    assert all(losses[lam] > 1.5 * losses[best] for lam in lambdas if lam > chosen)
