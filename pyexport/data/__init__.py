"""DFT training data: VASP vasprun.xml, OUTCAR (with EFG tables), ML_AB, extended XYZ.

Example::

    from pyexport.data import read
    frames = read("vasprun.xml")                # format from the name or content
    frames[0].get_potential_energy()            # eV, force-consistent free energy
    frames[0].get_forces(), frames[0].get_stress()   # eV/Å, eV/Å³ (ASE sign)
    frames[0].info["source"]                    # {"file": ..., "format": ..., "step": ...}

See :mod:`pyexport.data.dataset` for the convention every reader follows and
:mod:`pyexport.data.vasp_common` for how partly printed, machine-learned and
SCF-unconverged VASP steps are treated (``incomplete="error"`` by default,
``"warn"`` to keep the complete steps; ``unconverged="warn"`` by default,
``"drop"`` to leave SCF-unconverged steps out). :func:`read_options` sets
those two for every :func:`read` inside a block; the pyexport commands that
read DFT data set it from ``--incomplete`` and ``--unconverged``.
"""

import contextlib
import contextvars

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
from .outcar import read_outcar
from .vasp_common import INCOMPLETE_CHOICES, UNCONVERGED_CHOICES
from .vasprun import read_vasprun

__all__ = [
    "FORMATS", "INCOMPLETE_CHOICES", "UNCONVERGED_CHOICES", "IncompleteDataWarning", "MLABHeader", "ParseError", "read",
    "read_extxyz", "read_mlab", "read_mlab_with_header", "read_outcar",
    "read_options", "read_vasprun", "sniff_format", "UnconvergedSCFWarning",
]

_READERS = {
    "vasprun": read_vasprun,
    "outcar": read_outcar,
    "mlab": read_mlab,
    "extxyz": read_extxyz,
}


#: Formats whose readers take ``incomplete=`` and ``unconverged=``.
_VASP_FORMATS = ("vasprun", "outcar")
_VASP_OPTION_DEFAULTS = contextvars.ContextVar("vasp_read_options", default={})


@contextlib.contextmanager
def read_options(incomplete=None, unconverged=None):
    """Within the block, :func:`read` of VASP files uses these as defaults for
    ``incomplete=`` and ``unconverged=`` (None: leave as is); an option passed
    to :func:`read` itself still wins. This is how a command-line flag reaches
    every file a command reads."""
    given = {"incomplete": incomplete, "unconverged": unconverged}
    for name, value, choices in (("incomplete", incomplete, INCOMPLETE_CHOICES),
                                 ("unconverged", unconverged, UNCONVERGED_CHOICES)):
        if value is not None and value not in choices:
            raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    token = _VASP_OPTION_DEFAULTS.set(
        {**_VASP_OPTION_DEFAULTS.get(), **{k: v for k, v in given.items() if v is not None}})
    try:
        yield
    finally:
        _VASP_OPTION_DEFAULTS.reset(token)


def read(path, format=None, **options):
    """All dataset entries in ``path`` as ``list[ase.Atoms]``.

    ``format``: one of ``FORMATS`` ("vasprun", "outcar", "mlab", "extxyz"; ASE
    names "vasp-xml", "vasp-out", "xyz" are accepted too), or None to
    recognise it from the file name and content. ``options`` go to the
    format's reader (``incomplete=`` and ``unconverged=`` for vasprun and
    outcar, defaulting to those of an enclosing :func:`read_options`).
    """
    fmt = sniff_format(path) if format is None else normalize_format(format)
    if fmt in _VASP_FORMATS:
        options = {**_VASP_OPTION_DEFAULTS.get(), **options}
    return _READERS[fmt](path, **options)
