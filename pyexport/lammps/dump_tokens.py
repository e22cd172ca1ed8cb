"""Whitespace tokens of a text block and their float64 values, vectorised (LAMMPS dump rows).

:func:`tokenize` finds the token offsets of a block of text; :func:`parse_numbers` converts
them exactly as Python's ``float`` would (correctly rounded), with no Python call per number:
plain decimals (LAMMPS's default ``%g`` apart from its e-notation) eight bytes at a time as
uint64 words, other decimals one byte per array element, and only nan/inf and the like through
Python's ``float``. Used by :mod:`pyexport.lammps.dump` on a frame's atom rows.

The block handed to both must be padded with :data:`PAD` spaces on each side, 8-byte aligned and
a multiple of 8 bytes long (the word reads of ``_parse_plain`` look up to :data:`PAD` bytes
outside a token).
"""
import math
from typing import Dict, Tuple

import numpy as np

_POW10 = 10.0 ** np.arange(23)              # exact powers of ten
_SHIFTED_POW10 = 10.0 ** np.arange(-1, 64)   # _SHIFTED_POW10[k + 1] == 10**k
_TWO53 = 2.0 ** 53
_MAX_FAST_TOKEN = 24     # longer tokens go through Python's float
PAD = 32                 # spaces around a block so that windows never leave the buffer
_BATCH_TOKENS = 1 << 16  # bounds the (width, tokens) work arrays to a few MiB
_FEW_TOKENS = 100        # fewer than this go straight to Python's float (quicker than arrays)


class Workspace:
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


def tokenize(text: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
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


def _parse_general(text: np.ndarray, starts: np.ndarray, ends: np.ndarray, work: Workspace):
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


def parse_numbers(text: np.ndarray, starts: np.ndarray, ends: np.ndarray, work: Workspace):
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
