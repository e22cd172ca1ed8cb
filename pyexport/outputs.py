"""What every ``pyexport`` and ``efg`` command does before and when it writes its outputs.

- :func:`refuse_overwriting_inputs`: no command writes over one of its own inputs (``-o
  data.extxyz`` on ``data.extxyz`` would destroy the data): an output that is the same file as
  an input (same path after resolving symbolic links, or the same file by ``os.path.samefile``,
  hard links included) is an error before anything is computed or written.
- :func:`write_json`: the one JSON writer of the reports. JSON has no NaN or Infinity (Python's
  ``json`` would write the non-standard tokens ``NaN``/``Infinity`` that strict readers reject),
  so a non-finite number is written as ``null``, meaning "no number": the quantity is undefined
  or was not computed (e.g. η where V_zz = 0, a τ of molecules that never decorrelated); numpy
  scalars and arrays become numbers and lists. The file is written with ``allow_nan=False``, so
  nothing else can slip through.

``efg`` imports this module (never the reverse), so both packages share one copy.
"""
import json
import math
import os
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np

PathArg = Union[str, "os.PathLike[str]"]


def _paths(items) -> list:
    """Flatten None / a path / nested sequences of paths into a list of paths."""
    if items is None:
        return []
    if isinstance(items, (str, bytes, os.PathLike)):
        return [items]
    return [p for item in items for p in _paths(item)]


def same_file(a: PathArg, b: PathArg) -> bool:
    """Whether paths ``a`` and ``b`` name the same file: equal after resolving symbolic links,
    or (both existing) the same inode (hard links, bind mounts)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:                          # one of them does not exist (yet)
        return False


def refuse_overwriting_inputs(inputs: Iterable, outputs: Iterable) -> None:
    """Raise ValueError when an output path is one of the input files; ``inputs`` and
    ``outputs`` may hold None (an option not given) and nested lists."""
    for output in _paths(outputs):
        for given in _paths(inputs):
            if same_file(output, given):
                shown = f"{output}" if os.fspath(output) == os.fspath(given) else f"{output} (= {given})"
                raise ValueError(f"{shown}: refusing to write over an input file of this command; "
                                 f"choose another output path")


def plain_json(obj):
    """``obj`` as JSON values: dicts (keys as str), lists, str, bool, int, finite floats and None
    (for NaN/±inf, see the module docstring); numpy scalars and arrays converted, tuples as lists,
    complex numbers as [real, imag]."""
    if isinstance(obj, dict):
        return {str(k): plain_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return plain_json(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, (complex, np.complexfloating)):
        return [plain_json(obj.real), plain_json(obj.imag)]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: PathArg, obj, indent: Optional[int] = 1) -> None:
    """Write ``obj`` to ``path`` as strict JSON (see the module docstring: no NaN, null = no number)."""
    Path(path).write_text(json.dumps(plain_json(obj), indent=indent, allow_nan=False) + "\n")
