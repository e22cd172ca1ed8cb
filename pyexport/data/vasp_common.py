"""What the VASP readers (:mod:`pyexport.data.vasprun`, :mod:`pyexport.data.outcar`) share:
how they treat steps that are not complete ab-initio data, and POTCAR titles.

Both return ``list[ase.Atoms]`` following the convention in
:mod:`pyexport.data.dataset`: one entry per ab-initio ionic step, energy = the
force-consistent free energy (eV), forces (eV/Å), stress (eV/Å³, ASE sign) when
VASP computed it.

Steps that are not complete ab-initio data are never dropped silently:

- machine-learned steps of on-the-fly MLFF runs (VASP >= 6.3) are not DFT data
  and are always left out (OUTCAR: the ``ML FREE ENERGIE`` / ``TOTAL-FORCE (eV/Angst) (ML)``
  blocks; vasprun.xml: ``<calculation>`` elements without an electronic
  ``<scstep>``); the number left out is logged at INFO level;
- steps VASP printed only partly -- energy without positions and forces
  (``NWRITE`` = 0 or 1 prints the force table for the first and last ionic
  step only), or a last step cut off by the end of the file (a run killed
  mid-step, also in the middle of a line) -- raise
  :class:`~pyexport.data.dataset.ParseError` naming the file and line, unless
  ``incomplete="warn"``: then the complete steps are returned and an
  :class:`~pyexport.data.dataset.IncompleteDataWarning` lists the steps left
  out. The linear-response loops of LEPSILON and LCHIMAG runs print
  ``Iteration`` headers after the last ionic step; they are no ionic step,
  and only a run killed inside them (no timing summary at the end) is
  reported, as such.

Steps whose electronic loop ran all ``NELM`` steps are SCF-unconverged: their
energies and forces are not those of the electronic ground state (they can be
off by hundreds of eV). Each entry records ``atoms.info["scf_converged"]``; an
:class:`~pyexport.data.dataset.UnconvergedSCFWarning` gives how many steps and
which, and ``unconverged="drop"`` leaves them out (default ``"warn"``: kept).
"""

from __future__ import annotations

import re
import warnings

from .dataset import IncompleteDataWarning, ParseError, UnconvergedSCFWarning

__all__ = [
    "INCOMPLETE_CHOICES", "UNCONVERGED_CHOICES", "check_options", "potcar_element",
    "report_incomplete", "screen_unconverged", "step_ranges",
]

INCOMPLETE_CHOICES = ("error", "warn")
UNCONVERGED_CHOICES = ("warn", "drop")


def check_options(incomplete, unconverged):
    if incomplete not in INCOMPLETE_CHOICES:
        raise ValueError(f"incomplete must be one of {INCOMPLETE_CHOICES}, "
                         f"got {incomplete!r}")
    if unconverged not in UNCONVERGED_CHOICES:
        raise ValueError(f"unconverged must be one of {UNCONVERGED_CHOICES}, "
                         f"got {unconverged!r}")


def screen_unconverged(path, frames, unconverged, nelm):
    """``frames`` less the SCF-unconverged ones if ``unconverged="drop"``; a
    warning with their count either way."""
    bad = [a for a in frames if a.info.get("scf_converged") is False]
    if not bad:
        return frames
    steps = step_ranges(a.info["source"]["step"] for a in bad)
    reason = (f"{len(bad)} of {len(frames)} ionic steps ({steps}) are "
              f"SCF-unconverged (the electronic loop ran all NELM = {nelm} "
              f"steps): their energies and forces are not ground-state values")
    if unconverged == "drop":
        kept = [a for a in frames if a.info.get("scf_converged") is not False]
        if not kept:
            raise ParseError(path, None, reason + "; no converged step is left")
        warnings.warn(f"{path}: {reason}; left out", UnconvergedSCFWarning,
                      stacklevel=3)
        return kept
    warnings.warn(f"{path}: {reason}; kept them (unconverged='drop', or "
                  f"--unconverged drop on pyexport commands, leaves them out)",
                  UnconvergedSCFWarning, stacklevel=3)
    return frames


def step_ranges(numbers):
    """'2-9, 12' for [2, 3, ..., 9, 12]."""
    parts, start, prev = [], None, None
    for n in list(numbers) + [None]:
        if start is not None and n is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = n
    return ", ".join(parts)


def report_incomplete(path, incomplete, line, message):
    if incomplete == "error":
        raise ParseError(path, line, message + "; to read the complete steps "
                         "only, pass incomplete='warn' (pyexport commands: "
                         "--incomplete warn)")
    warnings.warn(f"{path}: {message}; returning only the complete steps",
                  IncompleteDataWarning, stacklevel=3)


def potcar_element(title):
    """The element of a POTCAR title: "PAW_PBE Ca_pv 06Sep2000" -> "Ca" (None
    if the second word does not start like a symbol)."""
    tokens = title.split()
    match = re.match(r"[A-Z][a-z]?", tokens[1]) if len(tokens) >= 2 else None
    return match.group(0) if match else None
