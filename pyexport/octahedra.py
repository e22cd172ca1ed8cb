"""The BX6 octahedra of ABX3 perovskite supercells: the one finder both layers use.

:func:`find_octahedra` returns :class:`Octahedra`: which element is B and which X, the B atoms,
the X atom on the +α and −α side of each B (α = x, y, z), and the B-site grid. ``pyexport``
builds the soft-mode displacement patterns on it (:mod:`pyexport.structures`); ``efg`` follows
the octahedral tilts through MD trajectories (:mod:`efg.tilts`).

The octahedra come from the lattice, not from distances: B sites are the points of the
n1×n2×n3 grid that fits the B atoms best, and the X on the ±α side of a B is the X nearest to the
ideal site (grid point ± a_α/2). Distance criteria fail in hot MD frames of a strongly anharmonic
perovskite, where B moves far off-centre (B–X bonds beyond 4 Å while the next X shell comes
within 5 Å); the lattice assignment holds while atoms stay on their sites, and it is checked:
every B within 0.35 grid steps of its point, every X within 0.45 a of its site and claimed by
exactly two B. The supercell must therefore be a pseudocubic n1×n2×n3 repetition with its cell
vectors along the pseudocubic axes (as a perovskite supercell in MD keeps them, up to small
shears); those cell vectors are the pseudocubic axes (:meth:`Octahedra.axes`). Lengths in Å.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np

__all__ = ["Octahedra", "find_octahedra", "minimum_image"]


@dataclass
class Octahedra:
    """Connectivity of the BX6 octahedra, found once on a reference frame.

    ``b`` (N_B,) atom indices of B sites; ``x_of_b`` (N_B, 3, 2) index of the X atom on the
    +α and −α side of each B for α = x, y, z; ``grid`` (N_B, 3) integer B-site coordinates;
    ``repeats`` (3,) pseudocubic repetitions n1 n2 n3.
    """

    b_symbol: str
    x_symbol: str
    b: np.ndarray
    x_of_b: np.ndarray
    grid: np.ndarray
    repeats: np.ndarray

    @property
    def ligands(self) -> np.ndarray:
        """(N_B, 6) X atoms of each octahedron: +x, −x, +y, −y, +z, −z."""
        return self.x_of_b.reshape(len(self.b), 6)

    def bonds(self, atoms) -> np.ndarray:
        """(N_B, 6, 3) B → X vectors (Å) of ``atoms``, in :attr:`ligands` order: to the image of
        each X nearest its ideal site B ± a_α/2 (in a cell one octahedron wide the +α and −α
        ligand are two images of one atom)."""
        positions, cell = atoms.positions, atoms.cell.array
        d = positions[self.x_of_b] - positions[self.b][:, None, None, :]          # (N_B, 3, 2, 3)
        half_steps = cell / (2.0 * self.repeats[:, None])                         # (3, 3): a_α / 2
        ideal = half_steps[None, :, None, :] * np.array([1.0, -1.0])[None, None, :, None]
        # r_X - r_B + n @ cell with the integer n of that image, added last as ASE's neighbour
        # list forms its vectors (so that ideal structures give exactly its numbers)
        n = -np.round(np.linalg.solve(cell.T, (d - ideal).reshape(-1, 3).T).T)
        return (d + (n @ cell).reshape(d.shape)).reshape(len(self.b), 6, 3)

    @staticmethod
    def axes(atoms) -> np.ndarray:
        """(3, 3) unit pseudocubic axes x, y, z (rows): the directions of the cell vectors."""
        cell = atoms.cell.array
        return cell / np.linalg.norm(cell, axis=1, keepdims=True)


def minimum_image(d: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Vectors ``d`` (..., 3) Å reduced to their shortest periodic image in ``cell`` (rows)."""
    frac = np.linalg.solve(cell.T, d.reshape(-1, 3).T).T
    frac -= np.round(frac)
    return (frac @ cell).reshape(d.shape)


def find_octahedra(atoms, b_symbol: Optional[str] = None, x_symbol: Optional[str] = None
                   ) -> Octahedra:
    """Identify B and X (B: the element each of whose atoms has six X neighbours, with
    N_X = 3 N_B) and the octahedra; ``b_symbol`` and ``x_symbol`` (both) name them instead of
    trying every pair. Raises ValueError, naming the elements tried, if the structure is not an
    ABX3 perovskite supercell."""
    symbols = np.array(atoms.get_chemical_symbols())
    elements = [str(e) for e in dict.fromkeys(symbols)]     # plain str: messages show 'Na', not np.str_('Na')
    pairs = [(b_symbol, x_symbol)] if b_symbol and x_symbol else \
        [(b, x) for b in elements for x in elements if b != x]
    for b_sym, x_sym in pairs:
        b = np.nonzero(symbols == b_sym)[0]
        x = np.nonzero(symbols == x_sym)[0]
        if len(b) == 0 or len(x) != 3 * len(b):
            continue
        sites = _octahedra_on_lattice(atoms, b, x, b_sym, x_sym)
        if sites is not None:
            return sites
    tried = f"the pair B = {b_symbol}, X = {x_symbol}" if b_symbol and x_symbol else \
        f"any element pair (B, X) among {', '.join(elements)}"
    raise ValueError(f"not an ABX3 perovskite supercell: {tried} does not have six X around every B "
                     "and N_X = 3 N_B on a pseudocubic lattice")


def _octahedra_on_lattice(atoms, b, x, b_sym, x_sym) -> Optional[Octahedra]:
    """The octahedra of B atoms ``b`` and X atoms ``x`` from the lattice (module docstring), or
    None when the checks fail."""
    cell = atoms.cell.array
    volume_per_b = abs(np.linalg.det(cell)) / len(b)
    a_pc = volume_per_b ** (1.0 / 3.0)
    repeats = np.maximum(1, np.round(np.linalg.norm(cell, axis=1) / a_pc).astype(int))
    if np.prod(repeats) != len(b):
        return None
    scaled = np.linalg.solve(cell.T, atoms.positions[b].T).T * repeats      # grid units
    # the grid's offset: circular mean, so that periodic images of one site average correctly
    offset = np.angle(np.exp(2j * np.pi * scaled).mean(axis=0)) / (2.0 * np.pi)
    nearest_point = np.round(scaled - offset)
    if np.abs(scaled - offset - nearest_point).max() > 0.35:
        return None
    grid = np.mod(nearest_point, repeats).astype(np.int64)
    if len({tuple(g) for g in grid}) != len(b):
        return None
    sites_b = ((nearest_point + offset) / repeats) @ cell                     # (N_B, 3) ideal B, Å
    half_steps = cell / (2.0 * repeats[:, None])                             # (3, 3): a_α / 2
    x_of_b = np.empty((len(b), 3, 2), dtype=np.int64)
    for axis in range(3):
        for side, sign in enumerate((1.0, -1.0)):
            ideal = sites_b + sign * half_steps[axis]
            d = minimum_image(atoms.positions[x][None, :, :] - ideal[:, None, :], cell)
            r = np.linalg.norm(d, axis=2)                                    # (N_B, N_X)
            nearest = np.argmin(r, axis=1)
            if np.any(r[np.arange(len(b)), nearest] > 0.45 * a_pc):
                return None
            x_of_b[:, axis, side] = x[nearest]
    claimed = np.bincount(np.searchsorted(x, x_of_b.ravel()), minlength=len(x))
    if np.any(claimed != 2):
        return None
    return Octahedra(b_symbol=b_sym, x_symbol=x_sym, b=b, x_of_b=x_of_b, grid=grid, repeats=repeats)
