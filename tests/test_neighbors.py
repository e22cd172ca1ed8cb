"""pyexport.neighbors (the binned neighbour search behind build_inputs) against ASE's
primitive_neighbor_list, and build_inputs on top of it against the same inputs assembled from
ASE's list."""
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.neighborlist import primitive_neighbor_list

from contract_models import many_body_module, point_charge_efg_module
from pyexport.contract import build_inputs, species_indices
from pyexport.neighbors import neighbor_pairs

ELEMENTS = ["Cs", "Pb", "Br"]


def ase_pairs(positions, cell, pbc, cutoff):
    """ASE's (i, j, S) with |r_ij| < cutoff (its list may hold pairs at exactly the cutoff)."""
    i, j, shifts, dist = primitive_neighbor_list("ijSd", pbc, cell, positions, cutoff,
                                                 self_interaction=False)
    keep = dist < cutoff
    return i[keep], j[keep], shifts[keep]


def as_set(i, j, shifts):
    return set(zip(i.tolist(), j.tolist(), map(tuple, shifts.tolist())))


def assert_same_pairs(positions, cell, pbc, cutoff, at_least=1):
    ours = neighbor_pairs(positions, cell, pbc, cutoff)
    theirs = as_set(*ase_pairs(positions, cell, pbc, cutoff))
    assert len(ours[0]) == len(as_set(*ours)), "a pair found twice"
    assert as_set(*ours) == theirs
    assert len(theirs) >= at_least
    assert ours[2].dtype == np.int64 and np.all(ours[2][:, ~np.asarray(pbc, bool)] == 0)


def random_cell(rng, lengths=(4.0, 12.0), tilt=3.0):
    """Lower-triangular (LAMMPS-style) triclinic cell with random tilts, Å."""
    return np.diag(rng.uniform(*lengths, 3)) + np.tril(rng.uniform(-tilt, tilt, (3, 3)), -1)


def cspbbr3(reps, a=5.87, rattle=0.1, seed=0):
    unit = Atoms("CsPbBr3", scaled_positions=[[.5, .5, .5], [0, 0, 0], [.5, 0, 0], [0, .5, 0],
                                              [0, 0, .5]], cell=np.eye(3) * a, pbc=True)
    atoms = unit.repeat(reps)
    atoms.rattle(rattle, seed=seed)
    return atoms


@pytest.mark.parametrize("seed", range(12))
def test_random_triclinic_cells_equal_ase(seed):
    rng = np.random.default_rng(seed)
    cell = random_cell(rng) if seed % 2 else rng.normal(size=(3, 3)) * 6 + np.eye(3) * 8
    positions = rng.random((int(rng.integers(2, 60)), 3)) @ cell
    if seed % 3 == 0:            # unwrapped coordinates: atoms several cells away
        positions += rng.integers(-3, 4, (len(positions), 3)) @ cell
    assert_same_pairs(positions, cell, [True] * 3, cutoff=rng.uniform(3.0, 8.0))


@pytest.mark.parametrize("cell, cutoff", [
    (np.diag([2.0, 3.0, 2.5]), 7.0),                                   # many images each way
    (np.array([[3.0, 0, 0], [2.6, 1.2, 0], [-1.1, 0.7, 2.2]]), 6.5),   # thin, strongly tilted
    (np.array([[1.5, 0, 0], [0.3, 8.0, 0], [0.2, -0.4, 9.0]]), 5.0),   # thin along a only
])
def test_cells_smaller_than_the_cutoff_equal_ase(cell, cutoff):
    rng = np.random.default_rng(2)
    for n_atoms in (1, 5):       # one atom: only its own images
        positions = rng.random((n_atoms, 3)) @ cell
        assert_same_pairs(positions, cell, [True] * 3, cutoff, at_least=6 * n_atoms)


@pytest.mark.parametrize("pbc", [(True, True, False), (False, True, True), (True, False, False),
                                 (False, False, False)])
def test_non_periodic_directions_get_no_images(pbc):
    rng = np.random.default_rng(sum(pbc))
    cell = random_cell(rng, lengths=(6.0, 9.0))
    positions = rng.random((40, 3)) @ cell
    positions[:, 2] *= 2.5                       # atoms beyond the open faces of the cell
    assert_same_pairs(positions, cell, pbc, cutoff=5.5)


def test_molecule_without_a_cell():
    positions = np.random.default_rng(5).normal(size=(30, 3)) * 3.0
    assert_same_pairs(positions, np.zeros((3, 3)), [False] * 3, cutoff=4.0)


def test_slab_cell_with_no_third_vector():
    positions = np.random.default_rng(6).random((30, 3)) * [8.0, 7.0, 5.0]
    assert_same_pairs(positions, np.array([[8.0, 0, 0], [1.5, 7.0, 0], [0, 0, 0]]),
                      [True, True, False], cutoff=3.5)


def test_dependent_periodic_vectors_are_refused():
    with pytest.raises(ValueError, match="linearly dependent"):
        neighbor_pairs(np.zeros((2, 3)), [[3.0, 0, 0], [6.0, 0, 0], [0, 0, 4.0]], [True] * 3, 2.0)


def test_cspbbr3_supercell_equals_ase():
    atoms = cspbbr3((4, 4, 4))
    assert_same_pairs(atoms.positions, atoms.cell.array, atoms.pbc, cutoff=6.0,
                      at_least=len(atoms) * 10)


# ---------------------------------------------------------------------------------------------
# build_inputs on the new search


def inputs_from_ase(atoms, cutoff, elements):
    """build_inputs as it was on ASE's list: ghost rows one per distinct (atom, shift) sorted
    by (atom, shift), edges sorted by (i, row). Returns pos, species, edge_index, image_of."""
    positions, cell, n = atoms.positions, atoms.cell.array, len(atoms)
    i, j, shifts = ase_pairs(positions, cell, atoms.pbc, cutoff)
    is_image = np.any(shifts != 0, axis=1)
    keys = np.concatenate([j[is_image, None], shifts[is_image]], axis=1)
    ghosts, inverse = np.unique(keys, axis=0, return_inverse=True)
    dst = j.copy()
    dst[is_image] = n + inverse.reshape(-1)
    order = np.lexsort((dst, i))
    image_of = np.concatenate([np.arange(n), ghosts[:, 0]])
    pos = np.concatenate([positions, positions[ghosts[:, 0]] + ghosts[:, 1:] @ cell])
    species = species_indices(atoms.get_chemical_symbols(), elements)[image_of]
    return pos, species, np.stack([i[order], dst[order]]), image_of


@pytest.mark.parametrize("case", ["cspbbr3_444", "triclinic_small", "slab"])
def test_build_inputs_equal_those_from_ase_and_give_the_same_model_outputs(case):
    if case == "cspbbr3_444":
        atoms = cspbbr3((4, 4, 4), seed=3)
    elif case == "triclinic_small":   # 2x1x1 of a sheared cell: shorter than the cutoff along b, c
        atoms = cspbbr3((2, 1, 1), seed=4)
        cell = atoms.cell.array.copy()
        cell[1, 0], cell[2, 0], cell[2, 1] = 1.3, -0.9, 0.6
        atoms.set_cell(cell, scale_atoms=True)
    else:
        atoms = cspbbr3((3, 3, 2), seed=5)
        atoms.pbc = [True, True, False]
    inputs = build_inputs(atoms, 6.0, ELEMENTS)
    pos, species, edge_index, image_of = inputs_from_ase(atoms, 6.0, ELEMENTS)
    np.testing.assert_array_equal(inputs.pos.numpy(), pos)
    np.testing.assert_array_equal(inputs.species.numpy(), species)
    np.testing.assert_array_equal(inputs.edge_index.numpy(), edge_index)
    np.testing.assert_array_equal(inputs.image_of, image_of)
    assert inputs.n_local == len(atoms)

    reference = (torch.from_numpy(pos), torch.from_numpy(species), torch.from_numpy(edge_index),
                 len(atoms))
    potential = many_body_module().eval()
    ours, theirs = potential(*inputs.as_args()), potential(*reference)
    assert abs(float((ours["energy"] - theirs["energy"]).detach())) <= 1e-12
    assert torch.allclose(ours["forces"], theirs["forces"], rtol=0, atol=1e-12)
    efg = point_charge_efg_module().eval()
    efg_cutoff_inputs = build_inputs(atoms, efg.cutoff, ELEMENTS)
    pos, species, edge_index, _ = inputs_from_ase(atoms, efg.cutoff, ELEMENTS)
    ours = efg(*efg_cutoff_inputs.as_args())["efg"]
    theirs = efg(torch.from_numpy(pos), torch.from_numpy(species), torch.from_numpy(edge_index),
                 len(atoms))["efg"]
    assert torch.abs(theirs).max() > 0.1
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-12)
