"""Write EFG tensors as a ``.magres`` file (CASTEP's format for NMR parameters), which ASE
(``ase.io.read(path, format="magres")``), Soprano and MagresView read.

The file (format ``#$magres-abinitio-v1.0``) has three blocks:

- ``[calculation]``: ``calc_code efgmd`` and, when given, ``calc_comment`` lines (what the
  tensors are: one frame, or the motional average over which frames);
- ``[atoms]``: ``units lattice Angstrom``, the cell vectors a, b, c (one ``lattice`` line, row
  after row), ``units atom Angstrom`` and one ``atom <species> <label> <index> x y z`` per atom,
  the label being the element and the index counting from 1 within it (CASTEP's site naming);
- ``[magres]``: ``units efg au`` and one ``efg <label> <index> V_xx V_xy V_xz V_yx ... V_zz``
  per atom, the full symmetric 3x3 tensor row by row in atomic units, E_h/(e a_0²):
  ``V [au] = V [V/Å²] / pyexport.nmr.V_PER_A2_PER_EFG_AU`` (≈ 97.17 V/Å² per au).

The tensors keep :mod:`pyexport.nmr`'s sign convention (``V_ab = ∂_a ∂_b φ``, VASP's
``LEFG``); Soprano's C_Q of the file (``e Q V_zz / h``) is then the signed C_Q of
:func:`pyexport.nmr.cq_mhz`. Every atom has its ``efg`` line, quadrupolar or not (the EFG is a
property of the site; C_Q needs the isotope, which the file does not carry).
"""
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import nmr

MAGRES_HEADER = "#$magres-abinitio-v1.0"


def site_labels(symbols: Sequence[str]):
    """CASTEP's (label, index) of each atom: the element and its 1-based count within it."""
    counts = {}
    labels = []
    for symbol in symbols:
        counts[symbol] = counts.get(symbol, 0) + 1
        labels.append((str(symbol), counts[symbol]))
    return labels


def _numbers(values: Iterable[float]) -> str:
    return " ".join(repr(float(v)) for v in values)


def magres_text(symbols: Sequence[str], positions_A, cell_A, tensors_V_per_A2,
                comments: Sequence[str] = ()) -> str:
    """The text of a ``.magres`` file (see the module docstring).

    ``symbols`` (N,) element symbols; ``positions_A`` (N, 3) Cartesian Å; ``cell_A`` (3, 3) cell
    vectors as rows (Å), or None for a molecule (no lattice line); ``tensors_V_per_A2`` (N, 3, 3)
    EFG tensors in V/Å² (symmetrised on writing); ``comments``: ``calc_comment`` lines, one
    line each.
    """
    symbols = [str(s) for s in symbols]
    positions = np.asarray(positions_A, dtype=float)
    tensors = np.asarray(tensors_V_per_A2, dtype=float)
    n_atoms = len(symbols)
    if positions.shape != (n_atoms, 3):
        raise ValueError(f"positions_A: expected shape ({n_atoms}, 3), got {positions.shape}")
    if tensors.shape != (n_atoms, 3, 3):
        raise ValueError(f"tensors_V_per_A2: expected shape ({n_atoms}, 3, 3), got {tensors.shape}")
    if not (np.all(np.isfinite(positions)) and np.all(np.isfinite(tensors))):
        raise ValueError("positions_A or tensors_V_per_A2: not finite")
    tensors_au = 0.5 * (tensors + np.swapaxes(tensors, -1, -2)) / nmr.V_PER_A2_PER_EFG_AU
    labels = site_labels(symbols)

    lines = [MAGRES_HEADER, "# written by efgmd (pyexport.magres); EFG in atomic units E_h/(e a0^2)",
             "[calculation]", "calc_code efgmd"]
    for comment in comments:
        if "\n" in comment or "[" in comment or "<" in comment:
            raise ValueError(f"comment {comment!r}: one line without '[' or '<' (they open blocks)")
        lines.append(f"calc_comment {comment}")
    lines += ["[/calculation]", "[atoms]"]
    if cell_A is not None:
        cell = np.asarray(cell_A, dtype=float)
        if cell.shape != (3, 3) or not np.all(np.isfinite(cell)):
            raise ValueError(f"cell_A: expected three finite cell vectors (3, 3), got {cell.shape}")
        lines += ["units lattice Angstrom", f"lattice {_numbers(cell.ravel())}"]
    lines.append("units atom Angstrom")
    lines += [f"atom {symbol} {label} {index} {_numbers(position)}"
              for symbol, (label, index), position in zip(symbols, labels, positions)]
    lines += ["[/atoms]", "[magres]", "units efg au"]
    lines += [f"efg {label} {index} {_numbers(tensor.ravel())}"
              for (label, index), tensor in zip(labels, tensors_au)]
    lines.append("[/magres]")
    return "\n".join(lines) + "\n"


def write_magres(path, atoms, tensors_V_per_A2, comments: Sequence[str] = ()) -> Path:
    """Write ``atoms`` (ASE Atoms: symbols, positions, and the cell when periodic) with the EFG
    tensors ``tensors_V_per_A2`` (N, 3, 3) V/Å² to the ``.magres`` file ``path``; returns it.
    ``comments`` as in :func:`magres_text`."""
    cell = atoms.cell.array if np.all(atoms.pbc) else None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(magres_text(atoms.get_chemical_symbols(), atoms.positions, cell, tensors_V_per_A2,
                                comments))
    return path
