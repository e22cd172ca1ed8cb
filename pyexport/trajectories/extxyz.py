"""Extended XYZ trajectories (ASE's writer, i-PI, many MD codes) as :mod:`pyexport.trajectories`
frames.

Each frame keeps its symbols, positions (Å), cell and pbc; ``info["timestep"]`` is the frame's
``timestep`` (or ``step``) key where it has one, else its position in the file; ``id`` is 1..N
(extxyz rows keep their order from frame to frame); per-atom arrays of the file stay in
``atoms.arrays``. ``types`` is not needed (extxyz names the elements). The whole file is parsed
at once (ASE's parser seeks back, so it never reads a compressed stream directly): fine for the
trajectories this format is used for; long runs belong in LAMMPS dumps.
"""
import warnings
from typing import Iterator

import ase.io
import numpy as np
from ase import Atoms

from ..data.dataset import decompressed_text


def iread(path, types=None, index=":") -> Iterator[Atoms]:
    if types is not None:
        warnings.warn(f"{path}: extxyz names its elements; the type map {types!r} is not used", stacklevel=2)
    frames = ase.io.read(decompressed_text(path), index=":", format="extxyz")
    positions = list(range(len(frames)))
    if isinstance(index, int) or (isinstance(index, str) and ":" not in index):
        k = int(index)
        if not -len(frames) <= k < len(frames):
            raise IndexError(f"{path}: no frame {k} (the file has {len(frames)})")
        chosen = [positions[k]]
    else:
        if isinstance(index, str):
            parts = [int(p) if p.strip() else None for p in index.split(":")]
            index = slice(*parts)
        chosen = positions[index]
    for position in chosen:
        atoms = frames[position]
        if not np.all(np.isfinite(atoms.positions)):
            raise ValueError(f"{path}: frame {position} has a coordinate that is NaN or infinite")
        atoms.info["timestep"] = int(atoms.info.get("timestep", atoms.info.get("step", position)))
        if "id" not in atoms.arrays:
            atoms.new_array("id", np.arange(1, len(atoms) + 1, dtype=np.int64))
        yield atoms
