"""The hand-written backward of the cluster potentials (``energy_and_edge_gradient``) against the
autograd reference (``autograd_forces = True``): energies, per-atom energies, forces, virial,
per-atom virial and extrapolation grade equal to 1e-10 in float64, on random periodic structures
with three species, small triclinic cells (neighbours across several images, an atom seeing its
own images), pairs just inside the global and a pair cutoff (and Cs-Pb pairs between the two), and a repulsive core that is active.
Also: the scripted file takes the analytic path and gives the same numbers, and the per-call
switch ``compute_atom_virial`` removes only ``atom_virial``."""
import math

import numpy as np
import pytest
import torch
from ase import Atoms

from pyexport.contract import (GradedPotentialModule, PotentialModule, build_inputs, export_model,
                               fold_to_atoms, load_model)
from pyexport.models.cluster import ClusterLinear, ClusterNN
from pyexport.models.cluster_basis import ClusterBasis, SphericalHarmonics
from pyexport.models.grade import ExtrapolationGrade
from pyexport.models.pair import CoreRepulsion, WithCore

ELEMENTS = ["Cs", "Pb", "Br"]
CUTOFF = 5.0
BASIS = ClusterBasis(cutoff=CUTOFF, n_radial_2=5, n_radial_3=3, l_max_3=4, n_radial_4=2, l_max_4=2,
                     pair_cutoffs={"Cs-Pb": 4.2})
TOL = 1e-10

pytestmark = pytest.mark.usefixtures("one_thread")


def _structure(seed: int, min_distance: float = 2.3) -> Atoms:
    """A random triclinic cell of 5-7 atoms of three species, 4.8-5.6 Å edges (every atom sees
    images of itself and of its neighbours within 5 Å), no two atoms (or images) closer than
    ``min_distance`` (inside the core's reach, but not a collision); atom 2 (Br) is 1e-4 Å inside
    the global cutoff from atom 0 (Cs), and atom 4 (Pb) 1e-4 Å inside the 4.2 Å Cs-Pb cutoff from
    atom 3 (Cs). Atoms are placed one by one, each drawn until it is far enough from the others."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 8))
    cell = np.diag(rng.uniform(4.8, 5.6, 3)) + rng.uniform(-0.5, 0.5, (3, 3)) * (1 - np.eye(3))
    atoms = Atoms(cell=cell, pbc=True)
    anchors = {2: (0, CUTOFF - 1e-4), 4: (3, 4.2 - 1e-4)}
    for k in range(n):
        for _ in range(10_000):
            if k in anchors:
                other, distance = anchors[k]
                direction = rng.normal(size=3)
                position = atoms.positions[other] + distance * direction / np.linalg.norm(direction)
            else:
                position = rng.uniform(0.0, 1.0, 3) @ cell
            trial = atoms + Atoms(ELEMENTS[k % 3], positions=[position])
            trial.wrap()
            if k == 0 or trial.get_distances(k, range(k), mic=True).min() > min_distance:
                if len(trial) == 1 or _self_image_distance(trial.cell) > min_distance:
                    atoms = trial
                    break
        else:
            raise RuntimeError(f"could not place atom {k} (seed {seed})")
    return atoms


def _self_image_distance(cell) -> float:
    """Shortest lattice vector, Å (an atom's distance to its nearest own image)."""
    shifts = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) != (0, 0, 0)])
    return float(np.linalg.norm(shifts @ np.asarray(cell), axis=1).min())


def _model(cls, seed=0, core=True):
    """A random model of energies ~1 eV per atom, with a repulsive core reaching 2.6-3.0 Å (so
    that random structures have edges inside it)."""
    torch.manual_seed(seed)
    model = cls(len(ELEMENTS), BASIS, elements=ELEMENTS, **({"hidden": (8, 8)} if cls is ClusterNN else {}))
    inp = build_inputs(_structure(100 + seed), CUTOFF, ELEMENTS)
    ev = inp.pos[inp.edge_index[1]] - inp.pos[inp.edge_index[0]]
    with torch.no_grad():
        feats = model.descriptor(ev, inp.species, inp.edge_index, inp.n_local)
        size = feats.pow(2).mean(0).sqrt().clamp_min(1e-8)
        model.coef.copy_(torch.randn_like(model.coef) / size / math.sqrt(feats.shape[1]))
        model.e0.copy_(torch.tensor([-1.0, -2.0, -3.0]))
        if cls is ClusterNN:
            model.set_standardisation(feats.mean(0).expand(3, -1), feats.std(0).expand(3, -1))
            for mlp in model.mlps:
                mlp.net[-1].weight.normal_(0.0, 0.5)
            model.output_scale.fill_(0.3)
    for p in model.parameters():
        p.requires_grad_(False)
    if core:
        r_core = [[2.6, 2.8, 3.0], [2.8, 2.7, 2.9], [3.0, 2.9, 2.8]]
        model = WithCore(model, CoreRepulsion(r_core, strength=1.0))
    return model.eval()


def _graded(model):
    """The model with a random active set (weight (S, K, 6), bias (S, 6))."""
    k = (model.model if isinstance(model, WithCore) else model).descriptor.n_features
    gen = torch.Generator().manual_seed(3)
    active = {"weight": torch.randn(3, k, 6, generator=gen, dtype=torch.float64) * 1e-2,
              "bias": torch.randn(3, 6, generator=gen, dtype=torch.float64), "size": 18}
    module = GradedPotentialModule(model, ExtrapolationGrade(active), ELEMENTS, CUTOFF)
    module.compute_extrapolation_grade = True
    return module


def _both(module, inputs):
    """Outputs of the analytic path, then of the autograd reference, of one module."""
    module.autograd_forces = False
    fast = {k: v.detach() for k, v in module(*inputs.as_args()).items()}
    module.autograd_forces = True
    reference = {k: v.detach() for k, v in module(*inputs.as_args()).items()}
    module.autograd_forces = False
    return fast, reference


def _assert_equal(fast, reference, keys):
    assert set(fast) == set(reference)
    for key in keys:
        scale = float(reference[key].abs().max())
        assert scale > 1e-3, key      # something to compare
        assert float((fast[key] - reference[key]).abs().max()) <= TOL, key


KEYS = ("energy", "atom_energy", "forces", "virial", "atom_virial")


def test_harmonics_vjp_is_the_gradient_of_the_polynomial():
    """SphericalHarmonics.vjp against autograd of its forward (unit and non-unit vectors)."""
    harmonics = SphericalHarmonics(5)
    u = torch.randn(50, 3, dtype=torch.float64)
    u[:25] /= u[:25].norm(dim=1, keepdim=True)
    w = torch.randn(50, 35, dtype=torch.float64)
    u.requires_grad_(True)
    (reference,) = torch.autograd.grad((harmonics(u)[:, 1:] * w).sum(), [u])
    assert torch.abs(harmonics.vjp(u.detach(), w) - reference).max() <= 1e-12 * reference.abs().max()


@pytest.mark.parametrize("cls", [ClusterLinear, ClusterNN])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_analytic_equals_autograd(cls, seed):
    module = PotentialModule(_model(cls, seed), ELEMENTS, CUTOFF).eval()
    atoms = _structure(seed)
    inputs = build_inputs(atoms, CUTOFF, ELEMENTS)
    # the structure has what the test is about
    edge = (inputs.pos[inputs.edge_index[1]] - inputs.pos[inputs.edge_index[0]]).norm(dim=1)
    assert inputs.pos.shape[0] > 4 * len(atoms)                        # images of images
    assert float(edge.max()) > CUTOFF - 1e-3 and float(edge.min()) < 3.0  # near the cutoff, in the core
    fast, reference = _both(module, inputs)
    _assert_equal(fast, reference, KEYS)
    # the structure's forces and stress, folded onto the atoms, too
    f_fast = fold_to_atoms(fast["forces"].numpy(), inputs.image_of, len(atoms))
    f_ref = fold_to_atoms(reference["forces"].numpy(), inputs.image_of, len(atoms))
    assert np.abs(f_fast - f_ref).max() <= TOL
    assert np.abs(f_ref.sum(axis=0)).max() <= 1e-9                    # Newton's third law


@pytest.mark.parametrize("cls", [ClusterLinear, ClusterNN])
def test_graded_module_analytic_equals_autograd_and_grade_unchanged(cls):
    module = _graded(_model(cls, 4))
    inputs = build_inputs(_structure(4), CUTOFF, ELEMENTS)
    fast, reference = _both(module, inputs)
    _assert_equal(fast, reference, KEYS + ("extrapolation_grade",))


def test_without_core_and_without_higher_body_orders():
    """l_max = 0 (2-body only) and a model without a core take the same analytic path."""
    basis = ClusterBasis(cutoff=CUTOFF, n_radial_2=6, n_radial_3=0, n_radial_4=0)
    torch.manual_seed(5)
    model = ClusterLinear(3, basis)
    with torch.no_grad():
        model.coef.normal_(0.0, 0.1)
    module = PotentialModule(model.eval(), ELEMENTS, CUTOFF)
    fast, reference = _both(module, build_inputs(_structure(5), CUTOFF, ELEMENTS))
    _assert_equal(fast, reference, KEYS)
    module = PotentialModule(_model(ClusterLinear, 6, core=False), ELEMENTS, CUTOFF)
    fast, reference = _both(module, build_inputs(_structure(6), CUTOFF, ELEMENTS))
    _assert_equal(fast, reference, KEYS)


def test_exported_file_takes_the_analytic_path(tmp_path):
    """The scripted file: analytic by default, autograd while autograd_forces is set; the same
    numbers; and no autograd graph behind the analytic outputs."""
    path = tmp_path / "cluster.pt"
    export_model(_graded(_model(ClusterLinear, 7)), path)
    loaded, _ = load_model(path, kind="potential")
    loaded.compute_extrapolation_grade = True
    inputs = build_inputs(_structure(7), CUTOFF, ELEMENTS)
    fast = loaded(*inputs.as_args())
    assert not fast["forces"].requires_grad
    fast, reference = _both(loaded, inputs)
    _assert_equal(fast, reference, KEYS + ("extrapolation_grade",))


@pytest.mark.parametrize("cls", [ClusterLinear, ClusterNN])
def test_atom_virial_only_when_asked(cls):
    module = PotentialModule(_model(cls, 8), ELEMENTS, CUTOFF)
    inputs = build_inputs(_structure(8), CUTOFF, ELEMENTS)
    full = module(*inputs.as_args())
    module.compute_atom_virial = False
    lean = module(*inputs.as_args())
    module.compute_atom_virial = True
    assert "atom_virial" in full and "atom_virial" not in lean
    for key in ("energy", "atom_energy", "forces", "virial"):
        assert torch.equal(full[key], lean[key]), key
    # the per-atom virial sums to the virial (symmetric part)
    w = full["virial"]
    total = full["atom_virial"].sum(0)
    assert torch.allclose(total, torch.stack([w[0, 0], w[1, 1], w[2, 2], 0.5 * (w[0, 1] + w[1, 0]),
                                              0.5 * (w[0, 2] + w[2, 0]), 0.5 * (w[1, 2] + w[2, 1])]),
                          atol=1e-10, rtol=0)
