"""The atom rows of LAMMPS dump frames as numbers, converted by pandas' C CSV reader.

:class:`AtomRows` turns the atom rows of one frame, or of many frames joined, into a float64 table
(one column per numeric dump column) and str arrays for ``element``/``typelabel``, in one call of
``pandas.read_csv(engine="c")``: a compiled tokenizer and number converter, so a frame costs no
Python call per row or per number, and a batch of frames costs one call.

What counts as a number is what Python's ``float`` accepts: since pandas 3.1 every
``float_precision`` mode is one correctly rounded converter, so each value is bit for bit
``float(token)`` (``6.9e-310``, ``1e400`` -> inf, ``-0`` -> -0.0); ``inf``/``infinity`` in any case
are read by pandas itself and ``nan`` in any case and sign through ``na_values``. Apart from those,
pandas refuses every token ``float`` refuses and also ``1_0`` (``float`` takes digit separators,
LAMMPS never writes them). Quotes are not special (``QUOTE_NONE``) and no other token means a
missing value (``keep_default_na=False``), so ``"2"``, ``NA`` or an empty field are refused, not
read.

When pandas refuses the text (or returns another shape than the rows it was given),
:func:`first_bad_row` names the first row that is not one token per column with a number in each
numeric column, for the error message; it converts nothing.
"""
import csv
import io
import itertools
from typing import Dict, FrozenSet, List, Optional, Sequence, Tuple

import numpy as np

#: the spellings of NaN that ``float`` accepts and pandas leaves to ``na_values``
NAN_TOKENS = tuple(sign + "".join(letters) for sign in ("", "+", "-")
                   for letters in itertools.product("nN", "aA", "nN"))
#: How pandas is asked to read the rows, the quickest first; the first that succeeds is kept for
#: the next batches. LAMMPS separates the columns of a row by one space, with none at either end,
#: and pandas splits such rows on " " about twice as fast as on runs of whitespace; padded columns
#: (``format float %20.15g``), tabs or a space at a row's end make " " find empty fields, which are
#: refused, and then runs of whitespace are tried. NaN tokens are refused unless listed as
#: ``na_values``, which costs about 0.1 ms a call, so that list is given only when needed.
READ_OPTIONS = ({"sep": " ", "na_filter": False},
                {"sep": " ", "na_values": NAN_TOKENS},
                {"sep": r"\s+", "na_values": NAN_TOKENS})


class RowsRefused(ValueError):
    """pandas did not read the rows as one number (or string) per column in every row."""


class AtomRows:
    """Converter of one dump's atom rows. Remembers the read options the rows took, so that a file
    with padded columns does not try the single space batch after batch."""

    def __init__(self, names: Sequence[str], text_columns: FrozenSet[str]):
        self.names = list(names)
        self.numeric = [k for k, name in enumerate(self.names) if name not in text_columns]
        self.text = [k for k, name in enumerate(self.names) if name in text_columns]
        self._first_option = 0                          # where the last batch succeeded
        self._dtype = ({k: (object if k in self.text else np.float64) for k in range(len(names))}
                       if self.text else np.float64)

    def read(self, text: bytes, n_rows: int) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
        """(float64 (n_rows, numeric columns), {text column: str (n_rows,)}) of the rows in
        ``text`` (each ending with a newline). Raises RowsRefused with pandas' reason."""
        if n_rows == 0:
            return (np.empty((0, len(self.numeric))),
                    {self.names[k]: np.empty(0, str) for k in self.text})
        # pandas is imported here, not with this module, so that `efg --help` and the readers of
        # other formats stay quick (it takes about 0.15 s)
        import pandas

        reason = ""
        for attempt in range(self._first_option, len(READ_OPTIONS)):
            options = READ_OPTIONS[attempt]
            if "na_values" in options and self.text:      # NaN in numeric columns only
                options = dict(options, na_values={c: NAN_TOKENS for c in self.numeric})
            try:
                table = pandas.read_csv(io.BytesIO(text), header=None, engine="c",
                                        dtype=self._dtype, keep_default_na=False,
                                        quoting=csv.QUOTE_NONE, **options)
            except ValueError as error:       # pandas' ParserError is a ValueError too
                reason = str(error).strip()
            else:
                if table.shape == (n_rows, len(self.names)):
                    self._first_option = attempt
                    if not self.text:                 # one float64 block: no copy
                        return table.to_numpy(np.float64, copy=False), {}
                    numbers = table.iloc[:, self.numeric].to_numpy(np.float64)
                    return numbers, {self.names[c]: table.iloc[:, c].to_numpy(str)
                                     for c in self.text}
                reason = (f"{table.shape[0]} rows of {table.shape[1]} columns, expected "
                          f"{n_rows} of {len(self.names)}")
        raise RowsRefused(reason)


def first_bad_row(text: bytes, names: Sequence[str],
                  text_columns: FrozenSet[str]) -> Optional[Tuple[int, str]]:
    """(row, message) of the first row of ``text`` (rows ending with newlines) that is not one
    whitespace-separated token per column, or else of the first row with a token that is not a
    number in a numeric column; None when every row is right."""
    rows = [line.split() for line in text.split(b"\n")[:text.count(b"\n")]]
    for row, words in enumerate(rows):
        if len(words) != len(names):
            shown = text.split(b"\n")[row].decode("ascii", "replace")
            return row, (f"expected {len(names)} columns ({' '.join(names)}), found "
                         f"{len(words)}: {shown[:100]!r}")
    for row, words in enumerate(rows):
        message = bad_number(words, names, text_columns)
        if message:
            return row, message
    return None


def bad_number(words: List[bytes], names: Sequence[str],
               text_columns: FrozenSet[str]) -> Optional[str]:
    """What is wrong with the first token of a row (one token per column) that is not a number
    in a numeric column, or None."""
    for word, name in zip(words, names):
        if name not in text_columns and not is_number(word):
            return f"column {name!r}: {word.decode('ascii', 'replace')[:40]!r} is not a number"
    return None


def is_number(token: bytes) -> bool:
    """Whether pandas reads ``token`` as a number: what ``float`` accepts, less digit separators."""
    if b"_" in token:
        return False
    try:
        float(token)
    except ValueError:
        return False
    return True
