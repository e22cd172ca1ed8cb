"""What every DFT data reader shares: the dataset convention, the error type,
opening (possibly compressed) files, and recognising a file's format.

The dataset convention
----------------------
Every reader returns ``list[ase.Atoms]``, one entry per ab-initio step or
configuration, each with a :class:`~ase.calculators.singlepoint.SinglePointCalculator`
holding

- ``energy`` and ``free_energy``: both the force-consistent free energy in eV
  (VASP's ``free  energy   TOTEN`` / ``e_fr_energy``, the energy whose
  derivatives the printed forces are). ``atoms.info["energy_sigma0"]`` keeps
  VASP's ``energy(sigma->0)`` where the file has it. Note that ASE's own VASP
  readers put ``energy(sigma->0)`` in ``energy``: ``get_potential_energy()``
  differs from ASE's for smeared (ISMEAR >= 0, SIGMA > 0) metals, while
  ``get_potential_energy(force_consistent=True)`` agrees.
- ``forces``: (N, 3) eV/Å.
- ``stress``: (6,) eV/Å³, ASE sign and Voigt order (xx, yy, zz, yz, xz, xy),
  when the file has one; absent otherwise.

``atoms.info["source"] = {"file": str, "format": str, "step": int}`` says where
the entry came from (``step`` is 1-based: VASP's ionic step number, the
ML_AB configuration number, or the extxyz frame number), plus ``"line"``, the
1-based line where the entry's energy is printed, for line-oriented formats.
Per-atom EFG tensors, where the file has them, are in ``atoms.arrays["efg"]``,
shape (N, 3, 3), V/Å². VASP readers set ``atoms.info["scf_converged"]`` (False
for a step whose electronic loop ran all NELM steps) where the file tells.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import re
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import chemical_symbols
from ase.units import GPa

#: eV/Å³ in one kbar (= 0.1 GPa).
EV_PER_A3_PER_KBAR = 0.1 * GPa

#: Canonical format names accepted by :func:`pyexport.data.read`.
FORMATS = ("vasprun", "outcar", "mlab", "extxyz")

_FORMAT_ALIASES = {
    "vasprun": "vasprun", "vasp-xml": "vasprun", "xml": "vasprun",
    "outcar": "outcar", "vasp-out": "outcar",
    "mlab": "mlab", "ml_ab": "mlab", "ml_abn": "mlab",
    "extxyz": "extxyz", "xyz": "extxyz",
}

# A Fortran real: optional sign, digits with a decimal point (either side may
# be empty), optional exponent. Matching instead of splitting on blanks is what
# separates fixed-width fields that VASP prints fused, e.g. "0.000-19.396".
FLOAT_PATTERN = r"[-+]?(?:\d+\.\d*|\.\d+)(?:[EeDd][-+]?\d+)?"
_FLOAT = re.compile(FLOAT_PATTERN)


class ParseError(ValueError):
    """A data file that cannot be read as its format says.

    The message starts with ``"<file>:<line>: "``; the file and the 1-based line
    number are also kept as :attr:`path` and :attr:`line` (``None`` where no
    single line is to blame).
    """

    def __init__(self, path, line, message):
        self.path = str(path)
        self.line = line
        self.reason = message
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {message}")


class IncompleteDataWarning(UserWarning):
    """Steps without the data a dataset entry needs were left out on request
    (``incomplete="warn"``); the message says which."""


class UnconvergedSCFWarning(UserWarning):
    """Ionic steps whose electronic (SCF) loop stopped at NELM without converging
    were found; they were kept (``unconverged="warn"``) or left out
    (``unconverged="drop"``), as the message says."""


def parse_floats(text, count, path, line, what):
    """The ``count`` real numbers in ``text`` as a float64 array.

    Raises :class:`ParseError` at ``path:line`` naming ``what`` when the text
    holds any other number of reals (VASP's ``*****`` overflow included).
    """
    found = _FLOAT.findall(text)
    # Anything besides the numbers and blanks (a letter, '*****') is an error,
    # not something to skip.
    if len(found) != count or _FLOAT.sub(" ", text).strip():
        raise ParseError(path, line, f"expected {count} numbers for {what}, "
                                     f"found {text.strip()!r}")
    return np.array([f.replace("D", "E").replace("d", "e") for f in found],
                    dtype=float)


def check_symbol(symbol, path, line):
    """``symbol`` if it is a chemical element, else :class:`ParseError`."""
    if symbol not in chemical_symbols[1:]:
        raise ParseError(path, line, f"{symbol!r} is not a chemical element")
    return symbol


def vasp_kbar_to_stress(xx, yy, zz, xy, yz, zx):
    """ASE stress (6,) in eV/Å³ from VASP's kbar components.

    VASP prints ``-stress`` (positive = compressed, the convention of its
    "in kB" line and "external pressure"); ASE's stress is the physical one,
    in Voigt order (xx, yy, zz, yz, xz, xy).
    """
    return -EV_PER_A3_PER_KBAR * np.array([xx, yy, zz, yz, zx, xy], dtype=float)


def make_atoms(symbols, cell, positions, energy, forces, stress=None, *,
               source, energy_sigma0=None):
    """One dataset entry (see the module docstring for the convention).

    ``positions`` are Cartesian Å, ``cell`` rows are lattice vectors in Å,
    ``energy`` the free energy in eV, ``forces`` (N, 3) eV/Å, ``stress`` (6,)
    eV/Å³ in ASE's convention or ``None``; ``source`` the provenance dict.
    """
    atoms = Atoms(symbols=list(symbols), cell=np.asarray(cell, dtype=float),
                  positions=np.asarray(positions, dtype=float), pbc=True)
    results = {"energy": float(energy), "free_energy": float(energy),
               "forces": np.asarray(forces, dtype=float)}
    if stress is not None:
        results["stress"] = np.asarray(stress, dtype=float)
    atoms.calc = SinglePointCalculator(atoms, **results)
    atoms.info["source"] = dict(source)
    if energy_sigma0 is not None:
        atoms.info["energy_sigma0"] = float(energy_sigma0)
    return atoms


def open_binary(path):
    """``path`` opened for reading bytes, decompressed if it is gzip, bzip2 or
    xz (recognised by content, whatever the name)."""
    path = Path(path)
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(path, "rb")
    if magic.startswith(b"BZh"):
        return bz2.open(path, "rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(path, "rb")
    return open(path, "rb")


def open_text(path, encoding="latin-1"):
    """``path`` as text, decompressed as in :func:`open_binary`.

    VASP writes ASCII; latin-1 decodes any byte, so a stray byte in a free-text
    field never stops a read.
    """
    return io.TextIOWrapper(open_binary(path), encoding=encoding, newline=None)


def decompressed_text(path, encoding="utf-8"):
    """The whole of ``path`` as an in-memory text file, decompressed as in :func:`open_binary`.

    Use it where a parser seeks backwards (ASE's extxyz reader seeks to every frame start): in an
    xz or gzip stream each backward seek restarts the decompression, which turns one read into
    a quadratic one (70 s instead of 2 s for the shipped 3.6 MB CsPbBr3 set).
    """
    with open_text(path, encoding=encoding) as fh:
        return io.StringIO(fh.read())


def normalize_format(name):
    """The canonical format name for ``name`` (case-insensitive, aliases
    allowed), or ValueError listing the accepted ones."""
    key = str(name).lower()
    if key not in _FORMAT_ALIASES:
        raise ValueError(f"unknown data format {name!r}; accepted: "
                         f"{', '.join(FORMATS)}")
    return _FORMAT_ALIASES[key]


def sniff_format(path):
    """Guess the format of ``path``: by name first, then by content.

    Names: ``vasprun*.xml``, ``OUTCAR*``, ``ML_AB*``, ``*.extxyz``, ``*.xyz``
    (a trailing ``.gz``, ``.bz2`` or ``.xz`` is ignored). Content: an XML
    ``<modeling>`` document, a VASP banner on line 1, an ML_AB header, or an
    atom count followed by an extended-XYZ comment line.
    """
    path = Path(path)
    name = re.sub(r"\.(gz|bz2|xz)$", "", path.name, flags=re.IGNORECASE)
    lower = name.lower()
    if lower.startswith("vasprun") and lower.endswith(".xml"):
        return "vasprun"
    if name.startswith("OUTCAR"):
        return "outcar"
    if name.startswith("ML_AB"):
        return "mlab"
    if lower.endswith((".extxyz", ".xyz")):
        return "extxyz"
    guess = _sniff_content(path)
    if guess is None:
        raise ValueError(
            f"{path}: cannot tell the data format from the name or content; "
            f"pass format= one of {', '.join(FORMATS)} (vasprun: vasprun.xml, "
            f"outcar: VASP OUTCAR, mlab: VASP ML_AB/ML_ABN, extxyz: extended XYZ)")
    return guess


def _sniff_content(path):
    with open_text(path) as fh:
        head = fh.read(4096)
    lines = head.splitlines()
    if "<modeling" in head:
        return "vasprun"
    if lines and lines[0].lstrip().startswith("vasp."):
        return "outcar"
    if "The number of configurations" in head and "Version" in head:
        return "mlab"
    if len(lines) >= 2 and lines[0].strip().isdigit() and (
            "Lattice=" in lines[1] or "Properties=" in lines[1]):
        return "extxyz"
    return None
