"""MD trajectories by file format: the one place where a trajectory reader is registered.

    from pyexport.trajectories import iread
    for atoms in iread("md.dump.gz", types="Cs,Pb,Br", index="100::10"): ...

Every reader is a function ``iread(path, types=None, index=":") -> Iterator[ase.Atoms]`` that
yields the frames as :mod:`pyexport.lammps.dump` documents them: positions (Å), cell, pbc,
``info["timestep"]`` (int), per-atom columns in ``atoms.arrays`` under LAMMPS's names (``id``,
``type``, ``vx vy vz`` in Å/ps, EFG columns ``c_efg[1]`` ...), frames selected by ``index``
(ASE's 'start:stop:step' convention), a clear error naming file and frame for corrupt input,
and every complete frame kept (with a warning) when a file is cut short. ``efg analyze``,
``pyexport select`` and ``vasp-inputs`` read trajectories through :func:`iread` here.

A new format is one module with such a function and one line in :data:`READERS` (plus its file
suffixes in :data:`SUFFIXES` when the format can be told from the name):

- ``lammps-dump``: LAMMPS text dumps, plain or gzip/bzip2/xz (:mod:`pyexport.lammps.dump`);
- ``extxyz``: extended XYZ trajectories (:mod:`pyexport.trajectories.extxyz`).
"""
from importlib import import_module
from os import PathLike
from pathlib import Path
from typing import Iterator, List, Optional, Union

from ase import Atoms

#: format name -> module whose ``iread`` reads it (imported when first used).
READERS = {
    "lammps-dump": "pyexport.lammps.dump",
    "extxyz": "pyexport.trajectories.extxyz",
}

#: file-name suffixes (compression suffixes stripped) -> format; anything else is a LAMMPS dump.
SUFFIXES = {".extxyz": "extxyz", ".xyz": "extxyz"}

DEFAULT_FORMAT = "lammps-dump"
_COMPRESSION = (".gz", ".bz2", ".xz")


def trajectory_format(path: Union[str, PathLike], format: Optional[str] = None) -> str:
    """The format of ``path``: ``format`` if given (checked), else by suffix, else a LAMMPS dump."""
    if format is not None:
        if format not in READERS:
            raise ValueError(f"unknown trajectory format {format!r}; known: {', '.join(sorted(READERS))}")
        return format
    name = Path(path).name.lower()
    for suffix in _COMPRESSION:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return SUFFIXES.get(Path(name).suffix, DEFAULT_FORMAT)


def iread(path: Union[str, PathLike], types=None, index=":", format: Optional[str] = None) -> Iterator[Atoms]:
    """The frames of a trajectory (module docstring), read by the reader of its format."""
    return import_module(READERS[trajectory_format(path, format)]).iread(path, types=types, index=index)


def read_frames(path: Union[str, PathLike], types=None, index=":", format: Optional[str] = None) -> List[Atoms]:
    """All selected frames of :func:`iread` as a list (holds them all in memory)."""
    return list(iread(path, types=types, index=index, format=format))
