"""Reader for VASP's ``vasprun.xml``.

Returns ``list[ase.Atoms]`` following the convention in
:mod:`pyexport.data.dataset`; machine-learned, partly printed and
SCF-unconverged steps are treated as described in
:mod:`pyexport.data.vasp_common`.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET

import numpy as np
from ase.data import chemical_symbols

from .dataset import (
    EV_PER_A3_PER_KBAR,
    ParseError,
    check_symbol,
    make_atoms,
    open_binary,
    open_text,
    vasp_kbar_to_stress,
)
from .vasp_common import check_options, potcar_element, report_incomplete, screen_unconverged

__all__ = ["read_vasprun"]

_log = logging.getLogger(__name__)


def read_vasprun(path, incomplete="error", unconverged="warn"):
    """Every ab-initio ionic step of a ``vasprun.xml`` (plain or compressed).

    ``step`` in ``atoms.info["source"]`` is the 1-based index of the
    ``<calculation>`` element, i.e. VASP's ionic step number. The energy is
    ``e_fr_energy`` of the step minus the ``PSTRESS`` p·V term that VASP adds
    to it there (the same correction ASE applies); ``atoms.info["energy_sigma0"]``
    is that energy shifted by the last electronic step's
    ``e_0_energy - e_fr_energy`` (the step-level ``e_0_energy`` is wrong in
    VASP 5.4). A file cut off inside a step (the run was killed) is treated
    as described in :mod:`pyexport.data.vasp_common`; any other XML error raises
    :class:`ParseError` at its line.
    """
    check_options(incomplete, unconverged)
    frames, symbols, pstress_kbar, nelm = [], None, 0.0, None
    n_calculations, ml_steps = 0, 0
    source = open_binary(path)
    try:
        for _event, elem in ET.iterparse(source, events=("end",)):
            if elem.tag == "atominfo":
                symbols = _vasprun_symbols(elem, path)
            elif elem.tag == "parameters":
                pstress_kbar = _vasprun_parameter(elem, "PSTRESS", pstress_kbar)
                nelm = _vasprun_parameter(elem, "NELM", nelm)
            elif elem.tag == "calculation":
                n_calculations += 1
                if symbols is None:
                    raise ParseError(path, _calculation_line(path, n_calculations),
                                     "<calculation> before <atominfo>")
                atoms = _vasprun_step(elem, symbols, pstress_kbar, nelm, path,
                                      n_calculations)
                if atoms is None:
                    ml_steps += 1
                else:
                    frames.append(atoms)
                elem.clear()
    except (ET.ParseError, EOFError) as err:
        # EOFError: a compressed (gzip/bz2/xz) file cut short
        n_lines = _count_lines(path)
        line = err.position[0] if isinstance(err, ET.ParseError) else n_lines
        if line < n_lines:
            raise ParseError(path, line, f"malformed XML: {err}") from None
        report_incomplete(
            path, incomplete, line,
            f"file ends inside ionic step {n_calculations + 1} (line {line}): "
            f"the run stopped before VASP finished vasprun.xml; "
            f"{len(frames)} complete steps precede it")
    finally:
        source.close()
    if ml_steps:
        _log.info("%s: left out %d machine-learned (no <scstep>) steps",
                  path, ml_steps)
    if not frames:
        raise ParseError(path, None, "no complete ab-initio <calculation> found")
    return screen_unconverged(path, frames, unconverged, nelm)

def _vasprun_symbols(atominfo, path):
    """One symbol per ion from ``<atominfo>``.

    VASP writes the element there in 2 characters, from the POSCAR/POTCAR
    name, and some versions cut it ("X" for Xe); such a name is replaced by the
    element of the type's pseudopotential title, if that is an element.
    """
    rows = atominfo.findall("array[@name='atoms']/set/rc")
    if not rows:
        raise ParseError(path, None, "<atominfo> has no atoms array")
    types = atominfo.findall("array[@name='atomtypes']/set/rc")
    symbols = []
    for rc in rows:
        symbol, type_index = rc[0].text.strip(), int(rc[1].text)
        if symbol not in chemical_symbols[1:] and 0 < type_index <= len(types):
            row = types[type_index - 1]
            from_potcar = potcar_element(row[-1].text or "")
            if from_potcar and from_potcar.startswith(symbol):
                symbol = from_potcar
        symbols.append(check_symbol(symbol, path, None))
    return symbols


def _vasprun_parameter(parameters, name, default):
    """The first value of ``name`` in ``<parameters>`` (PSTRESS kbar, NELM)."""
    for item in parameters.iter("i"):
        if item.get("name") == name:
            return int(item.text) if item.get("type") == "int" else float(item.text)
    return default


def _vasprun_step(calc, symbols, pstress_kbar, nelm, path, number):
    """One ``<calculation>`` as Atoms, or None for a machine-learned step."""
    scsteps = calc.findall("scstep")
    if not scsteps:
        return None
    # VASP prints the full energy terms (alphaZ, ...) for the first and last
    # electronic step; the <scstep>s after the last such one belong to the
    # linear-response loops (LEPSILON, LCHIMAG), which print only energies.
    full = [i for i, sc in enumerate(scsteps)
            if sc.find("energy/i[@name='alphaZ']") is not None]
    scf = scsteps[:full[-1] + 1] if full else scsteps

    def need(xpath, what):
        elem = calc.find(xpath)
        if elem is None:
            raise ParseError(path, _calculation_line(path, number),
                             f"ionic step {number} has no {what}")
        return elem

    n = len(symbols)
    cell = _varray(need("structure/crystal/varray[@name='basis']", "lattice"),
                   3, path, number, "lattice")
    fractional = _varray(need("structure/varray[@name='positions']", "positions"),
                         n, path, number, "positions")
    forces = _varray(need("varray[@name='forces']", "forces"), n, path, number,
                     "forces")
    stress_elem = calc.find("varray[@name='stress']")
    stress = None
    if stress_elem is not None:
        s = _varray(stress_elem, 3, path, number, "stress")
        # VASP's upper triangle, as its OUTCAR "in kB" line prints it.
        stress = vasp_kbar_to_stress(s[0, 0], s[1, 1], s[2, 2],
                                     s[0, 1], s[1, 2], s[0, 2])
    e_fr = _xml_float(need("energy/i[@name='e_fr_energy']", "e_fr_energy"),
                      path, number)
    last = scf[-1]
    sc_fr = last.find("energy/i[@name='e_fr_energy']")
    sc_0 = last.find("energy/i[@name='e_0_energy']")
    volume = abs(np.linalg.det(cell))
    # e_fr_energy of the step is an enthalpy: it includes PSTRESS * V.
    free_energy = e_fr - pstress_kbar * EV_PER_A3_PER_KBAR * volume
    energy_sigma0 = None
    if sc_fr is not None and sc_0 is not None:
        energy_sigma0 = free_energy + (_xml_float(sc_0, path, number)
                                       - _xml_float(sc_fr, path, number))
    atoms = make_atoms(symbols, cell, fractional @ cell, free_energy, forces,
                       stress, energy_sigma0=energy_sigma0,
                       source={"file": str(path), "format": "vasprun",
                               "step": number})
    if nelm is not None:
        atoms.info["scf_converged"] = len(scf) < nelm
    return atoms


def _varray(elem, rows, path, number, what):
    values = [v.text.split() for v in elem.findall("v")]
    try:
        array = np.array(values, dtype=float)
    except ValueError:
        raise ParseError(path, _calculation_line(path, number),
                         f"ionic step {number}: non-numeric {what} "
                         f"(VASP overflow '****'?)") from None
    if array.shape != (rows, 3):
        raise ParseError(path, _calculation_line(path, number),
                         f"ionic step {number}: {what} has shape {array.shape}, "
                         f"expected ({rows}, 3)")
    return array


def _xml_float(elem, path, number):
    try:
        return float(elem.text)
    except (TypeError, ValueError):
        raise ParseError(path, _calculation_line(path, number),
                         f"ionic step {number}: {elem.get('name')} is "
                         f"{elem.text!r}") from None


def _calculation_line(path, number):
    """Line of the ``number``-th ``<calculation>`` start tag (only looked up
    when an error is reported, so reads stay single-pass)."""
    seen = 0
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            seen += line.count("<calculation>")
            if seen >= number:
                return lineno
    return None


def _count_lines(path):
    """Lines in ``path`` (those before the break of a compressed file cut short)."""
    count = 0
    with open_text(path) as fh:
        try:
            for _ in fh:
                count += 1
        except EOFError:
            pass
    return count
