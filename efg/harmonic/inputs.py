"""Inputs of the harmonic baseline, checked before any force is computed: the structure file,
its periodicity and elements, the temperatures and the supercell matrix.
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np
from ase import Atoms




def read_structure(path) -> Atoms:
    """Read a structure file (POSCAR/CONTCAR, CIF, extxyz, ... any format ASE reads) and check
    that it is periodic in 3D."""
    from ase.io import read

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"structure file not found: {path}")
    try:
        atoms = read(path)
    except Exception as exc:   # ASE raises many types for unreadable files
        raise ValueError(f"{path}: cannot read the structure ({type(exc).__name__}: {exc})") from None
    check_periodic(atoms, path)
    return atoms


def check_periodic(atoms: Atoms, where: str = "structure") -> None:
    """Raise ``ValueError`` unless ``atoms`` is periodic in all three directions with a
    3D cell of positive volume."""
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if not pbc.all():
        raise ValueError(f"{where}: the harmonic baseline needs a structure periodic in 3D, "
                         f"got pbc={pbc.tolist()}")
    if atoms.cell.rank != 3 or abs(atoms.get_volume()) < 1e-9:
        raise ValueError(f"{where}: the cell is not three-dimensional (cell={atoms.cell.array.tolist()})")


def check_elements(atoms: Atoms, elements: Sequence[str], where: str, model: str) -> None:
    """Raise ``ValueError`` naming ``where`` and ``model`` for elements the model lacks."""
    missing = sorted(set(atoms.get_chemical_symbols()) - set(elements))
    if missing:
        raise ValueError(f"{where}: element(s) {missing} are not in the model {model} "
                         f"(model elements: {list(elements)})")


def parse_temperatures(text) -> np.ndarray:
    """Temperatures (K) from ``"100:500:50"`` (start:stop:step, stop included), ``"100,300"``
    or a single number; each must be positive."""
    if isinstance(text, (int, float)):
        values = [float(text)]
    elif isinstance(text, str) and ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise ValueError(f"temperatures {text!r}: expected start:stop:step, e.g. 100:500:50")
        start, stop, step = (float(p) for p in parts)
        if step <= 0 or stop < start:
            raise ValueError(f"temperatures {text!r}: need step > 0 and stop >= start")
        n = int(math.floor((stop - start) / step + 1e-9)) + 1
        values = list(start + step * np.arange(n))
    elif isinstance(text, str):
        values = [float(v) for v in text.replace(",", " ").split()]
    else:
        values = [float(v) for v in text]
    temps = np.asarray(values, dtype=float)
    if temps.size == 0 or not np.all(temps > 0):
        raise ValueError(f"temperatures {text!r}: need at least one temperature, all > 0 K")
    return temps


def parse_supercell_matrix(values) -> np.ndarray:
    """(3, 3) int supercell matrix from 1, 3 or 9 integers (ASE convention: supercell lattice
    vectors, as rows, = matrix @ input lattice vectors)."""
    flat = np.asarray(values, dtype=float).ravel()
    if flat.size == 1:
        flat = np.repeat(flat, 3)
    if flat.size == 3:
        matrix = np.diag(flat)
    elif flat.size == 9:
        matrix = flat.reshape(3, 3)
    else:
        raise ValueError(f"supercell {list(values)}: expected 1, 3 or 9 integers")
    if not np.allclose(matrix, np.rint(matrix)):
        raise ValueError(f"supercell {list(values)}: entries must be integers")
    matrix = np.rint(matrix).astype(int)
    if round(np.linalg.det(matrix)) < 1:
        raise ValueError(f"supercell {list(values)}: the matrix must have a positive determinant")
    return matrix
