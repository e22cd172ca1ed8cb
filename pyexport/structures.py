"""Perovskite structures and the displacement patterns of their soft modes.

Builders
--------
:func:`cubic_perovskite` makes the ideal cubic ABX3 cell (A at (½,½,½), B at the origin, X at
(½,0,0), (0,½,0), (0,0,½)); :func:`cspbbr3` is CsPbBr3 with a = 5.87 Å; :func:`rattled` and
:func:`strained` make training-like distortions.

Mode patterns
-------------
Patterns are (N, 3) arrays in Å per unit amplitude, normalised so that the **amplitude is the
largest displacement of any atom**: for the tilts that is the displacement of every moving X atom
(A and B do not move; X on the rotation axis of its octahedra neither), for the polar mode the B
displacement. A structure along a mode is ``positions + amplitude · pattern``
(:func:`displaced`).

The octahedra are those of :func:`pyexport.octahedra.find_octahedra` (the B-site grid of a
pseudocubic supercell); every X bridging two B atoms links their octahedra. The pseudo-cubic
axes x, y, z are the directions of the cell vectors.

- **Tilts** rotate every octahedron rigidly (to first order) about a pseudo-cubic axis n by an
  angle of sign s_B: X moves by ``s_B · n × (r_X − r_B)``, averaged over the two octahedra
  sharing it (they agree for the patterns below in the ideal structure). The signs follow from
  the octahedral network: for an out-of-phase (R-point, Glazer ``−``) tilt every linked pair of
  octahedra has opposite signs; for an in-phase (M-point, Glazer ``+``) tilt about n, octahedra
  linked along n have the same sign and the others opposite signs. A cell that cannot carry the
  pattern (an odd number of octahedra along a direction where the sign alternates) is an error.

  ``R-tilt`` (a⁰a⁰c⁻ about ``axis``), ``R-tilt-111`` (a⁻a⁻a⁻, about [111]), ``M-tilt``
  (a⁰a⁰c⁺ about ``axis``).
- **Polar** Γ mode (Slater type) along ``axis``: every B moves by +1, every X by
  ``−(n_B m_B)/(n_X m_X)``, A fixed: the centre of mass does not move.

These conventions agree with ``examples/cspbbr3/modes.py`` (tilt amplitude = Br displacement,
polar amplitude = Pb displacement).
"""
from typing import Dict, List, Sequence, Tuple

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers

from .octahedra import Octahedra, find_octahedra

AXES = {"x": 0, "y": 1, "z": 2}
MODES = {
    "R-tilt": "R-tilt", "a0a0c-": "R-tilt",
    "R-tilt-111": "R-tilt-111", "a-a-a-": "R-tilt-111",
    "M-tilt": "M-tilt", "a0a0c+": "M-tilt",
    "polar": "polar", "Gamma-polar": "polar",
}


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------
def cubic_perovskite(a_site: str, b_site: str, x_site: str, a: float, repeat: Sequence[int] = (1, 1, 1)) -> Atoms:
    """Ideal cubic ABX3 (Pm-3m), lattice parameter ``a`` Å, repeated ``repeat`` times; atom
    order A, B, X(x), X(y), X(z) per cell (ASE ``repeat`` order)."""
    if not a > 0:
        raise ValueError(f"lattice parameter a must be positive (Å), got {a}")
    repeat = tuple(int(n) for n in repeat)
    if len(repeat) != 3 or min(repeat) < 1:
        raise ValueError(f"repeat must be three positive integers, got {repeat}")
    cell = Atoms([a_site, b_site, x_site, x_site, x_site],
                 scaled_positions=[(0.5, 0.5, 0.5), (0, 0, 0), (0.5, 0, 0), (0, 0.5, 0), (0, 0, 0.5)],
                 cell=np.eye(3) * a, pbc=True)
    return cell.repeat(repeat)


def cspbbr3(a: float = 5.87, repeat: Sequence[int] = (2, 2, 2)) -> Atoms:
    """Cubic CsPbBr3 (a = 5.87 Å by default), 2×2×2 = 40 atoms by default."""
    return cubic_perovskite("Cs", "Pb", "Br", a, repeat)


def rattled(atoms: Atoms, stdev: float, seed: int) -> Atoms:
    """A copy with Gaussian displacements of standard deviation ``stdev`` Å per component."""
    out = atoms.copy()
    rng = np.random.default_rng(seed)
    out.positions = out.positions + rng.normal(scale=stdev, size=out.positions.shape)
    return out


def strained(atoms: Atoms, strain: np.ndarray) -> Atoms:
    """A copy with the cell and positions deformed by (1 + ε), ε a (3, 3) strain (symmetrised)."""
    eps = np.asarray(strain, dtype=float)
    if eps.shape != (3, 3):
        raise ValueError(f"strain must be a (3, 3) array, got shape {eps.shape}")
    eps = 0.5 * (eps + eps.T)
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
    return out


def _links(octa: Octahedra, bonds: np.ndarray) -> List[Tuple[int, int, int, np.ndarray]]:
    """(octahedron a, octahedron b, X atom, B_a -> B_b vector) for every X shared by two B;
    ``bonds`` (N_B, 6, 3) from :meth:`Octahedra.bonds`."""
    owner: Dict[int, List[Tuple[int, np.ndarray]]] = {}
    for k in range(len(octa.b)):
        for x, v in zip(octa.ligands[k], bonds[k]):
            owner.setdefault(int(x), []).append((k, v))
    links = []
    for x, owners in owner.items():
        if len(owners) == 2:
            (a, va), (b, vb) = owners
            links.append((a, b, x, va - vb))
    return links


# --------------------------------------------------------------------------------------------
# Patterns
# --------------------------------------------------------------------------------------------
def _tilt_signs(octa: Octahedra, bonds: np.ndarray, axis: np.ndarray, in_phase: bool) -> np.ndarray:
    """±1 per octahedron: opposite across every link, except same across links along ``axis``
    for an in-phase tilt. Raises if the cell cannot carry the pattern."""
    n = len(octa.b)
    links = _links(octa, bonds)
    adjacency: Dict[int, List[Tuple[int, int]]] = {k: [] for k in range(n)}
    for a, b, _, v in links:
        along = abs(v @ axis) / np.linalg.norm(v) > 0.7
        relation = 1 if (in_phase and along) else -1
        adjacency[a].append((b, relation))
        adjacency[b].append((a, relation))
    signs = np.zeros(n, dtype=int)
    for start in range(n):
        if signs[start]:
            continue
        signs[start] = 1
        stack = [start]
        while stack:
            a = stack.pop()
            for b, rel in adjacency[a]:
                want = signs[a] * rel
                if signs[b] == 0:
                    signs[b] = want
                    stack.append(b)
                elif signs[b] != want:
                    kind = "in-phase" if in_phase else "out-of-phase"
                    raise ValueError(f"the cell cannot carry an {kind} tilt: octahedra {a} and {b} would need "
                                     "both signs (use an even number of octahedra along every direction "
                                     "in which the tilt alternates, e.g. a 2x2x2 supercell)")
    return signs


def tilt_pattern(atoms: Atoms, axis: str = "z", in_phase: bool = False, about_111: bool = False) -> np.ndarray:
    """(N, 3) rigid-octahedron tilt pattern, max displacement 1 (module docstring)."""
    octa = find_octahedra(atoms)
    axes, bonds = octa.axes(atoms), octa.bonds(atoms)
    if about_111:
        n = axes.sum(axis=0)
    else:
        if axis not in AXES:
            raise ValueError(f"axis must be one of {sorted(AXES)}, got {axis!r}")
        n = axes[AXES[axis]]
    n = n / np.linalg.norm(n)
    signs = _tilt_signs(octa, bonds, n, in_phase)
    pattern = np.zeros((len(atoms), 3))
    count = np.zeros(len(atoms))
    for k in range(len(octa.b)):
        for x, bond in zip(octa.ligands[k], bonds[k]):
            pattern[x] += signs[k] * np.cross(n, bond)
            count[x] += 1
    moving = count > 0
    pattern[moving] /= count[moving, None]
    return _normalised(pattern)


def polar_pattern(atoms: Atoms, axis: str = "z") -> np.ndarray:
    """(N, 3) Slater polar mode along ``axis``: B +1, X −(n_B m_B)/(n_X m_X), A fixed."""
    if axis not in AXES:
        raise ValueError(f"axis must be one of {sorted(AXES)}, got {axis!r}")
    octa = find_octahedra(atoms)
    direction = octa.axes(atoms)[AXES[axis]]
    symbols = np.array(atoms.get_chemical_symbols())
    is_b = symbols == octa.b_symbol
    is_x = symbols == octa.x_symbol
    m_b = atomic_masses[atomic_numbers[octa.b_symbol]]
    m_x = atomic_masses[atomic_numbers[octa.x_symbol]]
    pattern = np.zeros((len(atoms), 3))
    pattern[is_b] = direction
    pattern[is_x] = -direction * (is_b.sum() * m_b) / (is_x.sum() * m_x)
    return pattern


def _normalised(pattern: np.ndarray) -> np.ndarray:
    largest = np.linalg.norm(pattern, axis=1).max()
    if largest == 0:
        raise ValueError("the displacement pattern is zero")
    return pattern / largest


def mode_pattern(atoms: Atoms, mode: str, axis: str = "z") -> np.ndarray:
    """Built-in pattern by name: ``R-tilt`` / ``a0a0c-``, ``R-tilt-111`` / ``a-a-a-``,
    ``M-tilt`` / ``a0a0c+``, ``polar``."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; built-in modes: {sorted(MODES)}")
    name = MODES[mode]
    if name == "R-tilt":
        return tilt_pattern(atoms, axis, in_phase=False)
    if name == "R-tilt-111":
        return tilt_pattern(atoms, in_phase=False, about_111=True)
    if name == "M-tilt":
        return tilt_pattern(atoms, axis, in_phase=True)
    return polar_pattern(atoms, axis)


def displaced(atoms: Atoms, pattern: np.ndarray, amplitude: float) -> Atoms:
    """A copy with positions + amplitude · pattern (Å)."""
    pattern = np.asarray(pattern, dtype=float)
    if pattern.shape != (len(atoms), 3):
        raise ValueError(f"pattern has shape {pattern.shape}, the structure has {len(atoms)} atoms")
    out = atoms.copy()
    out.calc = None
    out.positions = atoms.positions + amplitude * pattern
    return out


def mode_amplitude(atoms: Atoms, reference: Atoms, pattern: np.ndarray) -> Tuple[float, float]:
    """Projection of ``atoms`` − ``reference`` (minimum-image displacements, same atom order) on
    ``pattern``: returns (amplitude, rms of the remainder in Å per atom)."""
    if len(atoms) != len(reference) or atoms.get_chemical_symbols() != reference.get_chemical_symbols():
        raise ValueError("structure and reference have different atoms (count, order or elements)")
    from ase.geometry import find_mic

    delta, _ = find_mic(atoms.positions - reference.positions, reference.cell, reference.pbc)
    p = np.asarray(pattern, dtype=float)
    amplitude = float((delta * p).sum() / (p * p).sum())
    rest = delta - amplitude * p
    return amplitude, float(np.sqrt((rest ** 2).sum(axis=1).mean()))
