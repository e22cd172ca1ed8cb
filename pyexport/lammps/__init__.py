"""LAMMPS files that both layers need (text only, no LAMMPS library calls).

- :mod:`.data_file`: write ASE structures as LAMMPS data files (cell rotated into LAMMPS's frame);
- :mod:`.type_maps`: type → element maps from data files, input scripts or ``'Cs,Pb,Br'``;
- :mod:`.dump`: the streaming reader of text dumps (``iread``, ``read_frames``, ``count_frames``),
  built on :mod:`.line_blocks` (lines of plain/compressed files in blocks) and
  :mod:`.atom_rows` (atom rows → float64 through pandas' C reader).

A reader for another trajectory format (``dump netcdf``, an extxyz variant) is one more module
here returning :class:`ase.Atoms` frames like :func:`.dump.iread`.
"""
