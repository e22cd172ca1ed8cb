"""DFT training data: VASP vasprun.xml, OUTCAR (with EFG tables), ML_AB, extended XYZ.

Example::

    from pyexport.data import read
    frames = read("vasprun.xml")                # format from the name or content
    frames[0].get_potential_energy()            # eV, force-consistent free energy
    frames[0].get_forces(), frames[0].get_stress()   # eV/Å, eV/Å³ (ASE sign)
    frames[0].info["source"]                    # {"file": ..., "format": ..., "step": ...}

See :mod:`pyexport.data.dataset` for the convention every reader follows and
:mod:`pyexport.data.vasp` for how partly printed and machine-learned VASP
steps are treated (``incomplete="error"`` by default, ``"warn"`` to keep the
complete steps).
"""

from .dataset import (
    FORMATS,
    IncompleteDataWarning,
    ParseError,
    UnconvergedSCFWarning,
    normalize_format,
    sniff_format,
)
from .extxyz import read_extxyz
from .mlab import MLABHeader, read_mlab, read_mlab_with_header
from .vasp import read_outcar, read_vasprun

__all__ = [
    "FORMATS", "IncompleteDataWarning", "MLABHeader", "ParseError", "read",
    "read_extxyz", "read_mlab", "read_mlab_with_header", "read_outcar",
    "read_vasprun", "sniff_format", "UnconvergedSCFWarning",
]

_READERS = {
    "vasprun": read_vasprun,
    "outcar": read_outcar,
    "mlab": read_mlab,
    "extxyz": read_extxyz,
}


def read(path, format=None, **options):
    """All dataset entries in ``path`` as ``list[ase.Atoms]``.

    ``format``: one of ``FORMATS`` ("vasprun", "outcar", "mlab", "extxyz"; ASE
    names "vasp-xml", "vasp-out", "xyz" are accepted too), or None to
    recognise it from the file name and content. ``options`` go to the
    format's reader (``incomplete=`` for vasprun and outcar).
    """
    fmt = sniff_format(path) if format is None else normalize_format(format)
    return _READERS[fmt](path, **options)
