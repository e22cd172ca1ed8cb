"""Lines of a plain or compressed text file, read in blocks into one reused buffer.

:class:`BlockLines` hands out a few lines as a list (headers) or many lines as one uint8 array
(the atom rows of a LAMMPS dump frame), so that a frame costs no Python call per line; it records
where a compressed stream was cut short and a last line without its newline. :func:`open_binary`
recognises gzip, bzip2 and xz by their first bytes.
"""
import bz2
import gzip
import lzma
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

class BlockLines:
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

    def peek(self, n: int) -> List[bytes]:
        """The next ``n`` lines without their newlines (fewer at the end of the stream), left
        unread: ``skip`` takes them."""
        self._ensure(n)
        n = min(n, self._available())
        if n == 0:
            return []
        end = int(self._newlines[self._next + n - 1])
        return self._buf[self._pos:end].tobytes().split(b"\n")

    def skip(self, n: int) -> None:
        """Take the next ``n`` lines, which ``peek`` has shown to be there."""
        if n:
            self._pos = int(self._newlines[self._next + n - 1]) + 1
            self._next += n
            self.line_number += n

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


def open_binary(path: Path):
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
