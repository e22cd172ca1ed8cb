"""MAPbI3 (CH3NH3PbI3) pseudocubic supercells with methylammonium cations in random orientations.

Conventions (used by ``make_reference.py`` and the demo):

- The inorganic framework is that of ``examples/cspbbr3/modes.py`` with I for Br: Pb at
  (½, ½, ½), I at (0, ½, ½), (½, 0, ½), (½, ½, 0) of each pseudocubic cell of lattice parameter
  ``a0`` (Å). The A site (0, 0, 0) holds the centre of a CH3NH3⁺ cation (the midpoint of its C–N
  bond).
- Atom order per pseudocubic cell: Pb, I, I, I, C, N, H, H, H (on C), H, H, H (on N); cells in
  ``ase.Atoms.repeat`` order of the framework, so LAMMPS types and dumps keep one fixed order.
- The cation is the staggered CH3–NH3 geometry of the gas-phase ion: C–N 1.47 Å, C–H 1.09 Å,
  N–H 1.03 Å, tetrahedral angles. Orientations are uniform random rotations (Haar measure) drawn
  from the caller's ``numpy.random.Generator``.
- The tetragonal start (I4/mcm, a⁰a⁰c⁻) is the framework tilted at the R point about z
  (``tilt_pattern``, amplitude in Å of I displacement) with the cell stretched to c/a > 1; the
  cations sit at the A sites as in the cubic cell.
"""
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cspbbr3"))
from modes import cubic_supercell, displaced, tilt_pattern  # noqa: E402

BOND_CN_A = 1.47
BOND_CH_A = 1.09
BOND_NH_A = 1.03
ATOMS_PER_CELL = 12
ELEMENTS = ["Pb", "I", "C", "N", "H"]      # LAMMPS types 1..5 of the example
TETRAHEDRAL_COS = -1.0 / 3.0


def methylammonium() -> np.ndarray:
    """(8, 3) positions (Å) of C, N, 3 H on C, 3 H on N, C–N along +z, centred on the C–N
    midpoint; the H of the two groups staggered (60° apart about the axis)."""
    c = np.array([0.0, 0.0, -BOND_CN_A / 2.0])
    n = np.array([0.0, 0.0, +BOND_CN_A / 2.0])
    sin = np.sqrt(1.0 - TETRAHEDRAL_COS ** 2)
    rows = [c, n]
    for phi in np.radians([0.0, 120.0, 240.0]):       # H–C–N angle tetrahedral: points away from N
        rows.append(c + BOND_CH_A * np.array([sin * np.cos(phi), sin * np.sin(phi), TETRAHEDRAL_COS]))
    for phi in np.radians([60.0, 180.0, 300.0]):      # C–N–H angle tetrahedral: points away from C
        rows.append(n + BOND_NH_A * np.array([sin * np.cos(phi), sin * np.sin(phi), -TETRAHEDRAL_COS]))
    return np.array(rows)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly distributed rotation matrix (3, 3): QR of a Gaussian matrix, signs fixed so
    that the distribution is the Haar measure and det = +1."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0.0:
        q[:, 0] = -q[:, 0]
    return q


def mapbi3_supercell(a0: float, repeat: Sequence[int], rng: np.random.Generator,
                     tilt_A: float = 0.0, c_over_a: float = 1.0) -> Atoms:
    """An ``n1 × n2 × n3`` pseudocubic MAPbI3 supercell (12 atoms per cell) with randomly
    oriented cations; ``tilt_A`` > 0 adds the a⁰a⁰c⁻ tilt (Å of I displacement, needs even n),
    ``c_over_a`` stretches z (tetragonal)."""
    framework = cubic_supercell(a0, repeat)               # Cs Pb Br3 per cell, Cs on the A site
    if tilt_A:
        framework = displaced(framework, (tilt_A, tilt_pattern(framework, a0, "z", "R")))
    symbols = np.array(framework.get_chemical_symbols())
    a_sites = framework.positions[symbols == "Cs"]
    inorganic = framework[symbols != "Cs"]
    inorganic.set_chemical_symbols(["I" if s == "Br" else s for s in inorganic.get_chemical_symbols()])
    molecule = methylammonium()
    out = Atoms(cell=framework.cell, pbc=True)
    for cell_index, centre in enumerate(a_sites):
        out += inorganic[4 * cell_index: 4 * cell_index + 4]
        rotated = molecule @ random_rotation(rng).T + centre
        out += Atoms("CNH6", positions=rotated)
    if c_over_a != 1.0:
        cell = out.cell.array.copy()
        cell[2] *= c_over_a
        out.set_cell(cell, scale_atoms=False)
        # the framework scales with the cell, each cation moves rigidly with its centre
        scale = np.diag([1.0, 1.0, c_over_a])
        for start in range(0, len(out), ATOMS_PER_CELL):
            block = slice(start, start + ATOMS_PER_CELL)
            frame = out.positions[block]
            centre = frame[4:6].mean(axis=0)
            frame[:4] = frame[:4] @ scale
            frame[4:] = frame[4:] - centre + centre @ scale
            out.positions[block] = frame
    out.wrap()
    return out


def relaxed_phase_supercell(frames: Sequence[Atoms], phase: str, n: int) -> Atoms:
    """The relaxed 96-atom cell of ``phase`` (``config_type=phase_min``) among the reference
    ``frames``, repeated to n×n×n pseudocubic cells (n even; the caller checks), atom order kept
    cell by cell. Before repeating, the cations are made whole (:func:`whole_cations`): repeating
    a cell in which a cation straddles the boundary would give each of its copies atoms of another
    copy. n = 2 is the cell as stored (its starts, and so its runs, stay those of earlier rounds)."""
    ground = next(a for a in frames if a.info.get("config_type") == "phase_min" and a.info.get("phase") == phase)
    if n == 2:
        return ground.copy()
    return whole_cations(ground).repeat((n // 2, n // 2, n // 2))


def cell_starts(atoms: Atoms) -> np.ndarray:
    """Index of the first atom (Pb) of every pseudocubic cell of a supercell in this module's
    atom order; a clear error when the atoms are not whole cells."""
    if len(atoms) % ATOMS_PER_CELL:
        raise ValueError(f"{len(atoms)} atoms: not whole pseudocubic cells of {ATOMS_PER_CELL} atoms "
                         "(Pb, I, I, I, C, N, 3 H, 3 H)")
    return np.arange(0, len(atoms), ATOMS_PER_CELL)


def whole_cations(atoms: Atoms) -> Atoms:
    """A copy of a supercell in this module's atom order with every cation's N and H atoms moved
    to the periodic image nearest its C (minimum image; C and the framework stay), so that each
    cation's atoms are bonded in Cartesian space, not only through the cell's periodicity."""
    from ase.geometry import find_mic

    out = atoms.copy()
    base = cell_starts(atoms)
    carbon = base + 4
    for offset in range(5, ATOMS_PER_CELL):          # N, then the six H
        vectors, _ = find_mic(out.positions[base + offset] - out.positions[carbon], out.cell, out.pbc)
        out.positions[base + offset] = out.positions[carbon] + vectors
    return out


def repeated_frame(frame: Atoms, n: int) -> Atoms:
    """A frame of an earlier run (k×k×k pseudocubic cells in structures.py order, as the runs dump
    them sorted by id) with its cations made whole, repeated to n×n×n cells (n a multiple of k):
    ``--start-from``, e.g. a 768-atom start equilibrated as the 96-atom cell."""
    k = round((len(frame) / ATOMS_PER_CELL) ** (1 / 3))
    if k ** 3 * ATOMS_PER_CELL != len(frame) or n % k:
        raise SystemExit(f"--start-from: a frame of {len(frame)} atoms ({k}x{k}x{k} pseudocubic cells?) "
                         f"does not repeat to --supercell {n}")
    return whole_cations(frame).repeat((n // k,) * 3)


def cation_bond_lengths(atoms: Atoms) -> dict:
    """Bond lengths (Å, minimum image) of every cation of a supercell in this module's atom
    order: ``"C-N"`` (n_cations,), ``"C-H"`` and ``"N-H"`` (n_cations, 3). Only the bonds are
    measured, so a 768-atom frame costs what its 64 cations do."""
    from ase.geometry import find_mic

    base = cell_starts(atoms)
    c, n = base + 4, base + 5
    first = np.concatenate([c, np.repeat(c, 3), np.repeat(n, 3)])
    second = np.concatenate([n, (base[:, None] + [6, 7, 8]).ravel(), (base[:, None] + [9, 10, 11]).ravel()])
    vectors = atoms.positions[second] - atoms.positions[first]
    _, lengths = find_mic(vectors, atoms.cell, atoms.pbc)
    k = len(base)
    return {"C-N": lengths[:k], "C-H": lengths[k:4 * k].reshape(k, 3), "N-H": lengths[4 * k:].reshape(k, 3)}


def intact_molecules(atoms: Atoms, max_ch_A: float = 1.35, max_nh_A: float = 1.30,
                     max_cn_A: float = 1.75) -> bool:
    """True if every cation of a supercell in this module's atom order still has its C–N bond
    and its six X–H bonds (minimum image), i.e. no H has moved to another molecule or to I."""
    bonds = cation_bond_lengths(atoms)
    return bool(np.all(bonds["C-N"] <= max_cn_A) and np.all(bonds["C-H"] <= max_ch_A)
                and np.all(bonds["N-H"] <= max_nh_A))
