"""Neighbour pairs within a cutoff in a periodic (or partly periodic) cell: a linked-cell
("binning") search in fractional coordinates, vectorised with numpy.

    from pyexport.neighbors import neighbor_pairs
    i, j, shifts = neighbor_pairs(positions, cell, pbc, cutoff)
    # every (i, j, S) with |positions[j] + S @ cell - positions[i]| < cutoff, except i == j, S == 0

The result is the set ASE's ``primitive_neighbor_list("ijS", ...)`` returns, with shifts counted
from the positions as given (unwrapped coordinates stay valid: the shift absorbs the wrapping).

Method. Along each periodic direction d the cell is cut into n_d slabs between lattice planes;
the planes of direction d lie h_d = 1 / |b_d| apart (b_d: reciprocal vector, no 2π), so a pair
closer than the cutoff is never more than ceil(cutoff / (h_d / n_d)) slabs apart. With
n_d = floor(h_d / cutoff) that is one slab (27 neighbouring bins); a cell thinner than the cutoff
gets one slab and as many periodic images of it as the cutoff spans, so any triclinic cell,
however small or skewed, is covered. A non-periodic direction is replaced by a unit vector
orthogonal to the periodic ones, cut into slabs over the extent of the atoms, with no images.
Each bin offset of the stencil is one vectorised pass over all atoms: every atom against the
atoms of the bin at that offset (and the image it belongs to). Half the stencil suffices: every
pair (i, j, S) found also gives (j, i, -S).
"""
import itertools
from typing import Tuple

import numpy as np

__all__ = ["neighbor_pairs"]

# Bins no thinner than the cutoff (a 27-bin stencil) beat thinner ones with a wider stencil at
# perovskite densities; a sparse system (a molecule in a big box) is held to this many bins per
# atom, so that empty bins do not cost more than the atoms.
_MAX_BINS_PER_ATOM = 4


def _binning_basis(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """Rows: the cell vectors of the periodic directions, and orthonormal vectors spanning the
    rest of space (orthogonal to the periodic ones) in place of the non-periodic ones."""
    periodic = np.flatnonzero(pbc)
    open_dims = np.flatnonzero(~pbc)
    basis = np.zeros((3, 3))
    basis[periodic] = cell[periodic]
    if len(open_dims):
        if len(periodic):
            # the last rows of V^T span the orthogonal complement of the periodic vectors
            complement = np.linalg.svd(cell[periodic], full_matrices=True)[2][len(periodic):]
        else:
            complement = np.eye(3)
        basis[open_dims] = complement
    return basis


def _bins(fractional: np.ndarray, pbc: np.ndarray, spacing: np.ndarray, cutoff: float,
          n_atoms: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bins per direction (3,), bin of each atom (n, 3), stencil reach per direction (3,)).
    ``fractional``: wrapped coordinates, in [0, 1) along periodic directions, in [0, extent] Å
    along open ones; ``spacing``: distance between the planes of unit fractional step, Å."""
    extent = np.where(pbc, 1.0, np.maximum(fractional.max(axis=0, initial=0.0), 1e-12))
    thickness = spacing * extent                                     # Å across the box
    n_bins = np.maximum(np.floor(thickness / cutoff), 1).astype(np.int64)
    while n_bins.prod() > max(_MAX_BINS_PER_ATOM * n_atoms, 1):
        n_bins = np.maximum(n_bins // 2, 1)
    width = thickness / n_bins                                       # Å between bin walls
    # one part in 1e9 of slack: a pair at the cutoff may not be lost to rounding of the bins
    reach = np.ceil(cutoff * (1 + 1e-9) / width).astype(np.int64)
    reach = np.where(pbc, reach, np.minimum(reach, n_bins - 1))
    index = np.floor(fractional / extent * n_bins).astype(np.int64)
    index = np.clip(index, 0, n_bins - 1)                            # (the far wall itself)
    return n_bins, index, reach


def _concatenated_ranges(first: np.ndarray, count: np.ndarray) -> np.ndarray:
    """first[0], .., first[0] + count[0] - 1, first[1], .. as one array."""
    run_start = np.cumsum(count) - count
    return np.repeat(first - run_start, count) + np.arange(count.sum())


def neighbor_pairs(positions: np.ndarray, cell: np.ndarray, pbc, cutoff: float
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i, j, S) with |positions[j] + S @ cell - positions[i]| < cutoff, i == j only
    for S != 0 (an atom's own images, in cells smaller than the cutoff).

    positions: (n, 3) Å. cell: (3, 3) Å, rows a, b, c (only the periodic rows are used).
    pbc: 3 bools. cutoff: Å. Returns i (m,), j (m,) int64 and S (m, 3) int64, zero along
    non-periodic directions; both (i, j, S) and (j, i, -S) are present. Order unspecified.
    """
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    cell = np.asarray(cell, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool).reshape(3)
    n = len(positions)
    empty = np.zeros(0, np.int64)
    if n == 0 or cutoff <= 0:
        return empty, empty, np.zeros((0, 3), np.int64)
    basis = _binning_basis(cell, pbc)
    if abs(np.linalg.det(basis)) < 1e-12 * max(np.abs(basis).max(), 1.0) ** 3:
        raise ValueError(f"the periodic cell vectors {cell[pbc].tolist()} (Å) are linearly "
                         f"dependent: no periodic lattice")
    inverse = np.linalg.inv(basis)
    spacing = 1.0 / np.linalg.norm(inverse, axis=0)                  # h_d, Å
    fractional = positions @ inverse
    # wrap into the cell along periodic directions: positions = wrapped + wrap @ cell
    wrap = np.where(pbc, np.floor(fractional), 0.0).astype(np.int64)
    fractional = fractional - wrap
    fractional[:, ~pbc] -= fractional[:, ~pbc].min(axis=0)
    wrapped = positions - wrap @ np.where(pbc[:, None], cell, 0.0)

    n_bins, bin_of, reach = _bins(fractional, pbc, spacing, cutoff, n)
    flat_bin = np.ravel_multi_index(bin_of.T, n_bins)
    by_bin = np.argsort(flat_bin, kind="stable")
    bin_start = np.searchsorted(flat_bin[by_bin], np.arange(n_bins.prod() + 1))

    # Half the stencil: offsets after zero in lexicographic order, and within a bin the pairs
    # i < j; the mirror (j, i, -S) of each pair found completes the list.
    offsets = [offset for offset in itertools.product(*(range(-r, r + 1) for r in reach))
               if offset >= (0, 0, 0)]
    found_i, found_j, found_image = [], [], []
    periodic_cell = np.where(pbc[:, None], cell, 0.0)
    for offset in offsets:
        target = bin_of + offset
        image = np.floor_divide(target, n_bins)                       # whole cells crossed
        atoms = np.flatnonzero(np.all(pbc | (image == 0), axis=1))   # open directions: no images
        image = image[atoms]
        target = np.ravel_multi_index((target[atoms] - image * n_bins).T, n_bins)
        first, count = bin_start[target], bin_start[target + 1] - bin_start[target]
        i = np.repeat(atoms, count)
        j = by_bin[_concatenated_ranges(first, count)]
        delta = wrapped[j] - wrapped[i] + np.repeat(image @ periodic_cell, count, axis=0)
        close = np.einsum("ij,ij->i", delta, delta) < cutoff * cutoff
        if offset == (0, 0, 0):
            close &= i < j
        found_i.append(i[close])
        found_j.append(j[close])
        found_image.append(np.repeat(image, count, axis=0)[close])
    i, j = np.concatenate(found_i), np.concatenate(found_j)
    image = np.concatenate(found_image)
    i, j, image = np.concatenate([i, j]), np.concatenate([j, i]), np.concatenate([image, -image])
    # shifts from the positions as given: wrapped_j + image - wrapped_i = x_j + S - x_i
    shifts = image + wrap[i] - wrap[j]
    return i, j, shifts
