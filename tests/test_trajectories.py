"""Trajectory readers by format (pyexport.trajectories): the registry picks the reader by suffix or
name, and the extxyz reader gives the frames of a real LAMMPS dump back as the dump reader does
(positions, cell, timesteps, ids, index selection)."""
import os

import ase.io
import numpy as np
import pytest

from pyexport.lammps.dump import read_frames as read_dump
from pyexport.trajectories import READERS, iread, read_frames, trajectory_format

DATA = os.path.join(os.path.dirname(__file__), "data")
DUMP = os.path.join(DATA, "mdanalysis", "image_vf.lammpstrj")     # real LAMMPS dump, unsorted ids


def test_format_by_name_and_suffix():
    assert trajectory_format("md.lammpstrj") == "lammps-dump"
    assert trajectory_format("md.dump.gz") == "lammps-dump"
    assert trajectory_format("md.extxyz.xz") == "extxyz"
    assert trajectory_format("frames.xyz") == "extxyz"
    assert trajectory_format("frames.txt", format="extxyz") == "extxyz"
    assert set(READERS) >= {"lammps-dump", "extxyz"}
    with pytest.raises(ValueError, match="unknown trajectory format 'netcdf'; known: extxyz, lammps-dump"):
        trajectory_format("md.nc", format="netcdf")


def test_extxyz_frames_match_the_dump_they_were_written_from(tmp_path):
    frames = read_dump(DUMP, types=["H", "O"])
    out = tmp_path / "md.extxyz"
    for atoms in frames:
        atoms.info = {"timestep": atoms.info["timestep"]}
        for name in list(atoms.arrays):
            if name not in ("numbers", "positions"):
                del atoms.arrays[name]
    ase.io.write(out, frames, format="extxyz")
    again = read_frames(out)
    assert len(again) == len(frames)
    for a, b in zip(again, frames):
        assert a.info["timestep"] == b.info["timestep"]
        assert np.allclose(a.positions, b.positions, rtol=0, atol=1e-12)
        assert np.allclose(a.cell.array, b.cell.array, rtol=0, atol=1e-12)
        assert a.arrays["id"].tolist() == list(range(1, len(a) + 1))
    picked = [a.info["timestep"] for a in iread(out, index="1::2")]
    assert picked == [b.info["timestep"] for b in frames[1::2]]
    assert [a.info["timestep"] for a in iread(out, index=-1)] == [frames[-1].info["timestep"]]
    with pytest.raises(IndexError, match="no frame 99"):
        list(iread(out, index=99))
