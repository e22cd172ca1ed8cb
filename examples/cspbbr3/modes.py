"""CsPbBr3 pseudocubic supercells and the displacement patterns of its soft modes.

Conventions (used by ``make_reference.py`` and by anyone reproducing the reference scans):

- The cubic 5-atom cell of lattice parameter ``a0`` (Å) holds Cs at (0, 0, 0), Pb at
  (½, ½, ½) and Br at (0, ½, ½), (½, 0, ½), (½, ½, 0), in that order. The Br at (0, ½, ½)
  bridges two Pb along x ("Br_x"); likewise Br_y and Br_z.
- A supercell ``n1 × n2 × n3`` is ``ase.Atoms.repeat((n1, n2, n3))`` of that cell, so atom
  order is ASE's: the 5-atom basis repeated, first index slowest.
- The octahedron around the Pb of pseudocubic cell ``p = (p1, p2, p3)`` (integer indices)
  rotates about axis ``α`` with sign ``s(p)``; to first order in the angle its Br_β (β ≠ α),
  at ``Pb + (a0/2) e_β``, moves by ``s(p) · A · (e_α × e_β)``. Each Br is shared by two
  octahedra, and the pattern is that of rigid rotations exactly when neighbours along β
  rotate oppositely, which both tilt families below satisfy:

  * R point (out-of-phase, Glazer "−"): ``s(p) = (−1)^(p1 + p2 + p3)``;
  * M point (in-phase about α, Glazer "+"): ``s(p) = (−1)^(Σ_{k≠α} p_k)``.

  ``A`` is the displacement of every moving Br in Å (``A ≈ (a0/2)·θ`` for a tilt angle θ);
  Cs, Pb and the Br on the rotation axis do not move. Both patterns need an even supercell
  dimension along every direction in which the sign alternates.
- The polar Γ mode along ``α`` is the Slater mode: every Pb moves by ``+A e_α``, every Br by
  ``−A · m_Pb / (3 m_Br) e_α``, Cs is fixed, so the centre of mass does not move. ``A`` is the
  Pb displacement in Å.

Patterns are returned as (N, 3) arrays in Å per unit amplitude; positions are
``ideal + Σ_modes A_mode · pattern_mode``.
"""
from typing import Sequence, Tuple

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers

#: Fractional positions of the cubic 5-atom cell, in the order Cs, Pb, Br_x, Br_y, Br_z.
CUBIC_BASIS = (("Cs", (0.0, 0.0, 0.0)),
               ("Pb", (0.5, 0.5, 0.5)),
               ("Br", (0.0, 0.5, 0.5)),
               ("Br", (0.5, 0.0, 0.5)),
               ("Br", (0.5, 0.5, 0.0)))

AXES = {"x": 0, "y": 1, "z": 2}


def cubic_cell(a0: float) -> Atoms:
    """The cubic Pm-3m CsPbBr3 cell (5 atoms) with lattice parameter ``a0`` Å."""
    if not a0 > 0.0:
        raise ValueError(f"a0: expected a positive lattice parameter (Å), got {a0}")
    symbols = [s for s, _ in CUBIC_BASIS]
    fractional = [f for _, f in CUBIC_BASIS]
    return Atoms(symbols, scaled_positions=fractional, cell=np.eye(3) * a0, pbc=True)


def cubic_supercell(a0: float, repeat: Sequence[int]) -> Atoms:
    """The ideal cubic cell repeated ``repeat = (n1, n2, n3)`` times (5·n1·n2·n3 atoms)."""
    repeat = tuple(int(n) for n in repeat)
    if len(repeat) != 3 or min(repeat) < 1:
        raise ValueError(f"repeat: expected three positive integers, got {repeat}")
    return cubic_cell(a0).repeat(repeat)


def _axis_index(axis) -> int:
    if axis in AXES:
        return AXES[axis]
    if axis in (0, 1, 2):
        return int(axis)
    raise ValueError(f"axis: expected one of x, y, z (or 0, 1, 2), got {axis!r}")


def _repeat_of(atoms: Atoms, a0: float) -> Tuple[int, int, int]:
    """Supercell dimensions of an ideal cubic supercell of lattice parameter ``a0``."""
    cell = atoms.cell.array
    repeat = np.rint(np.diag(cell) / a0).astype(int)
    if not np.allclose(cell, np.diag(repeat * a0), atol=1e-6):
        raise ValueError("atoms: expected an ideal cubic supercell (orthogonal cell, edges n·a0); "
                         "build it with cubic_supercell(a0, repeat)")
    return tuple(int(n) for n in repeat)


def bromine_sites(atoms: Atoms, a0: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Br of an ideal cubic supercell: their indices (n_Br,), the bond direction β of each
    (n_Br,) in {0, 1, 2}, and the cell index p (n_Br, 3) of the Pb on the −β side."""
    repeat = np.array(_repeat_of(atoms, a0))
    index = np.flatnonzero(np.array(atoms.get_chemical_symbols()) == "Br")
    reduced = atoms.positions[index] / a0  # in units of a0: Br has one integer coordinate
    beta = np.argmin(np.abs(reduced - np.rint(reduced)), axis=1)
    pb_side = reduced - 0.5 * np.eye(3)[beta]
    p = np.rint(pb_side - 0.5).astype(int) % repeat
    return index, beta, p


def tilt_pattern(atoms: Atoms, a0: float, axis, point: str) -> np.ndarray:
    """(N, 3) displacement pattern of the octahedral tilt about ``axis`` at the R or M point,
    per Å of Br displacement (see module docstring)."""
    alpha = _axis_index(axis)
    if point not in ("R", "M"):
        raise ValueError(f"point: expected 'R' (out-of-phase) or 'M' (in-phase), got {point!r}")
    repeat = _repeat_of(atoms, a0)
    alternating = [k for k in range(3) if point == "R" or k != alpha]
    odd = [("xyz"[k], repeat[k]) for k in alternating if repeat[k] % 2]
    if odd:
        raise ValueError(f"atoms: the {point}-point tilt about {'xyz'[alpha]} alternates along "
                         f"{', '.join(k for k, _ in odd)}, which needs an even supercell "
                         f"dimension there; got repeat {repeat}")
    index, beta, p = bromine_sites(atoms, a0)
    sign = (-1.0) ** p[:, alternating].sum(axis=1)
    pattern = np.zeros((len(atoms), 3))
    axis_vector = np.eye(3)[alpha]
    for i, b, s in zip(index, beta, sign):
        if b != alpha:
            pattern[i] = s * np.cross(axis_vector, np.eye(3)[b])
    return pattern


def polar_pattern(atoms: Atoms, axis) -> np.ndarray:
    """(N, 3) Slater-mode pattern along ``axis``: Pb +1 Å, Br −m_Pb/(3 m_Br) Å, Cs 0."""
    alpha = _axis_index(axis)
    symbols = np.array(atoms.get_chemical_symbols())
    n_pb, n_br = int((symbols == "Pb").sum()), int((symbols == "Br").sum())
    if n_pb == 0 or n_br != 3 * n_pb:
        raise ValueError(f"atoms: expected a CsPbBr3 cell (Br = 3 Pb), got {n_pb} Pb, {n_br} Br")
    ratio = atomic_masses[atomic_numbers["Pb"]] / (3.0 * atomic_masses[atomic_numbers["Br"]])
    pattern = np.zeros((len(atoms), 3))
    pattern[symbols == "Pb", alpha] = 1.0
    pattern[symbols == "Br", alpha] = -ratio
    return pattern


def displaced(atoms: Atoms, *terms: Tuple[float, np.ndarray]) -> Atoms:
    """A copy of ``atoms`` moved by ``Σ amplitude · pattern`` over ``terms`` (amplitude Å)."""
    out = atoms.copy()
    for amplitude, pattern in terms:
        out.positions += float(amplitude) * pattern
    return out
