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

The octahedra (which atoms, on which grid) come from :func:`pyexport.octahedra.find_octahedra`,
found once on a reference frame; the supercell must be a pseudocubic n1×n2×n3 repetition with
cell vectors along the pseudocubic axes (as MD of a perovskite supercell keeps them, up to small
shears).
"""
from typing import Tuple

import numpy as np

from pyexport.octahedra import Octahedra, minimum_image


def octahedral_rotations(atoms, sites: Octahedra) -> np.ndarray:
    """(N_B, 3) rotation angle (degrees) of each octahedron about the x, y, z axes: the mean
    over the four equatorial B–X bonds of their angular displacement about that axis."""
    cell = atoms.cell.array
    pos = atoms.positions
    bond = minimum_image(pos[sites.x_of_b] - pos[sites.b][:, None, None, :], cell)   # (N_B, 3, 2, 3)
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


def tilt_order_parameters(atoms, sites: Octahedra) -> dict:
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
