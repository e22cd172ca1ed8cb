"""Streaming reader for LAMMPS text dump files (``dump custom``/``dump atom``, ``write_dump``).

    from efg.dump import iread
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
"""
import bz2
import gzip
import lzma
import math
import re
import warnings
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers, chemical_symbols

__all__ = ["DumpFormatError", "TruncatedDumpError", "TruncatedDumpWarning", "iread", "read_frames", "count_frames",
           "read_type_map"]

TypesArg = Union[None, str, PathLike, Sequence[str], Mapping[int, str]]
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
_ORIGINAL_ELEMENTS = set(chemical_symbols[1:])
#: coordinates further than this many box lengths from the box are refused as corrupt: unwrapped
#: MD coordinates drift by a few box lengths at most (diffusion over a whole run)
MAX_BOX_LENGTHS = 1000.0


def _is_int_column(name: str) -> bool:
    return name in _INT_COLUMNS or name.startswith(_INT_PREFIXES)


# ---------------------------------------------------------------------------------------------
# decimal text -> float64, vectorised

_POW10 = 10.0 ** np.arange(23)              # exact powers of ten
_SHIFTED_POW10 = 10.0 ** np.arange(-1, 64)   # _SHIFTED_POW10[k + 1] == 10**k
_TWO53 = 2.0 ** 53
_MAX_FAST_TOKEN = 24     # longer tokens go through Python's float
_PAD = 32                # spaces around a block so that windows never leave the buffer
_BATCH_TOKENS = 1 << 16  # bounds the (width, tokens) work arrays to a few MiB
_FEW_TOKENS = 100        # fewer than this go straight to Python's float (quicker than arrays)


class _Workspace:
    """Reusable work arrays: numbers parsed frame after frame need the same large temporaries,
    and allocating them anew each time costs more in page faults than the arithmetic."""

    def __init__(self):
        self._arrays: Dict[str, np.ndarray] = {}

    def get(self, name: str, shape: Tuple[int, ...], dtype) -> np.ndarray:
        size = math.prod(shape)
        array = self._arrays.get(name)
        if array is None or array.size < size or array.dtype != np.dtype(dtype):
            array = np.empty(max(size, 1), dtype)
            self._arrays[name] = array
        return array[:size].reshape(shape)


def _tokenize(text: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Start and end offsets of the whitespace-separated tokens of ``text`` (uint8, starting and
    ending with whitespace)."""
    # Python's bytes.split() whitespace: space, \t \n \v \f \r; other control bytes (NUL
    # from a crashed write) stay inside tokens and so cannot pass as separators
    space = (text == 32) | ((text - 9) < 5)         # (uint8: bytes below 9 wrap round)
    edges = np.flatnonzero(space[:-1] != space[1:]) + 1
    return edges[0::2], edges[1::2]


# Plain decimals, 8 bytes at a time. What LAMMPS writes by default (``%g``) is, apart from the
# e-notation of very small and large numbers, ``[sign]digits[.digits]`` of at most 16 bytes.
# For those, _parse_plain treats the bytes of a token as one or two little-endian uint64 words
# (byte j = the j-th character, so the leading digit is the lowest byte) and does the work of a
# byte loop with a few integer operations per word ("SIMD within a register"): flag the bytes
# that are not digits, check they are a single '.', close the gap it leaves, and sum the eight
# digits of a word in three multiply-shift steps. Other tokens go to _parse_general (or, when
# only a few, straight to Python's float).

_U64 = np.uint64
_EACH_BYTE = 0x0101010101010101
_ALL_BITS = _U64(2 ** 64 - 1)
_ASCII_ZEROS = _U64(0x30 * _EACH_BYTE)     # b"00000000"
_LOW_7_BITS = _U64(0x7F * _EACH_BYTE)
_ADD_TO_10 = _U64(0x76 * _EACH_BYTE)        # 0x76 + 10 == 0x80: sets a byte's top bit if >= 10
_POINT_FLAG = 0x2E ^ 0x30                   # b"." - b"0" as it is left after x ^ _ASCII_ZEROS
# digits after the point from its flag 1 << 8q: (flag * _DIGITS_AFTER[w]) >> 60 reads a 4-bit
# field placed so that the shift brings field q to the top; w = 0 for the last word of a token,
# 1 for the word before it (8 more digits after the point)
_DIGITS_AFTER = (_U64(sum((7 - q) << (60 - 8 * q) for q in range(8))),
                 _U64(sum((15 - q) << (60 - 8 * q) for q in range(8))))
_MAX_PLAIN_TOKEN = 16    # bytes after the sign; longer ones go to _parse_general
# 10**k and -10**k for the k < 32 that _plain_short/_plain_long return (k > 15: not exact)
_SIGNED_POW10 = np.concatenate([10.0 ** np.minimum(np.arange(32), 22),
                                -10.0 ** np.minimum(np.arange(32), 22)])


def _words_ending_at(text64: np.ndarray, ends: np.ndarray, before: int = 0) -> np.ndarray:
    """The 8 bytes ``ends - 8 * (before + 1)`` up to ``ends - 8 * before`` as little-endian
    uint64 words, each joined from the two aligned words of ``text64`` (the buffer's '<u8'
    view) it straddles."""
    offsets = ends - 8 * (before + 1)
    aligned = offsets >> 3
    shift = (offsets.view(np.uint64) & _U64(7)) << _U64(3)
    words = text64[aligned] >> shift
    aligned += 1
    words |= text64[aligned] << (_U64(64) - shift)     # numpy: a shift by >= 64 gives 0
    return words


def _eight_digits(x: np.ndarray) -> np.ndarray:
    """Integer value of words of eight digits (byte values 0..9, leading digit in the lowest
    byte): pairs, then quadruples, then all eight, each step one multiply and shift. In place."""
    x *= _U64(10 << 8 | 1)
    x >>= _U64(8)
    x &= _U64(0x00FF00FF00FF00FF)
    x *= _U64(100 << 16 | 1)
    x >>= _U64(16)
    x &= _U64(0x0000FFFF0000FFFF)
    x *= _U64(10000 << 32 | 1)
    x >>= _U64(32)
    return x


def _digit_words(text64: np.ndarray, ends: np.ndarray, length: np.ndarray, before: int):
    """Token bytes as digit values (byte - b'0'; a '.' becomes _POINT_FLAG) in the word that ends
    ``8 * before`` bytes before each token's end; bytes outside the token's last ``length`` are
    zeroed (leading zeros). Returns (x, flags, ok): flags has 1 in each byte that is not a digit,
    ok says each of those is a '.'."""
    x = _words_ending_at(text64, ends, before)
    x ^= _ASCII_ZEROS
    in_word = np.maximum(length, _U64(8 * before)) - _U64(8 * before) if before else length
    x &= ~(_ALL_BITS >> (in_word << _U64(3)))      # (in_word >= 8: all bytes)
    flags = ((x & _LOW_7_BITS) + _ADD_TO_10 | x) >> _U64(7) & _U64(_EACH_BYTE)
    ok = (x & flags * _U64(0xFF)) == flags * _U64(_POINT_FLAG)
    return x, flags, ok


def _close_point_gap(x: np.ndarray, below: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """Move the bytes of ``x`` under the mask ``below`` (the digits before the point) one byte
    up, onto the point (flagged in ``flags``): x - point + 255 * (x & below). In place."""
    moved = x & below
    moved *= _U64(255)
    x += moved
    x -= flags * _U64(_POINT_FLAG)
    return x


def _count_bytes(flags: np.ndarray) -> np.ndarray:
    """Number of flagged bytes (flags 0 or 1 per byte) in each word."""
    return flags * _U64(_EACH_BYTE) >> _U64(56)


def _plain_short(text64: np.ndarray, ends: np.ndarray, length: np.ndarray):
    """(mantissa, digits after the point, ok) of tokens with 1..8 bytes after the sign."""
    x, flags, ok = _digit_words(text64, ends, length, 0)
    points = _count_bytes(flags)
    ok &= (points <= 1) & (length > points)
    below = flags - _U64(1)                      # bytes under the point, all when there is none
    below &= _U64(0) - points                    # ... and then none
    _close_point_gap(x, below, flags)
    return _eight_digits(x), flags * _DIGITS_AFTER[0] >> _U64(60), ok


def _plain_long(text64: np.ndarray, ends: np.ndarray, length: np.ndarray):
    """(mantissa, digits after the point, ok) of tokens with 9..16 bytes after the sign: the
    word holding the last 8 bytes, and the word before it."""
    last, last_flags, ok = _digit_words(text64, ends, length, 0)
    ok &= length <= _MAX_PLAIN_TOKEN
    first, first_flags, first_ok = _digit_words(text64, ends, length, 1)
    ok &= first_ok
    points = _count_bytes(last_flags + first_flags)
    ok &= points <= 1
    has_point = _U64(0) - points
    # a point in the last word: all of the first word moves up, its top byte into the last word
    first_below = (first_flags - _U64(1)) & has_point
    last_below = np.where(last_flags != 0, last_flags - _U64(1), _U64(0))
    carry = (first & first_below) >> _U64(56)
    _close_point_gap(first, first_below, first_flags)
    _close_point_gap(last, last_below, last_flags)
    last += carry
    mantissa = _eight_digits(first)
    mantissa *= _U64(10 ** 8)
    mantissa += _eight_digits(last)
    ok &= mantissa < _U64(2 ** 53)               # exactly a float64
    after = (last_flags * _DIGITS_AFTER[0] >> _U64(60)) + (first_flags * _DIGITS_AFTER[1] >> _U64(60))
    return mantissa, after, ok


def _parse_plain(text: np.ndarray, starts: np.ndarray, ends: np.ndarray):
    """float64 values of the tokens ``text[starts[k]:ends[k]]`` that are plain decimals,
    ``[sign]digits[.digits]`` with at most 16 bytes after the sign. Returns (values, exact),
    exact[k] saying values[k] is float(token k) (correctly rounded: an exact integer mantissa
    divided by an exact power of ten, one IEEE operation); the other tokens are left alone.
    ``text``: 8-byte aligned, a multiple of 8 bytes long, with 16 bytes before the first token."""
    text64 = text.view("<u8")
    first = text[starts]
    negative = first == 45                          # '-'
    length = (ends - starts).view(np.uint64) - (negative | (first == 43))
    mantissa, after, exact = _plain_short(text64, ends, length)
    exact &= length <= 8
    long = np.flatnonzero(length > 8)
    if len(long):
        mantissa[long], after[long], exact[long] = _plain_long(text64, ends[long], length[long])
    after += negative * _U64(32)                    # the sign goes with the power of ten
    values = mantissa.astype(np.float64)
    values /= _SIGNED_POW10[after.view(np.int64)]   # -0 stays -0.0, as float('-0')
    return values, exact


def _parse_general(text: np.ndarray, starts: np.ndarray, ends: np.ndarray, work: _Workspace):
    """Convert the decimal tokens ``text[starts[k]:ends[k]]`` to float64 without a Python call
    per token. Returns (values, exact) where ``exact[k]`` says values[k] is the correctly rounded
    value of a well-formed token; the others (nan, inf, too long, exponent beyond 1e±22,
    malformed) are left to the caller.

    Method: the bytes of the tokens are laid out right-aligned in a (width, n) uint8 array, the
    decimal point is squeezed out, and the digits are contracted with powers of ten in float64
    (exact while the integer mantissa M < 2**53). Then value = M * 10**p with |p| <= 22 is one
    correctly rounded IEEE operation (Clinger's fast path), the same result strtod gives.
    """
    n = len(starts)
    lengths = ends - starts
    width = min(int(lengths.max()), _MAX_FAST_TOKEN)
    clipped = np.minimum(lengths, width)
    col = np.arange(width, dtype=np.uint8)[:, None]
    chars = work.get("chars", (width, n), np.uint8)
    index = ends - width
    for j in range(width):
        chars[j] = text[index]
        index += 1
    mask = work.get("mask", (width, n), bool)
    np.greater_equal(col, (width - clipped).astype(np.uint8), out=mask)
    chars *= mask                                   # bytes of neighbouring tokens -> 0

    first = text[starts]
    negative = first == 45                          # '-'
    signed = negative | (first == 43)               # '+'

    # positions (1-based columns, 0 = absent) of the decimal point and of e/E, in one product
    codes = work.get("codes", (width, n), np.uint8)
    is_dot = work.get("is_dot", (width, n), bool)
    np.bitwise_or(chars, np.uint8(32), out=codes)
    np.equal(codes, 101, out=mask)
    n_exp_chars = np.count_nonzero(mask)
    np.equal(chars, 46, out=is_dot)
    n_dot_chars = np.count_nonzero(is_dot)
    as_float = work.get("as_float", (width, n), np.float32)
    if n_exp_chars:
        np.multiply(mask, np.uint8(128), out=codes)
        codes += is_dot
        np.copyto(as_float, codes)
    else:
        np.copyto(as_float, is_dot)
    where = (np.arange(1, width + 1, dtype=np.float32) @ as_float).astype(np.intp)
    dot_col = where & 127
    exp_col = np.minimum(where >> 7, width)          # > width only for malformed tokens

    # digit values, non-digits 0, with the columns left of the point moved one to the right
    digits = codes
    np.subtract(chars, np.uint8(48), out=digits)
    np.less(digits, 10, out=mask)
    n_digit_chars = np.count_nonzero(mask)
    digits *= mask
    squeezed = work.get("squeezed", (width, n), np.uint8)
    if n_dot_chars:
        squeezed[0] = 0
        squeezed[1:] = digits[:-1]
        np.greater_equal(col, dot_col.astype(np.uint8), out=mask)
        digits -= squeezed                          # uint8 wrap-around is exact here
        digits *= mask
        squeezed += digits
    else:
        squeezed, digits = digits, squeezed

    weights = _SHIFTED_POW10[width:0:-1]            # 10**(width-1) ... 10**0
    power = np.zeros(n, np.intp)
    has_exp = exp_col > 0
    n_exp_signs = 0
    if n_exp_chars:
        rows = np.flatnonzero(has_exp)
        cols = exp_col[rows]
        exponent_digits = squeezed[:, rows]
        exponent_digits *= col >= cols.astype(np.uint8)
        exponent = (weights @ exponent_digits.astype(np.float64)).astype(np.intp)
        sign_char = text[starts[rows] + clipped[rows] - width + cols]
        n_exp_signs = np.count_nonzero((sign_char == 45) | (sign_char == 43))
        power[rows] = np.where(sign_char == 45, -exponent, exponent)
        np.less(col, np.where(has_exp, exp_col, 255).astype(np.uint8), out=mask)
        squeezed *= mask                            # keep the mantissa digits only
    mantissa_digits = work.get("mantissa", (width, n), np.float64)
    np.copyto(mantissa_digits, squeezed)
    scaled = weights @ mantissa_digits              # = M * 10**(digits after the mantissa)
    if n_exp_chars:
        mantissa = scaled / _SHIFTED_POW10[np.where(has_exp, width + 2 - exp_col, 1)]
        mantissa_end = np.where(has_exp, exp_col - 1, width)
    else:
        mantissa = scaled
        mantissa_end = width
    if n_dot_chars:
        power -= np.where(dot_col > 0, mantissa_end - dot_col, 0)

    # well-formedness: every byte of a token is accounted for, once
    lead = text[starts + signed]
    after_lead = text[starts + signed + 1]
    exact = ((lead - np.uint8(48)) < 10) | ((lead == 46) & ((after_lead - np.uint8(48)) < 10))
    last = text[ends - 1]
    exact &= ((last - np.uint8(48)) < 10) | ((last == 46) & ~has_exp)
    exact &= (np.abs(power) <= 22) & (scaled < _TWO53) & (lengths <= width)
    if n_exp_chars:
        exact &= ~has_exp | (dot_col < exp_col)
    all_bytes_known = (n_digit_chars + n_dot_chars + n_exp_chars + np.count_nonzero(signed)
                       + n_exp_signs == int(clipped.sum()))
    single_marks = (np.count_nonzero(dot_col) == n_dot_chars
                    and np.count_nonzero(exp_col) == n_exp_chars)
    if not (all_bytes_known and single_marks):
        exact &= _rows_well_formed(chars, text, starts, clipped, signed, has_exp, exp_col, width)

    magnitude = np.minimum(np.abs(power), 22)
    values = np.where(power >= 0, mantissa * _POW10[magnitude], mantissa / _POW10[magnitude])
    values *= 1.0 - 2.0 * negative                 # -0 stays -0.0, as float('-0')
    return values, exact


def _rows_well_formed(chars, text, starts, clipped, signed, has_exp, exp_col, width):
    """Per token: every byte is a digit, the sign, the single point, the single e/E or the sign
    right after it (the slow path of :func:`_parse_general`, taken when a frame holds a token that
    is not a plain decimal number)."""
    ones = np.ones(width, np.float32)
    n_digits = ones @ ((chars - np.uint8(48)) < 10).astype(np.float32)
    n_dots = ones @ (chars == 46).astype(np.float32)
    n_exps = ones @ ((chars | np.uint8(32)) == 101).astype(np.float32)
    after_exp = text[starts + clipped - width + exp_col]
    exp_signed = has_exp & ((after_exp == 45) | (after_exp == 43))
    return ((n_digits + n_dots + n_exps + signed + exp_signed == clipped)
            & (n_dots <= 1) & (n_exps <= 1))


def _parse_numbers(text: np.ndarray, starts: np.ndarray, ends: np.ndarray, work: _Workspace):
    """float64 values of the tokens; returns (values, index of the first token that is not a
    number or -1). Plain decimals go through :func:`_parse_plain`, the other tokens of a batch
    through :func:`_parse_general`, what is left (nan, inf, very long or not numbers at all)
    through Python's float."""
    values = np.empty(len(starts))
    for lo in range(0, len(starts), _BATCH_TOKENS):
        hi = min(lo + _BATCH_TOKENS, len(starts))
        s, e = starts[lo:hi], ends[lo:hi]
        batch, exact = _parse_plain(text, s, e)
        others = np.flatnonzero(~exact)
        if len(others) > _FEW_TOKENS:
            batch[others], exact = _parse_general(text, s[others], e[others], work)
            others = others[~exact]
        values[lo:hi] = batch
        others += lo
        if len(others):
            tokens = [text[starts[k]:ends[k]].tobytes() for k in others]
            try:
                if any(b"_" in token for token in tokens):   # float() takes 1_0; LAMMPS never
                    raise ValueError
                values[others] = np.array(tokens, dtype=np.float64)
            except ValueError:
                for k, token in zip(others, tokens):
                    try:
                        if b"_" in token:
                            raise ValueError
                        float(token)
                    except ValueError:
                        return values, int(k)
    return values, -1


# ---------------------------------------------------------------------------------------------
# reading lines in blocks

class _Lines:
    """The lines of a binary stream, read in blocks of several MiB into one reused buffer, so
    that a frame's atom rows come back as one array, without a Python call per line.
    ``line_number`` counts the lines handed out (it is the 1-based number of the last one)."""

    def __init__(self, stream, block_bytes: int = 1 << 22):
        self._stream = stream
        self._block_bytes = block_bytes
        self._buf = np.empty(2 * block_bytes, np.uint8)
        self._end = 0                            # bytes held: _buf[:_end]
        self._newlines = np.empty(0, np.int64)   # offsets of b"\n" in _buf, from _pos on
        self._next = 0                           # index into _newlines of the next line's end
        self._pos = 0                            # offset of the first unread byte
        self.line_number = 0
        self.at_eof = False
        self.stream_error: Optional[str] = None  # why a compressed stream stopped early
        self.unterminated_line: Optional[int] = None  # number of a last line without newline

    def _available(self) -> int:
        return len(self._newlines) - self._next

    def _make_room(self, n_bytes: int) -> None:
        """Move the unread bytes to the front of the buffer, with room for n_bytes after them
        (lines handed out before are overwritten)."""
        kept = self._end - self._pos
        if kept + n_bytes > len(self._buf):
            grown = np.empty(max(kept + n_bytes, 2 * len(self._buf)), np.uint8)
            grown[:kept] = self._buf[self._pos:self._end]
            self._buf = grown
        else:
            self._buf[:kept] = self._buf[self._pos:self._end]
        self._newlines = self._newlines[self._next:] - self._pos
        self._next = 0
        self._pos = 0
        self._end = kept

    def _read_more(self, n_bytes: int) -> None:
        self._make_room(n_bytes)
        first_new = self._end
        view = memoryview(self._buf)
        while self._end - first_new < n_bytes and not self.at_eof:
            try:
                got = self._stream.readinto1(view[self._end:first_new + n_bytes])
            except EOFError as exc:                 # compressed stream cut short
                self.stream_error = str(exc)
                got = 0
            if not got:
                self.at_eof = True
            self._end += got
        new = np.flatnonzero(self._buf[first_new:self._end] == 10)
        new += first_new
        self._newlines = np.concatenate((self._newlines, new))

    def _ensure(self, n_lines: int) -> bool:
        while self._available() < n_lines and not self.at_eof:
            have = self._available()
            per_line = (self._newlines[self._next + have - 1] + 1 - self._pos) / have if have else 80
            missing = int((n_lines - have) * per_line * 1.05) + 4096
            self._read_more(max(missing, self._block_bytes))
        if (self._available() < n_lines and self.at_eof and self.unterminated_line is None
                and not self.rest_is_blank()):
            # a last line without its newline is a line (as for Python's readlines); whether it
            # is complete is judged by whoever reads it (see unterminated_line)
            self.unterminated_line = self.line_number + self._available() + 1
            self._make_room(1)
            self._buf[self._end] = 10
            self._newlines = np.append(self._newlines, self._end)
            self._end += 1
        return self._available() >= n_lines

    def readline(self) -> Optional[bytes]:
        """The next line without its newline, or None when no complete line is left."""
        if not self._ensure(1):
            return None
        end = int(self._newlines[self._next])
        line = self._buf[self._pos:end].tobytes()
        self._pos = end + 1
        self._next += 1
        self.line_number += 1
        return line

    def read_lines(self, n: int) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """The next ``n`` lines, newlines included, as (bytes (uint8), offsets of their n
        newlines in it), or None when fewer are left. The bytes are a view of the buffer:
        valid until the next read."""
        if n == 0:
            return np.empty(0, np.uint8), np.empty(0, np.int64)
        if not self._ensure(n):
            return None
        start = self._pos
        newlines = self._newlines[self._next:self._next + n] - start
        end = start + int(newlines[-1]) + 1
        self._pos = end
        self._next += n
        self.line_number += n
        return self._buf[start:end], newlines

    def rest_is_blank(self) -> bool:
        """At the end of the stream: only whitespace is left after the last complete line."""
        return not self._buf[self._pos:self._end].tobytes().strip()


def _open_binary(path: Path):
    """(binary stream, compression: "gzip", "bzip2", "xz" or None) of a plain or compressed
    file, recognised by its first bytes."""
    with open(path, "rb") as probe:
        magic = probe.read(6)
    if magic[:2] == b"\x1f\x8b":
        return gzip.open(path, "rb"), "gzip"
    if magic[:3] == b"BZh":
        return bz2.open(path, "rb"), "bzip2"
    if magic == b"\xfd7zXZ\x00":
        return lzma.open(path, "rb"), "xz"
    return open(path, "rb"), None


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


def _read_header(lines: _Lines, path, frame: int) -> Optional[_Header]:
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
# type -> element maps

def _symbol(value, where: str) -> str:
    symbol = str(value).strip()
    if symbol not in _ORIGINAL_ELEMENTS:
        raise ValueError(f"{where}: {symbol!r} is not a chemical element symbol")
    return symbol


def _element_from_mass(mass: float, where: str, tolerance: float = 0.1) -> str:
    """The one element whose standard atomic mass is within ``tolerance`` u of ``mass``."""
    close = np.flatnonzero(np.abs(atomic_masses[1:] - mass) <= tolerance) + 1
    if len(close) != 1:
        near = ", ".join(f"{chemical_symbols[z]} {atomic_masses[z]:.3f}" for z in close) or "none"
        raise ValueError(f"{where}: mass {mass} u matches {len(close)} elements within "
                         f"{tolerance} u ({near}); name the element in a comment "
                         f"(e.g. '1 {mass} # Cs') or give the types explicitly")
    return chemical_symbols[close[0]]


def _strip_comment(line: str) -> Tuple[str, str]:
    body, _, comment = line.partition("#")
    return body.strip(), comment.strip()


def _read_data_file_types(path: Path, lines: List[str]) -> Dict[int, str]:
    """From a LAMMPS data file: ``Atom Type Labels`` that are element symbols, else the
    ``Masses`` section (element named in the line's comment, else matched by mass)."""
    sections: Dict[str, List[Tuple[int, str]]] = {}
    current = None
    for number, line in enumerate(lines, start=1):
        body, comment = _strip_comment(line)
        if not body:
            continue
        if body in ("Masses", "Atom Type Labels") or re.fullmatch(r"[A-Z][A-Za-z ]*", body):
            current = body
            sections.setdefault(current, [])
            continue
        if current is not None:
            sections[current].append((number, line))
    labels = {}
    for number, line in sections.get("Atom Type Labels", []):
        words = _strip_comment(line)[0].split()
        if len(words) == 2 and words[1] in _ORIGINAL_ELEMENTS:
            labels[int(words[0])] = words[1]
    if labels:
        return labels
    types = {}
    for number, line in sections.get("Masses", []):
        body, comment = _strip_comment(line)
        words = body.split()
        where = f"{path}, line {number}"
        try:
            type_id, mass = int(words[0]), float(words[1])
        except (ValueError, IndexError):
            raise ValueError(f"{where}: expected 'type mass' in the Masses section, "
                             f"found {line.strip()!r}") from None
        named = comment.split()[0] if comment else ""
        types[type_id] = named if named in _ORIGINAL_ELEMENTS else _element_from_mass(mass, where)
    return types


def _read_input_script_types(path: Path, lines: List[str]) -> Dict[int, str]:
    """From a LAMMPS input script: ``labelmap atom``, else ``pair_coeff * * ... El1 El2 ..``,
    else ``mass`` commands, else the data file of ``read_data``."""
    labelmap, pair_coeff, masses, data_files = {}, None, {}, []
    for number, raw in enumerate(lines, start=1):
        body, comment = _strip_comment(raw)
        words = body.split()
        if not words:
            continue
        where = f"{path}, line {number}"
        if words[0] == "labelmap" and len(words) >= 2 and words[1] == "atom":
            for type_id, label in zip(words[2::2], words[3::2]):
                if label in _ORIGINAL_ELEMENTS:
                    labelmap[int(type_id)] = label
        elif words[0] == "pair_coeff" and words[1:3] == ["*", "*"] and pair_coeff is None:
            trailing = []
            for word in reversed(words[3:]):
                if word in _ORIGINAL_ELEMENTS or word == "NULL":
                    trailing.append(word)
                else:
                    break
            if trailing and len(trailing) < len(words) - 3:   # a potential file comes first
                pair_coeff = {t: s for t, s in enumerate(reversed(trailing), start=1)
                              if s != "NULL"}
        elif words[0] == "mass" and len(words) >= 3 and words[1].isdigit():
            named = comment.split()[0] if comment else ""
            masses[int(words[1])] = (named if named in _ORIGINAL_ELEMENTS
                                     else _element_from_mass(float(words[2]), where))
        elif words[0] == "read_data" and len(words) >= 2:
            data_files.append(words[1])
    if labelmap:
        return labelmap
    if pair_coeff:
        return pair_coeff
    if masses:
        return masses
    for name in data_files:
        candidate = (path.parent / name)
        if candidate.is_file():
            return read_type_map(candidate)
    return {}


def read_type_map(path: Union[str, PathLike]) -> Dict[int, str]:
    """{type: element symbol} from a LAMMPS data file or input script.

    Data file (has a ``Masses`` or ``Atom Type Labels`` section): type labels that are element
    symbols; else each ``Masses`` line, the element named in its comment (``1 132.905 # Cs``, as
    ``pyexport`` writes them) or else the one element within 0.1 u of the mass.
    Input script: ``labelmap atom 1 Cs ..``; else the element list ending
    ``pair_coeff * * <file> Cs Pb Br`` (NULL entries skipped); else ``mass`` commands as above;
    else the type map of the file named by ``read_data``.
    """
    path = Path(path)
    lines = path.read_text(errors="replace").splitlines()
    is_data = any(_strip_comment(line)[0] in ("Masses", "Atom Type Labels") for line in lines)
    types = (_read_data_file_types if is_data else _read_input_script_types)(path, lines)
    if not types:
        raise ValueError(f"{path}: found no type→element map (looked for "
                         + ("'Masses'/'Atom Type Labels' sections" if is_data else
                            "'labelmap atom', 'pair_coeff * * file El1 El2 ..', 'mass' and "
                            "'read_data'") + ")")
    return types


def _type_map(types: TypesArg) -> Optional[Dict[int, str]]:
    """Normalise the ``types`` argument of :func:`iread` to {type: symbol}."""
    if types is None:
        return None
    if isinstance(types, Mapping):
        return {int(t): _symbol(s, f"types[{t!r}]") for t, s in types.items()}
    if isinstance(types, (str, PathLike)):
        if Path(types).is_file():
            return read_type_map(types)
        if isinstance(types, PathLike):
            raise FileNotFoundError(f"types: no such file {str(types)!r}")
        words = [w for w in re.split(r"[,\s]+", types) if w]
        if not words or not all(w in _ORIGINAL_ELEMENTS for w in words):
            raise ValueError(f"types={types!r} is neither an existing file nor a comma-separated "
                             f"list of element symbols such as 'Cs,Pb,Br'")
        return {t: w for t, w in enumerate(words, start=1)}
    return {t: _symbol(s, f"types[{t - 1}]") for t, s in enumerate(types, start=1)}


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
        self.work = _Workspace()
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
        text = self.work.get("text", (-(-(len(block) + 2 * _PAD) // 8) * 8,), np.uint8)
        text[:_PAD] = 32
        text[_PAD + len(block):] = 32
        text[_PAD:_PAD + len(block)] = block
        starts, ends = _tokenize(text)
        newlines = newlines + _PAD
        # n * n_cols tokens, and row k's first token after newline k-1 and its last before
        # newline k, hold together only if every row has n_cols tokens
        if not (len(starts) == n * n_cols
                and np.all(starts[n_cols::n_cols] > newlines[:-1])
                and np.all(ends[n_cols - 1::n_cols] <= newlines)):
            per_line = np.diff(np.searchsorted(starts, newlines), prepend=0)
            bad = np.flatnonzero(per_line != n_cols)
            row = int(bad[0]) if len(bad) else n - 1
            line_start = newlines[row - 1] + 1 if row else _PAD
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
            values, bad = _parse_numbers(text, s, e, self.work)
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
        if "typelabel" in columns and all(label in _ORIGINAL_ELEMENTS
                                          for label in set(columns["typelabel"])):
            return self._numbers_from_symbols(header, columns["typelabel"], "typelabel")
        if "mass" in columns:
            masses = columns["mass"]
            unique, inverse = np.unique(masses, return_inverse=True)
            where = _where(self.path, header.first_row_line, header.frame, header.timestep)
            z = np.array([atomic_numbers[_element_from_mass(m, where)] for m in unique])
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
            if symbol not in _ORIGINAL_ELEMENTS:
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
    stream, compression = _open_binary(path)
    with stream:
        lines = _Lines(stream)
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


def _truncated(path: Path, compression: Optional[str], lines: _Lines, frame: int,
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
    type_map = _type_map(types)
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
