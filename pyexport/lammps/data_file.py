"""LAMMPS data files from ASE structures, at full float64 precision.

LAMMPS wants a cell with a along x and b in the xy plane (lower-triangular rows); a structure in
any other orientation is rotated rigidly into that frame, and the rotation is returned so that
vectors computed by LAMMPS can be rotated back (``v_ase = v_lammps @ rotation``).
"""
from pathlib import Path
from typing import Sequence

import numpy as np
from ase.data import atomic_masses, atomic_numbers


def lammps_cell(cell: np.ndarray):
    """(lammps_cell, rotation) with ``cell @ rotation.T == lammps_cell`` lower-triangular.

    ``cell`` (3, 3) Å, rows a, b, c, right-handed. ``rotation`` (3, 3) is proper orthogonal.
    """
    cell = np.asarray(cell, dtype=np.float64)
    if np.linalg.det(cell) <= 0:
        raise ValueError("cell must be right-handed with positive volume for LAMMPS")
    a, b, c = cell
    lx = np.linalg.norm(a)
    xy = b @ a / lx
    ly = np.sqrt(b @ b - xy * xy)
    xz = c @ a / lx
    yz = (b @ c - xy * xz) / ly
    lz = np.sqrt(c @ c - xz * xz - yz * yz)
    new = np.array([[lx, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, lz]])
    # new = cell @ R.T  ->  R.T = cell^-1 new
    rotation = (np.linalg.solve(cell, new)).T
    if np.allclose(new, cell, rtol=0, atol=1e-14 * max(1.0, lx)):
        return cell.copy(), np.eye(3)
    return new, rotation


def write_lammps_data(path, atoms, species_order: Sequence[str], comment: str = "efgmd",
                      velocities: bool = False):
    """Write ``atoms`` as a LAMMPS ``atom_style atomic`` data file.

    Atom type t (1-based) is ``species_order[t-1]``; masses from ASE's table, with the element in a
    comment on each ``Masses`` line (``efg`` reads type maps from such comments). Returns the
    rotation applied (identity for a cell already in LAMMPS form). ``velocities=True`` writes the
    ASE velocities converted to LAMMPS metal units (Å/ps).
    """
    species_order = list(species_order)
    symbols = atoms.get_chemical_symbols()
    missing = sorted(set(symbols) - set(species_order))
    if missing:
        raise ValueError(f"species_order {species_order} lacks element(s) {missing} of the structure")
    if not atoms.pbc.all():
        raise ValueError("write_lammps_data writes periodic structures only (pbc must be True in 3D)")
    cell, rotation = lammps_cell(atoms.cell.array)
    positions = atoms.get_positions() @ rotation.T
    types = np.array([species_order.index(s) + 1 for s in symbols])
    lines = [f"# {comment}", "", f"{len(atoms)} atoms", f"{len(species_order)} atom types", "",
             f"0.0 {cell[0, 0]:.17g} xlo xhi", f"0.0 {cell[1, 1]:.17g} ylo yhi",
             f"0.0 {cell[2, 2]:.17g} zlo zhi", f"{cell[1, 0]:.17g} {cell[2, 0]:.17g} {cell[2, 1]:.17g} xy xz yz",
             "", "Masses", ""]
    for t, element in enumerate(species_order, start=1):
        lines.append(f"{t} {atomic_masses[atomic_numbers[element]]:.6f} # {element}")
    lines += ["", "Atoms # atomic", ""]
    for k, (t, p) in enumerate(zip(types, positions), start=1):
        lines.append(f"{k} {t} {p[0]:.17g} {p[1]:.17g} {p[2]:.17g}")
    if velocities:
        from ..units import A_PER_PS_PER_ASE_VELOCITY
        v = atoms.get_velocities() @ rotation.T * A_PER_PS_PER_ASE_VELOCITY
        lines += ["", "Velocities", ""]
        lines += [f"{k} {x:.17g} {y:.17g} {z:.17g}" for k, (x, y, z) in enumerate(v, start=1)]
    Path(path).write_text("\n".join(lines) + "\n")
    return rotation
