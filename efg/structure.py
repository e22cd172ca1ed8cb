"""Structural order parameters of ABX3 perovskite supercells, frame by frame.

The octahedral tilt transitions (cubic a⁰a⁰a⁰ → tetragonal a⁰a⁰c⁻ → orthorhombic a⁻a⁻c⁺) are
seen in the rotation angles of the BX6 octahedra about the pseudocubic axes. Neighbouring
octahedra rotate in opposite senses (corner sharing), so the order parameter is the *staggered*
mean rotation: for rotations about axis α,

    Φ_R,α = |Σ_k (-1)^(kx+ky+kz) θ_α,k| / N_B     (out-of-phase, R-point tilt, "−" in Glazer)
    Φ_M,α = |Σ_k (-1)^(kβ+kγ)   θ_α,k| / N_B     (in-phase along α, M-point tilt, "+")

with k the B-site grid index and θ_α,k the rotation of octahedron k about α (mean over its four
equatorial B–X bonds). In the cubic phase both average to ~0 (fluctuations of order 1/√N_B);
in a tilted phase they equal the tilt angle. Angles in degrees, lengths in Å.

The supercell must be a pseudocubic n1×n2×n3 repetition with cell vectors along the
pseudocubic axes (as MD of a perovskite supercell keeps them, up to small shears).
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np


@dataclass
class PerovskiteSites:
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


def _minimum_image(d: np.ndarray, cell: np.ndarray) -> np.ndarray:
    frac = np.linalg.solve(cell.T, d.reshape(-1, 3).T).T
    frac -= np.round(frac)
    return (frac @ cell).reshape(d.shape)


def find_perovskite(atoms, b_symbol: Optional[str] = None, x_symbol: Optional[str] = None
                    ) -> PerovskiteSites:
    """Identify B and X (B: the element each of whose atoms has six X neighbours, with
    N_X = 3 N_B) and the octahedra. Raises ValueError if the structure is not an ABX3
    perovskite supercell."""
    symbols = np.array(atoms.get_chemical_symbols())
    elements = list(dict.fromkeys(symbols))
    pairs = [(b_symbol, x_symbol)] if b_symbol and x_symbol else \
        [(b, x) for b in elements for x in elements if b != x]
    for b_sym, x_sym in pairs:
        b = np.nonzero(symbols == b_sym)[0]
        x = np.nonzero(symbols == x_sym)[0]
        if len(b) == 0 or len(x) != 3 * len(b):
            continue
        sites = _octahedra(atoms, b, x, b_sym, x_sym)
        if sites is not None:
            return sites
    raise ValueError("not an ABX3 perovskite supercell: no element pair (B, X) with six X around every "
                     f"B and N_X = 3 N_B among {elements}; name them with b_symbol/x_symbol")


def _octahedra(atoms, b, x, b_sym, x_sym) -> Optional[PerovskiteSites]:
    """The octahedra from the lattice, not from distances: B sites are the points of the
    n1×n2×n3 grid that fits the B atoms best, and the X on the ±α side of a B is the X nearest
    to the ideal site (grid point ± a_α/2). Distance criteria fail in hot MD frames of a strongly
    anharmonic perovskite, where B moves far off-centre (B–X bonds beyond 4 Å while the next X
    shell comes within 5 Å); the lattice assignment holds while atoms stay on their sites, and it
    is checked: every B within 0.35 grid steps of its point, every X within 0.45 a of its site
    and claimed by exactly two B."""
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
            d = _minimum_image(atoms.positions[x][None, :, :] - ideal[:, None, :], cell)
            r = np.linalg.norm(d, axis=2)                                    # (N_B, N_X)
            nearest = np.argmin(r, axis=1)
            if np.any(r[np.arange(len(b)), nearest] > 0.45 * a_pc):
                return None
            x_of_b[:, axis, side] = x[nearest]
    claimed = np.bincount(np.searchsorted(x, x_of_b.ravel()), minlength=len(x))
    if np.any(claimed != 2):
        return None
    return PerovskiteSites(b_symbol=b_sym, x_symbol=x_sym, b=b, x_of_b=x_of_b, grid=grid, repeats=repeats)


def octahedral_rotations(atoms, sites: PerovskiteSites) -> np.ndarray:
    """(N_B, 3) rotation angle (degrees) of each octahedron about the x, y, z axes: the mean
    over the four equatorial B–X bonds of their angular displacement about that axis."""
    cell = atoms.cell.array
    pos = atoms.positions
    bond = _minimum_image(pos[sites.x_of_b] - pos[sites.b][:, None, None, :], cell)   # (N_B, 3, 2, 3)
    angles = np.zeros((len(sites.b), 3))
    for axis in range(3):
        p, q = (axis + 1) % 3, (axis + 2) % 3      # right-handed (axis, p, q)
        # bonds along +p / -p rotate towards +q / -q for a positive rotation about axis
        along_p = bond[:, p]                       # (N_B, 2, 3): +p side, -p side
        along_q = bond[:, q]
        theta = (np.arctan2(along_p[:, 0, q], along_p[:, 0, p])
                 + np.arctan2(-along_p[:, 1, q], -along_p[:, 1, p])
                 + np.arctan2(-along_q[:, 0, p], along_q[:, 0, q])
                 + np.arctan2(along_q[:, 1, p], -along_q[:, 1, q])) / 4.0
        angles[:, axis] = np.degrees(theta)
    return angles


def tilt_order_parameters(atoms, sites: PerovskiteSites) -> dict:
    """Φ_R and Φ_M (degrees) about x, y, z for one frame, and the B–X–B angle (degrees)."""
    theta = octahedral_rotations(atoms, sites)
    g = sites.grid
    r_phase = (-1.0) ** g.sum(axis=1)
    out = {"tilt_R_deg": np.abs(r_phase @ theta) / len(sites.b)}
    m = np.empty(3)
    for axis in range(3):
        phase = (-1.0) ** (g.sum(axis=1) - g[:, axis])
        m[axis] = abs(phase @ theta[:, axis]) / len(sites.b)
    out["tilt_M_deg"] = m
    out["rotation_rms_deg"] = np.sqrt((theta ** 2).mean(axis=0))
    return out


def pseudocubic_lattice(atoms, repeats: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(a, b, c) pseudocubic lattice parameters (Å) and cell angles (degrees) of one frame."""
    cellpar = atoms.cell.cellpar()
    return cellpar[:3] / np.asarray(repeats), cellpar[3:]
