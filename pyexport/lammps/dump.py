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

Numbers: the atom rows are converted by pandas' C reader (:mod:`.atom_rows`), correctly rounded,
so every numeric token is the float Python's ``float`` gives: ``nan``, ``inf`` and denormals such
as the uninitialised ``6.9e-310`` that LAMMPS sometimes prints in unused per-atom columns are read
as the floats they are. A token that is not a number (anything ``float`` rejects, or with ``_``)
in any column but ``element``/``typelabel`` is corruption and an error: such columns are never
silently kept as strings.

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
finite, with lo ≥ hi or with the wrong count of numbers on a line) raises
:class:`DumpFormatError` naming file, line, frame and timestep; the frames before it have been
yielded by then. A compressed stream cut short is reported even when the text it gave ends
between two frames (frames after the cut are missing), and a file that ends before its first
frame is complete raises :class:`TruncatedDumpError` with the reason.

Speed and memory: the file is read in blocks of 4 MiB into one reused buffer (``.gz``,
``.bz2``, ``.xz`` recognised by their magic bytes); the headers are read in Python, and the atom
rows of consecutive frames (``BATCH_BYTES`` = 1 MiB of them, or one larger frame) go to pandas
in one call and are checked together, so a frame costs no Python call per atom or per number
and a small frame little more than its header and its Atoms. Frames outside ``index`` are
skipped without converting any number. Memory is bounded by the read buffer and one batch
(its text, pandas' work arrays and the values: a few times 1 MiB), not by the file. Negative
indices need the number of frames first, which costs one extra pass over the file (headers
only, no numbers converted).

This module is the frame reader, one concept (headers and box, columns, atom ids, elements,
coordinate checks, frame selection, batches, truncation); the bytes below it live in
:mod:`.line_blocks` (lines in blocks) and :mod:`.atom_rows` (numbers), the type maps in
:mod:`.type_maps`.
"""
import re
import warnings
from dataclasses import dataclass, field
from functools import partial
from os import PathLike
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols

from .atom_rows import AtomRows, RowsRefused, bad_number, first_bad_row
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
_STRING_COLUMNS = frozenset({"element", "typelabel"})
#: coordinates further than this many box lengths from the box are refused as corrupt: unwrapped
#: MD coordinates drift by a few box lengths at most (diffusion over a whole run)
MAX_BOX_LENGTHS = 1000.0
#: atom-row text converted per pandas call (many frames per call when they are small): a call costs
#: about 0.2 ms however short, and longer batches only take more memory, which the next call
#: faults in again (on the dumps of benchmarks/bench_dump_read.py 1 MiB was quicker than 0.5, 2
#: and 4 MiB)
BATCH_BYTES = 1 << 20


def _is_int_column(name: str) -> bool:
    return name in _INT_COLUMNS or name.startswith(_INT_PREFIXES)


# ---------------------------------------------------------------------------------------------
# frame headers

@dataclass(slots=True)
class _Header:
    frame: int                 # 0-based index of the frame in the file
    timestep: int
    n_atoms: int
    box: "_Box"
    columns: List[str]
    first_row_line: int        # 1-based line number of the first atom row
    time: Optional[float] = None
    units: Optional[str] = None


@dataclass
class _Box:
    cell: np.ndarray           # (3, 3) Å, rows a, b, c
    origin: np.ndarray         # (3,) Å
    pbc: np.ndarray            # (3,) bool
    to_fractional: np.ndarray  # (3, 3) inverse of cell: fractional = (x - origin) @ to_fractional
    lowest: Optional[np.ndarray] = None    # orthogonal box: the coordinates (Å) allowed,
    highest: Optional[np.ndarray] = None   # MAX_BOX_LENGTHS box lengths on either side


@dataclass
class _Seen:
    """The last box and the column lists read, by their text: a box or column list that does not
    change from frame to frame is converted once (and the column list is the same object)."""
    box_lines: Optional[tuple] = None
    box: Optional[_Box] = None
    columns: Dict[str, List[str]] = field(default_factory=dict)


class _EndInsideFrame(Exception):
    """The stream ended before the frame being read was complete."""


def _where(path, line: int, frame: int, timestep=None) -> str:
    at = f"{path}, line {line} (frame {frame}"
    return at + (f", timestep {timestep})" if timestep is not None else ")")


def _box_from_bounds(flags: List[str], rows: List[List[float]], fail) -> _Box:
    """The box from the words after ``ITEM: BOX BOUNDS`` and its three lines."""
    pbc_flags = flags[-3:] if len(flags) >= 3 else []
    if pbc_flags and not all(re.fullmatch(r"[pfsm]{2}", f) for f in pbc_flags):
        fail(f"unknown boundary flags {' '.join(pbc_flags)!r}")
    pbc = np.array([f == "pp" for f in pbc_flags] if pbc_flags else [False] * 3)
    # lines of different lengths fit no box shape (below, each shape names what it needs)
    data = np.array(rows) if len({len(row) for row in rows}) == 1 else np.empty((0, 0))
    if data.size and not np.all(np.isfinite(data)):
        fail(f"box bounds must be finite numbers, found {data.tolist()}")
    if flags[:2] == ["abc", "origin"]:
        if data.shape != (3, 4):
            fail("general triclinic box needs 4 numbers per line: a_x a_y a_z origin")
        if not abs(np.linalg.det(data[:, :3])) > 0.0:
            fail(f"general triclinic box with zero volume: a, b, c = {data[:, :3].tolist()}")
        return _box(data[:, :3].copy(), data[:, 3].copy(), pbc)
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
    return _box(cell, np.array([xlo, ylo, zlo]), pbc)


def _box(cell: np.ndarray, origin: np.ndarray, pbc: np.ndarray) -> _Box:
    box = _Box(cell=cell, origin=origin, pbc=pbc, to_fractional=np.linalg.inv(cell))
    if np.count_nonzero(cell - np.diag(np.diag(cell))) == 0:
        lengths = np.diag(cell)
        box.lowest = origin + (0.5 - MAX_BOX_LENGTHS) * lengths
        box.highest = origin + (0.5 + MAX_BOX_LENGTHS) * lengths
    return box


#: lines of the usual header (TIMESTEP, NUMBER OF ATOMS, BOX BOUNDS and ATOMS with their values)
_HEADER_LINES = 9


class _MoreLines(Exception):
    """The header goes on past the lines looked at; ``started``: it has begun (not only blank
    lines so far)."""

    def __init__(self, started: bool):
        super().__init__()
        self.started = started


def _read_header(lines: BlockLines, path, frame: int, seen: _Seen) -> Optional[_Header]:
    """The header of the next frame, None at a clean end of file. Raises _EndInsideFrame when the
    stream ends inside it, DumpFormatError when it is not a dump header."""
    wanted = _HEADER_LINES
    while True:
        ahead = lines.peek(wanted)              # one call for the usual 9 lines, not 9
        try:
            header, used = _parse_header(ahead, lines, path, frame, seen)
        except _MoreLines as more:
            if len(ahead) == wanted:
                wanted *= 2                     # blank lines, ITEM: TIME or UNITS: look further
                continue
            lines.skip(len(ahead))              # (the truncation names the last line read)
            if more.started or not lines.rest_is_blank():
                raise _EndInsideFrame
            return None
        lines.skip(used)
        return header


def _parse_header(ahead: List[bytes], lines: BlockLines, path, frame: int,
                  seen: _Seen) -> Tuple[_Header, int]:
    """(header, lines it takes) from the next lines ``ahead`` (line ``lines.line_number + 1``
    first); _MoreLines when they end before it does. Works on the bytes: it runs once a frame."""
    found: dict = {}
    used = 0                                          # lines of ``ahead`` taken so far

    def fail(message: str, line: Optional[int] = None):
        line = lines.line_number + used if line is None else line
        if line == lines.unterminated_line:
            lines.skip(used)                          # the file was cut inside this line (the
            raise _EndInsideFrame                     # truncation names the last line read)
        raise DumpFormatError(f"{_where(path, line, frame, found.get('timestep'))}: {message}")

    def shown(text: bytes) -> str:
        return repr(text.decode("ascii", "replace")[:80])

    while True:
        if used + 1 > len(ahead):
            raise _MoreLines(started=bool(found) or any(line.strip() for line in ahead))
        text = ahead[used].strip()
        used += 1
        if not text and not found:
            continue                                  # blank lines between frames carry nothing
        if text[:5] != b"ITEM:":
            expected = "ITEM: ATOMS" if "n_atoms" in found else "an ITEM: line"
            fail(f"expected {expected}, found {shown(text)}")
        item = text[5:].strip()
        if item.startswith(b"ATOMS"):
            break
        if item.startswith(b"BOX BOUNDS"):
            wanted = 3
        elif item in _VALUE_ITEMS:
            wanted = 1
            if item == b"TIMESTEP" and "timestep" in found:
                fail("second ITEM: TIMESTEP before ITEM: ATOMS")
        else:
            fail(f"unknown item {shown(text)} (not a per-atom LAMMPS text dump?)")
        if used + wanted > len(ahead):
            raise _MoreLines(started=True)
        values = ahead[used:used + wanted]
        used += wanted
        if wanted == 3:
            box_lines = (item, *values)
            if box_lines != seen.box_lines:
                seen.box = _box_from_bounds(item.decode("ascii", "replace").split()[2:],
                                            _box_rows(values, fail, lines.line_number + used - 2),
                                            fail)
                seen.box_lines = box_lines
            found["box"] = seen.box
            continue
        key, kind, what = _VALUE_ITEMS[item]
        if kind is str:
            found[key] = values[0].decode("ascii", "replace").strip()
            continue
        try:
            found[key] = kind(values[0].split()[0])
        except (ValueError, IndexError):
            fail(f"expected {what}, found {shown(values[0].strip())}")
        if key == "n_atoms" and found[key] < 0:
            fail("negative number of atoms")
    missing = [name for key, name in (("timestep", "TIMESTEP"), ("n_atoms", "NUMBER OF ATOMS"),
                                      ("box", "BOX BOUNDS")) if key not in found]
    if missing:
        fail(f"ITEM: ATOMS before ITEM: {', ITEM: '.join(missing)}")
    columns = seen.columns.get(item)
    if columns is None:
        columns = item.decode("ascii", "replace").split()[1:]
        if len(set(columns)) != len(columns):
            fail(f"repeated column name in {text.decode('ascii', 'replace')!r}")
        if len(seen.columns) < 16:
            seen.columns[item] = columns
    return _Header(frame=frame, timestep=found["timestep"], n_atoms=found["n_atoms"],
                   box=found["box"], columns=columns, first_row_line=lines.line_number + used + 1,
                   time=found.get("time"), units=found.get("units")), used


#: the items followed by one line holding a value: (key, type, what the value is)
_VALUE_ITEMS = {b"TIMESTEP": ("timestep", int, "the timestep (an integer)"),
                b"TIME": ("time", float, "the simulation time"),
                b"UNITS": ("units", str, "the unit style"),
                b"NUMBER OF ATOMS": ("n_atoms", int, "the number of atoms")}


def _box_rows(values: List[bytes], fail, first_line: int) -> List[List[float]]:
    """The numbers of the three box lines (the first is line ``first_line``)."""
    rows = []
    for k, text in enumerate(values):
        try:
            rows.append([float(w) for w in text.split()])
        except ValueError:
            words = text.decode("ascii", "replace").split()
            fail(f"box bounds must be numbers, found {' '.join(words)[:80]!r}", first_line + k)
    return rows


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

class _RowError(Exception):
    """A check failed at ``row`` of a batch, its rows counted over all its frames."""

    def __init__(self, row: int, message: str):
        super().__init__(message)
        self.row = row
        self.message = message


@dataclass
class _Rows:
    """The checked atom rows of consecutive frames, one array per quantity over all their rows
    (frame k's at bounds[k]:bounds[k + 1]), each frame's rows sorted by atom id."""
    columns: Dict[str, np.ndarray]     # every dump column but the coordinates and element
    numbers: np.ndarray                # atomic numbers
    xyz: np.ndarray                    # (3, rows) Å: x, y and z, each contiguous


class _FrameReader:
    """Turns headers and atom rows into Atoms; holds what is reused from frame to frame."""

    def __init__(self, path, type_map: Optional[Dict[int, str]]):
        self.path = path
        self.type_map = type_map
        self._rows: Dict[tuple, AtomRows] = {}          # a converter per column list
        self._type_numbers = _type_lookup(type_map) if type_map is not None else None
        self._warned_units = False

    def fail(self, header: _Header, row: int, message: str):
        line = header.first_row_line + row
        raise DumpFormatError(f"{_where(self.path, line, header.frame, header.timestep)}: {message}")

    def frames(self, batch: List[Tuple[_Header, bytes]]) -> Iterator[Atoms]:
        """The Atoms of the frames in ``batch`` (headers with the text of their atom rows, all
        with the same columns), their numbers converted in one call."""
        if not batch:
            return
        headers = [header for header, _ in batch]
        columns = headers[0].columns
        rows = self._rows.get(tuple(columns))
        if rows is None:
            rows = self._rows[tuple(columns)] = AtomRows(columns, _STRING_COLUMNS)
        text = batch[0][1] if len(batch) == 1 else b"".join(text for _, text in batch)
        try:
            numbers, strings = rows.read(text, sum(header.n_atoms for header in headers))
        except RowsRefused as refused:
            if len(batch) == 1:
                bad = first_bad_row(text, columns, _STRING_COLUMNS)
                row, message = bad if bad else (0, f"atom rows not read as numbers ({refused})")
                self.fail(headers[0], row, message)
            for one in batch:          # frame by frame: the frames before the bad one are
                yield from self.frames([one])      # returned, and its error names its line
            return
        yield from self._frames_of(headers, numbers, strings)

    def _frames_of(self, headers: List[_Header], numbers: np.ndarray,
                   strings: Dict[str, np.ndarray]) -> Iterator[Atoms]:
        """The Atoms of ``headers``' frames from the values of their rows. The checks run over
        all the rows at once; when one fails in frame k, the frames before k are returned (they
        are checked again without it) and then frame k's error is raised, naming its line."""
        if not headers:
            return
        bounds = np.cumsum([0] + [header.n_atoms for header in headers])
        try:
            rows = self._checked(headers, bounds, numbers, strings)
        except _RowError as error:
            k = int(np.searchsorted(bounds, error.row, side="right")) - 1
            end = int(bounds[k])
            yield from self._frames_of(headers[:k], numbers[:end],
                                       {name: values[:end] for name, values in strings.items()})
            self.fail(headers[k], error.row - end, error.message)
        for k, header in enumerate(headers):
            yield self._atoms(header, rows, slice(bounds[k], bounds[k + 1]))

    def _checked(self, headers: List[_Header], bounds: np.ndarray, numbers: np.ndarray,
                 strings: Dict[str, np.ndarray]) -> _Rows:
        """The rows' columns, atomic numbers and positions, each check run in the order of the
        frame (columns, ids, elements, coordinates) on the rows in file order, so that a
        _RowError names the first row failing; then every frame's rows sorted by id."""
        first = headers[0]
        columns = self._columns(first, numbers, strings)
        order = _id_order(bounds, columns["id"]) if "id" in columns else None
        atomic_numbers = self._atomic_numbers(first, columns)
        xyz = self._positions(headers, bounds, numbers, columns)
        if order is not None:
            columns = {name: values[order] for name, values in columns.items()}
            atomic_numbers, xyz = atomic_numbers[order], xyz[:, order]
        return _Rows(columns=columns, numbers=atomic_numbers, xyz=xyz)

    def _atoms(self, header: _Header, rows: _Rows, span: slice) -> Atoms:
        """Frame ``header`` from its ``span`` of ``rows``."""
        box = header.box
        atoms = Atoms(numbers=rows.numbers[span], positions=rows.xyz[:, span].T, cell=box.cell,
                      pbc=box.pbc, celldisp=box.origin)
        for name, values in rows.columns.items():
            atoms.new_array(name, values[span])          # (copies: the batch's arrays go)
        atoms.info["timestep"] = header.timestep
        if header.time is not None:
            atoms.info["time"] = header.time
        if header.units is not None:
            atoms.info["units"] = header.units
            if header.units not in ("metal", "real") and not self._warned_units:
                self._warned_units = True
                warnings.warn(f"{self.path}: dump in LAMMPS units {header.units!r}; positions "
                              f"and cell are returned as written, not converted to Å",
                              stacklevel=6)
        return atoms

    def _columns(self, header: _Header, numbers: np.ndarray,
                 strings: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """{column name: values (rows,)} in the dump's order, integer columns as int64."""
        numeric = iter(numbers.T)
        columns = {}
        for name in header.columns:
            if name in _STRING_COLUMNS:
                columns[name] = strings[name]
            elif _is_int_column(name):
                columns[name] = _integers(name, next(numeric))
            else:
                columns[name] = next(numeric)
        return columns

    def _positions(self, headers: List[_Header], bounds: np.ndarray, numbers: np.ndarray,
                   columns: Dict[str, np.ndarray]) -> np.ndarray:
        """(3, rows) Cartesian coordinates in Å from the first complete coordinate style, its
        columns taken out of ``columns``; checked by _check_coordinates."""
        first = headers[0]
        for style in _POSITION_STYLES:
            present = [name in columns for name in style]
            if any(present) and not all(present):
                raise DumpFormatError(f"{_where(self.path, first.first_row_line - 1, first.frame, first.timestep)}: "
                                      f"coordinate columns {' '.join(style)} incomplete")
            if all(present):
                for name in style:
                    del columns[name]
                numeric = [name for name in first.columns if name not in _STRING_COLUMNS]
                at = [numeric.index(name) for name in style]
                # the converted rows hold the numeric columns as rows of numbers.T: x y z
                # next to each other (as LAMMPS writes them) are a (3, rows) view, no copy
                xyz = numbers.T[at[0]:at[0] + 3] if at == list(range(at[0], at[0] + 3)) \
                    else numbers.T[at]
                scaled = style[0] in _SCALED
                cartesian = np.empty(xyz.shape) if scaled else xyz
                for box, start, end in _box_runs(headers, bounds):
                    _check_coordinates(box, xyz[:, start:end], scaled, start)
                    if scaled:
                        cartesian[:, start:end] = _times(box.cell, xyz[:, start:end], box.origin)
                return cartesian
        raise DumpFormatError(f"{_where(self.path, first.first_row_line - 1, first.frame, first.timestep)}: "
                              f"no coordinates (x y z, xs ys zs, xu yu zu or xsu ysu zsu) in "
                              f"columns {' '.join(first.columns)}")

    def _atomic_numbers(self, header: _Header, columns: Dict[str, np.ndarray]) -> np.ndarray:
        types = columns.get("type")
        if "element" in columns:
            numbers = _numbers_from_symbols(columns.pop("element"), "element")
            if self.type_map is not None and types is not None:
                expected = self._numbers_from_types(types)
                wrong = np.flatnonzero(expected != numbers)
                if len(wrong):
                    k = int(wrong[0])
                    raise _RowError(k, f"element {chemical_symbols[numbers[k]]} of type "
                                       f"{types[k]} contradicts the type map "
                                       f"({types[k]} -> {chemical_symbols[expected[k]]})")
            return numbers
        if self.type_map is not None:
            if types is None:
                raise DumpFormatError(f"{_where(self.path, header.first_row_line - 1, header.frame, header.timestep)}: "
                                      f"a type map was given but the dump has no 'type' column")
            return self._numbers_from_types(types)
        if "typelabel" in columns and all(label in ELEMENT_SYMBOLS
                                          for label in set(columns["typelabel"])):
            return _numbers_from_symbols(columns["typelabel"], "typelabel")
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

    def _numbers_from_types(self, types: np.ndarray) -> np.ndarray:
        lookup = self._type_numbers
        numbers = lookup[np.clip(types, 0, len(lookup) - 1)]
        unknown = np.flatnonzero((numbers == 0) | (types < 0) | (types >= len(lookup)))
        if len(unknown):
            k = int(unknown[0])
            raise _RowError(k, f"atom type {types[k]} is not in the type map "
                               f"{dict(sorted(self.type_map.items()))}")
        return numbers


def _numbers_from_symbols(symbols: np.ndarray, name: str) -> np.ndarray:
    unique, inverse = np.unique(symbols.astype(str), return_inverse=True)
    z = np.zeros(len(unique), np.int64)
    for k, symbol in enumerate(unique):
        if symbol not in ELEMENT_SYMBOLS:
            raise _RowError(int(np.flatnonzero(inverse == k)[0]),
                            f"{name} {symbol!r} is not a chemical element symbol")
        z[k] = atomic_numbers[symbol]
    return z[inverse]


def _integers(name: str, values: np.ndarray) -> np.ndarray:
    """``values`` of integer column ``name`` as int64; a value that is not an integer (or beyond
    int64) is an error."""
    with np.errstate(invalid="ignore"):          # nan, inf and |x| >= 2**63: caught below
        integers = values.astype(np.int64)
    wrong = np.flatnonzero(integers != values)
    if len(wrong):
        raise _RowError(int(wrong[0]), f"column {name!r} holds {float(values[wrong[0]])!r}, "
                                       f"not an integer")
    return integers


def _id_order(bounds: np.ndarray, ids: np.ndarray) -> Optional[np.ndarray]:
    """Row order that sorts each frame's rows by atom id (frame k's rows at bounds[k]:bounds[k +
    1] stay there), None when they are in id order already (``dump_modify sort id``, serial
    runs); a repeated id is an error."""
    not_rising = np.flatnonzero(ids[1:] <= ids[:-1]) + 1
    if not np.isin(not_rising, bounds).all():      # (a frame's first row may be below the last)
        sizes = np.diff(bounds)
        starts = bounds[:-1][sizes > 0]
        lows, highs = np.minimum.reduceat(ids, starts), np.maximum.reduceat(ids, starts)
        spans = highs - lows + 1
        if (spans < 4 * sizes[sizes > 0]).all():
            # ids numbered densely in each frame, as LAMMPS does: one counting sort of all the
            # frames, by key = the frame's offset + id (linear in the rows)
            keys = ids + np.repeat(np.cumsum(spans) - spans - lows, sizes[sizes > 0])
            row_of_key = np.full(int(spans.sum()), -1, np.int64)
            row_of_key[keys] = np.arange(len(ids))
            order = row_of_key[row_of_key >= 0]
            if len(order) == len(ids):                 # no id repeated
                return order
        return np.concatenate([_frame_id_order(ids[start:end], start)
                               for start, end in zip(bounds[:-1], bounds[1:])])
    return None


def _frame_id_order(ids: np.ndarray, first_row: int) -> np.ndarray:
    """Rows (first_row + k) of one frame sorted by id (stable); a repeated id is an error."""
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    repeated = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
    if len(repeated) and sorted_ids[-1] != 0:         # ids all 0: atom_modify id no
        raise _RowError(first_row + int(order[repeated[0] + 1]),
                        f"atom id {sorted_ids[repeated[0]]} appears twice")
    return order + first_row


def _check_coordinates(box: _Box, xyz: np.ndarray, scaled: bool, first_row: int) -> None:
    """Coordinates must be finite and within MAX_BOX_LENGTHS box lengths of the box: MD
    coordinates, wrapped or unwrapped, never get that far, so such a value is corruption (it
    would otherwise reach MSDs and EFGs as enormous or NaN numbers). ``xyz`` (3, rows): the
    coordinates as read (scaled or Cartesian), from row ``first_row`` on."""
    # min and max are NaN if any value is, and NaN fails the comparisons
    if scaled or box.lowest is None:
        fractional = xyz if scaled else _times(box.to_fractional, xyz - box.origin[:, None])
        inside = ((fractional.min(axis=1) >= 0.5 - MAX_BOX_LENGTHS).all()
                  and (fractional.max(axis=1) <= 0.5 + MAX_BOX_LENGTHS).all())
    else:                                             # orthogonal box: the bounds in Å
        inside = (xyz.min(axis=1) >= box.lowest).all() and (xyz.max(axis=1) <= box.highest).all()
    if inside:
        return
    finite = np.isfinite(xyz).all(axis=0)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise _RowError(first_row + row, f"coordinate {_as_read(box, xyz[:, row], scaled)} is "
                                         f"not finite")
    fractional = xyz if scaled else _times(box.to_fractional, xyz - box.origin[:, None])
    row = int(np.flatnonzero((np.abs(fractional - 0.5) > MAX_BOX_LENGTHS).any(axis=0))[0])
    raise _RowError(first_row + row, f"coordinate {_as_read(box, xyz[:, row], scaled)} Å lies "
                                     f"more than {MAX_BOX_LENGTHS:g} box lengths outside the box "
                                     f"(corrupt value)")


def _as_read(box: _Box, xyz: np.ndarray, scaled: bool) -> list:
    """One row's Cartesian coordinates (Å) as a list, for messages."""
    return (box.origin + xyz @ box.cell if scaled else xyz).tolist()


def _times(matrix: np.ndarray, rows: np.ndarray, shift: Optional[np.ndarray] = None) -> np.ndarray:
    """``shift + rows.T @ matrix`` as (3, n) for (3, n) ``rows`` and a 3x3 matrix, term by term,
    skipping the zeros of the matrix (an orthogonal box has six); a BLAS product of a batch of
    rows would start the BLAS threads, which cost more than the product."""
    out = np.zeros_like(rows)
    for i in range(3):
        for j in np.flatnonzero(matrix[:, i]):
            out[i] += matrix[j, i] * rows[j]
        if shift is not None:
            out[i] += shift[i]
    return out


def _box_runs(headers: List[_Header], bounds: np.ndarray) -> Iterator[Tuple[_Box, int, int]]:
    """(box, first row, end row) of each run of consecutive frames with the same box (one run
    for a fixed box, since equal box text gives the same _Box)."""
    start = 0
    for k in range(1, len(headers) + 1):
        if k == len(headers) or headers[k].box is not headers[start].box:
            yield headers[start].box, int(bounds[start]), int(bounds[k])
            start = k


def _type_lookup(type_map: Dict[int, str]) -> np.ndarray:
    """Atomic number of each atom type (index = type), 0 for types not in the map."""
    lookup = np.zeros(max(max(type_map), 0) + 1, np.int64)
    for t, symbol in type_map.items():
        if t >= 0:
            lookup[t] = atomic_numbers[symbol]
    return lookup


def _row_complete(block: np.ndarray, newlines: np.ndarray, columns: List[str]) -> bool:
    """Whether the last row of ``block`` has all its columns, each numeric one a number: the
    test for a last line that ends the file without a newline (cut, or merely unterminated)."""
    row_start = int(newlines[-2]) + 1 if len(newlines) > 1 else 0
    words = block[row_start:int(newlines[-1])].tobytes().split()
    return len(words) == len(columns) and bad_number(words, columns, _STRING_COLUMNS) is None


def _frames(path: Path, type_map, frames: range, parse: bool = True) -> Iterator:
    """Walk the file: yield Atoms for the selected frames (or, with parse=False, the header of
    every complete frame). Warns and stops at a frame the file ends inside.

    The atom rows of selected frames are gathered in a batch (same columns, up to BATCH_BYTES)
    and converted together; what stops the walk (a malformed header, the end of the file inside
    a frame) is raised or reported once the frames before it have been yielded."""
    reader = _FrameReader(path, type_map)
    stream, compression = open_binary(path)
    with stream:
        lines = BlockLines(stream)
        seen = _Seen()
        batch: List[Tuple[_Header, bytes]] = []
        batch_bytes = 0
        ending = None              # the error to raise, or the truncation to report, at the end
        frame = 0
        header = None
        while frame < frames.stop:
            try:
                header = _read_header(lines, path, frame, seen)
                if header is None:
                    if lines.stream_error:
                        # the text ends between frames, but the compressed stream was cut: frames
                        # may be missing after these, and the file is damaged either way
                        ending = partial(_truncated, path, compression, lines, frame, None,
                                         between_frames=True)
                    break
                rows = lines.read_lines(header.n_atoms)
                if rows is None or (lines.unterminated_line == lines.line_number
                                    and not _row_complete(*rows, header.columns)):
                    raise _EndInsideFrame
            except _EndInsideFrame:
                ending = partial(_truncated, path, compression, lines, frame,
                                 header.timestep if header and header.frame == frame else None)
                break
            except DumpFormatError as error:
                ending = error
                break
            if not parse:
                yield header
            elif frame in frames:
                columns = batch[0][0].columns if batch else None
                if batch and (batch_bytes >= BATCH_BYTES or (header.columns is not columns
                                                             and header.columns != columns)):
                    yield from reader.frames(batch)
                    batch, batch_bytes = [], 0
                text = rows[0].tobytes()         # (the rows' buffer is reused by later reads)
                batch.append((header, text))
                batch_bytes += len(text)
            frame += 1
        yield from reader.frames(batch)
    if isinstance(ending, DumpFormatError):
        raise ending
    if ending is not None:
        ending()


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
