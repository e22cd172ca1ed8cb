"""Streaming reader for LAMMPS text dump files (``dump custom``/``dump atom``, ``write_dump``).

    from pyexport.lammps.dump import iread
    for atoms in iread("md.dump.gz", types=["Cs", "Pb", "Br"], index="1000::10"):
        ...

What a frame becomes (:class:`ase.Atoms`):

- ``cell`` (3, 3) Å, rows a, b, c as LAMMPS defines them: a = (lx, 0, 0), b = (xy, ly, 0),
  c = (xz, yz, lz). The header ``ITEM: BOX BOUNDS xy xz yz ..`` holds the *bounding* box of the
  tilted cell; the cell is recovered as the LAMMPS manual ("Triclinic (non-orthogonal)
  simulation boxes") prescribes: xlo = xlo_bound − min(0, xy, xz, xy+xz),
  xhi = xhi_bound − max(0, xy, xz, xy+xz), ylo = ylo_bound − min(0, yz),
  yhi = yhi_bound − max(0, yz). The general-triclinic header ``ITEM: BOX BOUNDS abc origin``
  (LAMMPS ≥ 17Apr2024, ``dump_modify triclinic/general yes``) gives a, b, c and the origin
  directly.
- ``atoms.get_celldisp()`` = the box origin (xlo, ylo, zlo), Å.
- ``positions`` (N, 3) Å in the LAMMPS frame, i.e. the coordinates LAMMPS itself holds
  (``lammps.numpy.extract_atom("x")``), whatever the dump's coordinate style:
  ``x y z`` and ``xu yu zu`` as written (unwrapped ones stay unwrapped); scaled ``xs ys zs`` and
  ``xsu ysu zsu`` as ``origin + s @ cell``. ASE's ``lammps-dump-text`` reader agrees for ``x``
  and ``xu`` but returns ``s @ cell`` for scaled coordinates, i.e. shifted by −origin; the same
  atoms would then move when a run switches dump styles, which this reader avoids. Periodic
  quantities (neighbour lists, EFG) do not depend on the shift. If both Cartesian and scaled
  columns are present, ``x`` wins over ``xs`` over ``xu`` over ``xsu`` (ASE's order); the others
  are kept as extra columns.
- ``pbc`` from the boundary flags: ``pp`` is periodic, anything else (``ff fs sm ..``) is not.
- ``symbols`` from a ``element`` column, else from the type→element map ``types``, else from a
  ``typelabel`` column whose labels are element symbols, else from a ``mass`` column (nearest
  element within 0.1 u). With none of these, reading fails and says how to give the map.
- rows sorted by atom ``id`` when the dump has one (LAMMPS writes them in processor order unless
  ``dump_modify sort id``); a repeated id is an error.
- every other column in ``atoms.arrays`` under its dump name, one entry per column, in the
  dump's units (no unit conversion; velocities ``vx`` stay in Å/ps for ``units metal``):
  int64 for ``id type mol proc procp1 ix iy iz i_* i2_*``, float64 for the rest
  (``vx fx q c_* f_* v_* d_* ..``), str for ``typelabel``.
- ``atoms.info["timestep"]`` (int), and ``info["time"]``/``info["units"]`` where the dump has
  ``ITEM: TIME``/``ITEM: UNITS``. Lengths are taken to be Å (``units metal`` or ``real``); a dump
  declaring other units gets a warning.

Numbers: every numeric token is converted exactly as Python's ``float`` would (correctly rounded),
so ``nan``, ``inf`` and denormals such as the uninitialised ``6.9e-310`` that LAMMPS sometimes
prints in unused per-atom columns are read as the floats they are. A token that is not a number
(anything ``float`` rejects, or with ``_``) in any column but ``element``/``typelabel`` is
corruption and an error: such columns are never silently kept as strings.

Errors and truncation (frames are numbered from 0, as in ``index``): a file that ends inside a
frame (mid-header, mid-row, with fewer rows than ``NUMBER OF ATOMS``, or a compressed stream
cut short) gives a :class:`TruncatedDumpWarning` naming the file, frame and line, and every
complete frame before it is returned. A last line without its newline is read like any other
line (some hand-edited files lack the final newline) when it has all its columns and they are
numbers, and is taken as cut otherwise; a file cut inside the last number of its last row,
leaving a shorter number, cannot be told from a complete one. Anything malformed inside the file
(a non-numeric token, a row with the wrong number of columns, a missing or unknown ``ITEM:``
line, a repeated atom id, a type missing from the map, a coordinate that is NaN, infinite or
more than ``MAX_BOX_LENGTHS`` = 1000 box lengths outside the box, box bounds that are not
finite or with lo ≥ hi) raises :class:`DumpFormatError` naming file, line, frame and timestep;
the frames before it have been yielded by then. A compressed stream cut short is reported even
when the text it gave ends between two frames (frames after the cut are missing), and a file that
ends before its first frame is complete raises :class:`TruncatedDumpError` with the reason.

Speed and memory: the file is read in blocks of 4 MiB into one reused buffer (``.gz``,
``.bz2``, ``.xz`` recognised by their magic bytes); a frame's atom rows are converted in one
vectorised pass, with no Python call per atom or per number: plain decimals (LAMMPS's default
``%g`` apart from its e-notation) eight bytes at a time as uint64 words, other decimals one byte
per array element, and only nan/inf and the like through Python's ``float``. Frames outside
``index`` are skipped without converting any number. Memory is bounded by one frame (about ten
times its text size: token offsets, values, the Atoms) plus the read buffer, not by the file.
Negative indices need the number of frames first, which costs one extra pass over the file
(headers only, no numbers converted).

This module is the frame reader, one concept (about 570 lines of code: headers and box, columns,
atom ids, elements, coordinate checks, frame selection, truncation); the bytes below it live in
:mod:`.line_blocks` (lines in blocks) and :mod:`.dump_tokens` (numbers), the type maps in
:mod:`.type_maps`.
"""
import re
import warnings
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Union

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols

from .dump_tokens import PAD, Workspace, parse_numbers, tokenize
from .line_blocks import BlockLines, open_binary
from .type_maps import ELEMENT_SYMBOLS, TypesArg, element_from_mass, read_type_map, type_map_from_arg

__all__ = ["DumpFormatError", "TruncatedDumpError", "TruncatedDumpWarning", "iread", "read_frames", "count_frames",
           "read_type_map"]

IndexArg = Union[int, slice, str]


class DumpFormatError(ValueError):
    """A LAMMPS dump (or type-map file) that cannot be read as such; the message names the file,
    the line and, for dumps, the frame."""


class TruncatedDumpWarning(UserWarning):
    """The dump ends inside a frame, or its compressed stream is cut short; the complete frames
    before the cut were read."""


class TruncatedDumpError(DumpFormatError):
    """The dump ends (or its compressed stream is cut) before its first frame is complete."""


# ---------------------------------------------------------------------------------------------
# columns

_POSITION_STYLES = (("x", "y", "z"), ("xs", "ys", "zs"), ("xu", "yu", "zu"), ("xsu", "ysu", "zsu"))
_SCALED = {"xs", "xsu"}
_INT_COLUMNS = {"id", "type", "mol", "proc", "procp1", "ix", "iy", "iz"}
_INT_PREFIXES = ("i_", "i2_")
_STRING_COLUMNS = {"element", "typelabel"}
#: coordinates further than this many box lengths from the box are refused as corrupt: unwrapped
#: MD coordinates drift by a few box lengths at most (diffusion over a whole run)
MAX_BOX_LENGTHS = 1000.0


def _is_int_column(name: str) -> bool:
    return name in _INT_COLUMNS or name.startswith(_INT_PREFIXES)


# ---------------------------------------------------------------------------------------------
# frame headers

@dataclass
class _Header:
    frame: int                 # 0-based index of the frame in the file
    timestep: int
    n_atoms: int
    cell: np.ndarray           # (3, 3) Å, rows a, b, c
    origin: np.ndarray         # (3,) Å
    pbc: np.ndarray            # (3,) bool
    columns: List[str]
    first_row_line: int        # 1-based line number of the first atom row
    time: Optional[float] = None
    units: Optional[str] = None


class _EndInsideFrame(Exception):
    """The stream ended before the frame being read was complete."""


def _where(path, line: int, frame: int, timestep=None) -> str:
    at = f"{path}, line {line} (frame {frame}"
    return at + (f", timestep {timestep})" if timestep is not None else ")")


def _box_from_bounds(flags: List[str], rows: List[List[float]], fail):
    """(cell, origin, pbc) from the words after ``ITEM: BOX BOUNDS`` and its three lines."""
    pbc_flags = flags[-3:] if len(flags) >= 3 else []
    if pbc_flags and not all(re.fullmatch(r"[pfsm]{2}", f) for f in pbc_flags):
        fail(f"unknown boundary flags {' '.join(pbc_flags)!r}")
    pbc = np.array([f == "pp" for f in pbc_flags] if pbc_flags else [False] * 3)
    data = np.array(rows)
    if data.size and not np.all(np.isfinite(data)):
        fail(f"box bounds must be finite numbers, found {data.tolist()}")
    if flags[:2] == ["abc", "origin"]:
        if data.shape != (3, 4):
            fail("general triclinic box needs 4 numbers per line: a_x a_y a_z origin")
        if not abs(np.linalg.det(data[:, :3])) > 0.0:
            fail(f"general triclinic box with zero volume: a, b, c = {data[:, :3].tolist()}")
        return data[:, :3].copy(), data[:, 3].copy(), pbc
    tilt_names = [f for f in flags if f in ("xy", "xz", "yz")]
    if tilt_names:
        if data.shape != (3, 3) or sorted(tilt_names) != ["xy", "xz", "yz"]:
            fail("triclinic box needs 3 numbers per line: lo_bound hi_bound tilt")
        tilt = dict(zip(tilt_names, data[:, 2]))
        xy, xz, yz = tilt["xy"], tilt["xz"], tilt["yz"]
    else:
        if data.shape != (3, 2):
            fail("orthogonal box needs 2 numbers per line: lo hi")
        xy = xz = yz = 0.0
    xlo = data[0, 0] - min(0.0, xy, xz, xy + xz)
    xhi = data[0, 1] - max(0.0, xy, xz, xy + xz)
    ylo = data[1, 0] - min(0.0, yz)
    yhi = data[1, 1] - max(0.0, yz)
    zlo, zhi = data[2, :2]
    for axis, lo, hi in (("x", xlo, xhi), ("y", ylo, yhi), ("z", zlo, zhi)):
        if not hi > lo:
            fail(f"inverted or empty box: {axis}lo {lo:g} >= {axis}hi {hi:g}")
    cell = np.array([[xhi - xlo, 0.0, 0.0], [xy, yhi - ylo, 0.0], [xz, yz, zhi - zlo]])
    return cell, np.array([xlo, ylo, zlo]), pbc


def _read_header(lines: BlockLines, path, frame: int) -> Optional[_Header]:
    """The header of the next frame, None at a clean end of file. Raises _EndInsideFrame when the
    stream ends inside it, DumpFormatError when it is not a dump header."""
    found: dict = {}

    def next_line() -> str:
        line = lines.readline()
        if line is None:
            raise _EndInsideFrame
        return line.decode("ascii", "replace").strip()

    def fail(message: str):
        if lines.line_number == lines.unterminated_line:
            raise _EndInsideFrame                     # the file was cut inside this line
        raise DumpFormatError(f"{_where(path, lines.line_number, frame, found.get('timestep'))}: "
                              f"{message}")

    def value_line(kind, what: str):
        text = next_line()
        try:
            return kind(text.split()[0])
        except (ValueError, IndexError):
            fail(f"expected {what}, found {text[:80]!r}")

    while True:
        line = lines.readline()
        if line is None:
            if found or not lines.rest_is_blank():
                raise _EndInsideFrame
            return None
        text = line.decode("ascii", "replace").strip()
        if not text and not found:
            continue                                  # blank lines between frames carry nothing
        if not text.startswith("ITEM:"):
            expected = "ITEM: ATOMS" if "n_atoms" in found else "an ITEM: line"
            fail(f"expected {expected}, found {text[:80]!r}")
        item = text[5:].strip()
        if item == "TIMESTEP":
            if "timestep" in found:
                fail("second ITEM: TIMESTEP before ITEM: ATOMS")
            found["timestep"] = value_line(int, "the timestep (an integer)")
        elif item == "TIME":
            found["time"] = value_line(float, "the simulation time")
        elif item == "UNITS":
            found["units"] = next_line()
        elif item == "NUMBER OF ATOMS":
            found["n_atoms"] = value_line(int, "the number of atoms")
            if found["n_atoms"] < 0:
                fail("negative number of atoms")
        elif item.startswith("BOX BOUNDS"):
            flags = item.split()[2:]
            rows = []
            for _ in range(3):
                words = next_line().split()
                try:
                    rows.append([float(w) for w in words])
                except ValueError:
                    fail(f"box bounds must be numbers, found {' '.join(words)[:80]!r}")
            found["box"] = _box_from_bounds(flags, rows, fail)
        elif item.startswith("ATOMS"):
            missing = [name for key, name in (("timestep", "TIMESTEP"),
                                              ("n_atoms", "NUMBER OF ATOMS"),
                                              ("box", "BOX BOUNDS")) if key not in found]
            if missing:
                fail(f"ITEM: ATOMS before ITEM: {', ITEM: '.join(missing)}")
            columns = item.split()[1:]
            if len(set(columns)) != len(columns):
                fail(f"repeated column name in {text!r}")
            cell, origin, pbc = found["box"]
            return _Header(frame=frame, timestep=found["timestep"], n_atoms=found["n_atoms"],
                           cell=cell, origin=origin, pbc=pbc, columns=columns,
                           first_row_line=lines.line_number + 1, time=found.get("time"),
                           units=found.get("units"))
        else:
            fail(f"unknown item {text[:80]!r} (not a per-atom LAMMPS text dump?)")


# ---------------------------------------------------------------------------------------------
# frame selection

def _normalise_index(index: IndexArg) -> Union[int, slice]:
    if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
        return int(index)
    if isinstance(index, slice):
        return index
    if isinstance(index, str):
        text = index.strip()
        if ":" not in text:
            try:
                return int(text)
            except ValueError:
                raise ValueError(f"index={index!r}: expected an integer or 'start:stop:step'") from None
        parts = text.split(":")
        if len(parts) > 3:
            raise ValueError(f"index={index!r}: expected 'start:stop:step'")
        try:
            return slice(*[int(p) if p.strip() else None for p in parts])
        except ValueError:
            raise ValueError(f"index={index!r}: expected integers in 'start:stop:step'") from None
    raise TypeError(f"index must be an int, a slice or a 'start:stop:step' string, not {index!r}")


def _needs_count(index: Union[int, slice]) -> bool:
    if isinstance(index, int):
        return index < 0
    return any(v is not None and v < 0 for v in (index.start, index.stop))


def _frame_range(index: Union[int, slice], n_frames: Optional[int]) -> range:
    """The frame indices selected, as a range with a positive step (stop may be unbounded)."""
    if isinstance(index, int):
        k = index + n_frames if index < 0 else index
        if k < 0:
            raise IndexError(f"frame index {index} out of range for {n_frames} frames")
        return range(k, k + 1)
    if index.step is not None and index.step <= 0:
        raise ValueError(f"index step must be positive (got {index.step}): reading backwards "
                         f"would keep the whole file in memory; read forwards and reverse")
    if n_frames is not None:
        return range(*index.indices(n_frames))
    start = index.start or 0
    stop = index.stop if index.stop is not None else np.iinfo(np.int64).max
    return range(start, stop, index.step or 1)


# ---------------------------------------------------------------------------------------------
# frames

class _FrameReader:
    """Turns headers and atom-row blocks into Atoms; holds what is reused from frame to frame."""

    def __init__(self, path, type_map: Optional[Dict[int, str]]):
        self.path = path
        self.type_map = type_map
        self.work = Workspace()
        self._warned_units = False

    def fail(self, header: _Header, row: int, message: str):
        line = header.first_row_line + row
        raise DumpFormatError(f"{_where(self.path, line, header.frame, header.timestep)}: {message}")

    def atoms(self, header: _Header, block: np.ndarray, newlines: np.ndarray) -> Atoms:
        """The frame of ``header`` from its atom rows ``block`` (uint8) whose line ends are at
        ``newlines``."""
        columns = self._columns(header, block, newlines)
        order = self._id_order(header, columns["id"]) if "id" in columns else None
        numbers = self._atomic_numbers(header, columns)    # (rows in file order: errors name
        positions = self._positions(header, columns)       # the right line)
        self._check_positions(header, positions)
        if order is not None:
            numbers, positions = numbers[order], positions[order]
            columns = {name: values[order] for name, values in columns.items()}
        atoms = Atoms(numbers=numbers, positions=positions, cell=header.cell, pbc=header.pbc,
                      celldisp=header.origin)
        for name, values in columns.items():
            atoms.new_array(name, values)
        atoms.info["timestep"] = header.timestep
        if header.time is not None:
            atoms.info["time"] = header.time
        if header.units is not None:
            atoms.info["units"] = header.units
            if header.units not in ("metal", "real") and not self._warned_units:
                self._warned_units = True
                warnings.warn(f"{self.path}: dump in LAMMPS units {header.units!r}; positions "
                              f"and cell are returned as written, not converted to Å",
                              stacklevel=4)
        return atoms

    def _id_order(self, header: _Header, ids: np.ndarray) -> np.ndarray:
        """Row order that sorts by atom id (stable); a repeated id is an error."""
        n = len(ids)
        if n and int(ids.max()) - int(ids.min()) < 4 * n:
            # ids numbered densely, as LAMMPS does: a counting sort, linear in n
            low = ids.min()
            row_of_id = np.full(int(ids.max() - low) + 1, -1, np.int64)
            row_of_id[ids - low] = np.arange(n)
            order = row_of_id[row_of_id >= 0]
            if len(order) == n:                       # no id repeated
                return order
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        repeated = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
        if len(repeated) and sorted_ids[-1] != 0:     # ids all 0: atom_modify id no
            self.fail(header, int(order[repeated[0] + 1]),
                      f"atom id {sorted_ids[repeated[0]]} appears twice")
        return order

    def _columns(self, header: _Header, block: np.ndarray,
                 newlines: np.ndarray) -> Dict[str, np.ndarray]:
        """{column name: values (n_atoms,)} of the atom rows, in file order."""
        names, n = header.columns, header.n_atoms
        n_cols = len(names)
        if n == 0:
            return {name: np.empty(0, np.int64 if _is_int_column(name) else
                                   (str if name in _STRING_COLUMNS else np.float64))
                    for name in names}
        # padded with spaces, 8-byte aligned and a multiple of 8 long (see _parse_plain)
        text = self.work.get("text", (-(-(len(block) + 2 * PAD) // 8) * 8,), np.uint8)
        text[:PAD] = 32
        text[PAD + len(block):] = 32
        text[PAD:PAD + len(block)] = block
        starts, ends = tokenize(text)
        newlines = newlines + PAD
        # n * n_cols tokens, and row k's first token after newline k-1 and its last before
        # newline k, hold together only if every row has n_cols tokens
        if not (len(starts) == n * n_cols
                and np.all(starts[n_cols::n_cols] > newlines[:-1])
                and np.all(ends[n_cols - 1::n_cols] <= newlines)):
            per_line = np.diff(np.searchsorted(starts, newlines), prepend=0)
            bad = np.flatnonzero(per_line != n_cols)
            row = int(bad[0]) if len(bad) else n - 1
            line_start = newlines[row - 1] + 1 if row else PAD
            line_text = text[line_start:newlines[row]].tobytes().decode("ascii", "replace")
            self.fail(header, row, f"expected {n_cols} columns ({' '.join(names)}), found "
                                   f"{int(per_line[row])}: {line_text[:100]!r}")
        starts = starts.reshape(n, n_cols)
        ends = ends.reshape(n, n_cols)
        numeric = [k for k, name in enumerate(names) if name not in _STRING_COLUMNS]
        out: Dict[str, np.ndarray] = {}
        if numeric:
            if len(numeric) == n_cols:
                s, e = starts.ravel(), ends.ravel()
            else:
                s, e = starts[:, numeric].ravel(), ends[:, numeric].ravel()
            values, bad = parse_numbers(text, s, e, self.work)
            if bad >= 0:
                row, k = divmod(bad, len(numeric))
                token = text[s[bad]:e[bad]].tobytes().decode("ascii", "replace")
                self.fail(header, row, f"column {names[numeric[k]]!r}: {token[:40]!r} is not a "
                                       f"number")
            values = values.reshape(n, len(numeric))
            for k, c in enumerate(numeric):
                out[names[c]] = self._typed(header, names[c], values[:, k])
        for c, name in enumerate(names):
            if name in _STRING_COLUMNS:
                out[name] = np.array([text[a:b].tobytes().decode("ascii", "replace")
                                      for a, b in zip(starts[:, c], ends[:, c])], dtype=str)
        return {name: out[name] for name in names}

    def _typed(self, header: _Header, name: str, values: np.ndarray) -> np.ndarray:
        if not _is_int_column(name):
            return values                      # a view; Atoms.new_array copies it
        wrong = np.flatnonzero(~(np.abs(values) < 2.0 ** 63) | (np.floor(values) != values))
        if len(wrong):
            self.fail(header, int(wrong[0]), f"column {name!r} holds {float(values[wrong[0]])!r}, "
                                             f"not an integer")
        return values.astype(np.int64)

    def _positions(self, header: _Header, columns: Dict[str, np.ndarray]) -> np.ndarray:
        for style in _POSITION_STYLES:
            present = [name in columns for name in style]
            if any(present) and not all(present):
                raise DumpFormatError(f"{_where(self.path, header.first_row_line - 1, header.frame, header.timestep)}: "
                                      f"coordinate columns {' '.join(style)} incomplete")
            if all(present):
                xyz = np.column_stack([columns.pop(name) for name in style])
                if style[0] in _SCALED:
                    xyz = header.origin + xyz @ header.cell
                return xyz
        raise DumpFormatError(f"{_where(self.path, header.first_row_line - 1, header.frame, header.timestep)}: "
                              f"no coordinates (x y z, xs ys zs, xu yu zu or xsu ysu zsu) in "
                              f"columns {' '.join(header.columns)}")

    def _check_positions(self, header: _Header, positions: np.ndarray) -> None:
        """Coordinates must be finite and within MAX_BOX_LENGTHS box lengths of the box: MD
        coordinates, wrapped or unwrapped, never get that far, so such a value is corruption
        (it would otherwise reach MSDs and EFGs as enormous or NaN numbers)."""
        finite = np.isfinite(positions).all(axis=1)
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            self.fail(header, row, f"coordinate {positions[row].tolist()} is not finite")
        fractional = np.linalg.solve(header.cell.T, (positions - header.origin).T).T
        outside = np.abs(fractional - 0.5).max(axis=1) > MAX_BOX_LENGTHS
        if outside.any():
            row = int(np.flatnonzero(outside)[0])
            self.fail(header, row, f"coordinate {positions[row].tolist()} Å lies more than "
                                   f"{MAX_BOX_LENGTHS:g} box lengths outside the box (corrupt value)")

    def _atomic_numbers(self, header: _Header, columns: Dict[str, np.ndarray]) -> np.ndarray:
        types = columns.get("type")
        if "element" in columns:
            numbers = self._numbers_from_symbols(header, columns.pop("element"), "element")
            if self.type_map is not None and types is not None:
                expected = self._numbers_from_types(header, types)
                wrong = np.flatnonzero(expected != numbers)
                if len(wrong):
                    k = int(wrong[0])
                    self.fail(header, k, f"element {chemical_symbols[numbers[k]]} of type "
                                         f"{types[k]} contradicts the type map "
                                         f"({types[k]} -> {chemical_symbols[expected[k]]})")
            return numbers
        if self.type_map is not None:
            if types is None:
                raise DumpFormatError(f"{_where(self.path, header.first_row_line - 1, header.frame, header.timestep)}: "
                                      f"a type map was given but the dump has no 'type' column")
            return self._numbers_from_types(header, types)
        if "typelabel" in columns and all(label in ELEMENT_SYMBOLS
                                          for label in set(columns["typelabel"])):
            return self._numbers_from_symbols(header, columns["typelabel"], "typelabel")
        if "mass" in columns:
            masses = columns["mass"]
            unique, inverse = np.unique(masses, return_inverse=True)
            where = _where(self.path, header.first_row_line, header.frame, header.timestep)
            z = np.array([atomic_numbers[element_from_mass(m, where)] for m in unique])
            return z[inverse]
        raise ValueError(
            f"{self.path}: the dump has no 'element' column, so the elements of the atom types "
            f"must be given: iread(path, types=['Cs', 'Pb', 'Br']) (type 1 first), "
            f"types={{1: 'Cs', ...}}, types='system.data' / 'in.lammps' (LAMMPS data file or "
            f"input script), or on the command line --types Cs,Pb,Br; or write the dump with "
            f"'dump_modify element Cs Pb Br' and an 'element' column")

    def _numbers_from_types(self, header: _Header, types: np.ndarray) -> np.ndarray:
        top = max(max(self.type_map), int(types.max()) if len(types) else 0)
        lookup = np.zeros(top + 1, np.int64)
        for t, symbol in self.type_map.items():
            if t >= 0:
                lookup[t] = atomic_numbers[symbol]
        numbers = lookup[np.clip(types, 0, top)]
        unknown = np.flatnonzero((numbers == 0) | (types < 0))
        if len(unknown):
            k = int(unknown[0])
            self.fail(header, k, f"atom type {types[k]} is not in the type map "
                                 f"{dict(sorted(self.type_map.items()))}")
        return numbers

    def _numbers_from_symbols(self, header: _Header, symbols: np.ndarray, name: str):
        unique, inverse = np.unique(symbols.astype(str), return_inverse=True)
        z = np.zeros(len(unique), np.int64)
        for k, symbol in enumerate(unique):
            if symbol not in ELEMENT_SYMBOLS:
                self.fail(header, int(np.flatnonzero(inverse == k)[0]),
                          f"{name} {symbol!r} is not a chemical element symbol")
            z[k] = atomic_numbers[symbol]
        return z[inverse]


def _row_complete(block: np.ndarray, newlines: np.ndarray, columns: List[str]) -> bool:
    """Whether the last row of ``block`` has all its columns, each numeric one a number: the
    test for a last line that ends the file without a newline (cut, or merely unterminated)."""
    row_start = int(newlines[-2]) + 1 if len(newlines) > 1 else 0
    words = block[row_start:int(newlines[-1])].tobytes().split()
    if len(words) != len(columns):
        return False
    try:
        for word, name in zip(words, columns):
            if name not in _STRING_COLUMNS:
                float(word)
    except ValueError:
        return False
    return True


def _frames(path: Path, type_map, frames: range, parse: bool = True) -> Iterator:
    """Walk the file: yield Atoms for the selected frames (or, with parse=False, the header of
    every complete frame). Warns and stops at a frame the file ends inside."""
    reader = _FrameReader(path, type_map)
    stream, compression = open_binary(path)
    with stream:
        lines = BlockLines(stream)
        frame = 0
        header = None
        while frame < frames.stop:
            try:
                header = _read_header(lines, path, frame)
                if header is None:
                    if lines.stream_error:
                        # the text ends between frames, but the compressed stream was cut: frames
                        # may be missing after these, and the file is damaged either way
                        _truncated(path, compression, lines, frame, None, between_frames=True)
                    return
                wanted = parse and frame in frames
                rows = lines.read_lines(header.n_atoms)
                if rows is None or (lines.unterminated_line == lines.line_number
                                    and not _row_complete(*rows, header.columns)):
                    raise _EndInsideFrame
            except _EndInsideFrame:
                _truncated(path, compression, lines, frame,
                           header.timestep if header and header.frame == frame else None)
                return
            if not parse:
                yield header
            elif wanted:
                yield reader.atoms(header, *rows)
            frame += 1


def _truncated(path: Path, compression: Optional[str], lines: BlockLines, frame: int,
               timestep: Optional[int], between_frames: bool = False) -> None:
    """The file ends early, after ``frame`` complete frames: inside frame ``frame``, or between
    frames when only the compressed stream shows the cut. A TruncatedDumpWarning that keeps the
    complete frames, or a TruncatedDumpError when there is none."""
    if between_frames:
        where = f"after frame {frame - 1} (line {lines.line_number})" if frame else "before its first frame"
    else:
        where = (f"inside frame {frame}" + (f" (timestep {timestep})" if timestep is not None else "")
                 + f" after line {lines.line_number}")
    cause = f" (truncated {compression} stream: {lines.stream_error})" if lines.stream_error else ""
    message = f"{path}: the file ends {where}{cause}"
    if frame == 0:
        raise TruncatedDumpError(f"{message}; it holds no complete frame")
    warnings.warn(f"{message}; kept the {frame} complete frame(s) before it", TruncatedDumpWarning,
                  stacklevel=4)


def count_frames(path: Union[str, PathLike]) -> int:
    """Number of complete frames in the dump (one pass over the file, no numbers converted;
    warns like :func:`iread` when the last frame is cut)."""
    path = Path(path)
    return sum(1 for _ in _frames(path, None, range(0, np.iinfo(np.int64).max), parse=False))


def _count_quietly(path: Path) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncatedDumpWarning)
        return count_frames(path)


def iread(path: Union[str, PathLike], types: TypesArg = None,
          index: IndexArg = ":") -> Iterator[Atoms]:
    """Iterate over the frames of a LAMMPS text dump as :class:`ase.Atoms` (see the module
    docstring for what each frame holds).

    path: the dump; gzip/bzip2/xz compression is recognised from the file's first bytes.
    types: element of each atom type, needed unless the dump has an ``element`` column:
        a sequence of symbols (type 1 first), a dict {type: symbol}, a string 'Cs,Pb,Br', or the
        path of a LAMMPS data file or input script (:func:`read_type_map`).
    index: frames to read: an int, a slice, or a string 'start:stop:step' (ASE's convention,
        ':' = all). Negative start/stop count from the end and cost one extra pass to count the
        frames; a negative step is refused (it would need the whole file in memory).

    Arguments are checked now; the file is read lazily, one frame at a time.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such dump file: {str(path)!r}")
    type_map = type_map_from_arg(types)
    selection = _normalise_index(index)
    n_frames = _count_quietly(path) if _needs_count(selection) else None
    frames = _frame_range(selection, n_frames)
    if isinstance(selection, int):
        return _exactly_one(_frames(path, type_map, frames), path, selection, frames.start)
    return _frames(path, type_map, frames)


def _exactly_one(frames: Iterator[Atoms], path: Path, index: int, frame: int) -> Iterator[Atoms]:
    found = False
    for atoms in frames:
        found = True
        yield atoms
    if not found:
        raise IndexError(f"{path}: no complete frame {frame} (index={index})")


def read_frames(path: Union[str, PathLike], types: TypesArg = None,
                index: IndexArg = ":") -> List[Atoms]:
    """All selected frames of :func:`iread` as a list (holds them all in memory)."""
    return list(iread(path, types=types, index=index))
