"""Readers for VASP output: ``vasprun.xml`` and ``OUTCAR`` (with its EFG tables).

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

import logging
import re
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import numpy as np
from ase.data import chemical_symbols

from .dataset import (
    EV_PER_A3_PER_KBAR,
    FLOAT_PATTERN,
    IncompleteDataWarning,
    ParseError,
    UnconvergedSCFWarning,
    check_symbol,
    make_atoms,
    open_binary,
    open_text,
    parse_floats,
    vasp_kbar_to_stress,
)

__all__ = ["read_vasprun", "read_outcar"]

_log = logging.getLogger(__name__)

INCOMPLETE_CHOICES = ("error", "warn")
UNCONVERGED_CHOICES = ("warn", "drop")


def _check_options(incomplete, unconverged):
    if incomplete not in INCOMPLETE_CHOICES:
        raise ValueError(f"incomplete must be one of {INCOMPLETE_CHOICES}, "
                         f"got {incomplete!r}")
    if unconverged not in UNCONVERGED_CHOICES:
        raise ValueError(f"unconverged must be one of {UNCONVERGED_CHOICES}, "
                         f"got {unconverged!r}")


def _screen_unconverged(path, frames, unconverged, nelm):
    """``frames`` less the SCF-unconverged ones if ``unconverged="drop"``; a
    warning with their count either way."""
    bad = [a for a in frames if a.info.get("scf_converged") is False]
    if not bad:
        return frames
    steps = _step_ranges(a.info["source"]["step"] for a in bad)
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


def _step_ranges(numbers):
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


def _report_incomplete(path, incomplete, line, message):
    if incomplete == "error":
        raise ParseError(path, line, message + "; to read the complete steps "
                         "only, pass incomplete='warn' (pyexport commands: "
                         "--incomplete warn)")
    warnings.warn(f"{path}: {message}; returning only the complete steps",
                  IncompleteDataWarning, stacklevel=3)


# --------------------------------------------------------------------------
# vasprun.xml
# --------------------------------------------------------------------------

def read_vasprun(path, incomplete="error", unconverged="warn"):
    """Every ab-initio ionic step of a ``vasprun.xml`` (plain or compressed).

    ``step`` in ``atoms.info["source"]`` is the 1-based index of the
    ``<calculation>`` element, i.e. VASP's ionic step number. The energy is
    ``e_fr_energy`` of the step minus the ``PSTRESS`` p·V term that VASP adds
    to it there (the same correction ASE applies); ``atoms.info["energy_sigma0"]``
    is that energy shifted by the last electronic step's
    ``e_0_energy - e_fr_energy`` (the step-level ``e_0_energy`` is wrong in
    VASP 5.4). A file cut off inside a step (the run was killed) is treated
    as described in the module docstring; any other XML error raises
    :class:`ParseError` at its line.
    """
    _check_options(incomplete, unconverged)
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
        _report_incomplete(
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
    return _screen_unconverged(path, frames, unconverged, nelm)


def _potcar_element(title):
    """The element of a POTCAR title: "PAW_PBE Ca_pv 06Sep2000" -> "Ca" (None
    if the second word does not start like a symbol)."""
    tokens = title.split()
    match = re.match(r"[A-Z][a-z]?", tokens[1]) if len(tokens) >= 2 else None
    return match.group(0) if match else None


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
            from_potcar = _potcar_element(row[-1].text or "")
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


# --------------------------------------------------------------------------
# OUTCAR
# --------------------------------------------------------------------------

def read_outcar(path, incomplete="error", unconverged="warn"):
    """Every ab-initio ionic step of an OUTCAR (plain or compressed).

    Positions come from the ``POSITION  TOTAL-FORCE`` table (Cartesian, 5
    decimals as VASP prints them), the cell from the last ``direct lattice
    vectors`` block printed before it, stress from the step's ``in kB`` line
    (VASP >= 5.3 prints both before the step's energy, VASP 5.2 after it),
    energy from ``free  energy   TOTEN`` and ``atoms.info["energy_sigma0"]``
    from ``energy(sigma->0)`` (van der Waals runs: the values before ``w/o
    vdW``, and the ``TOTAL-FORCE`` columns of their 9-column table). Species
    come from the ``POTCAR:`` lines and ``ions per type``, checked against
    ``NIONS`` (VASP prints at most 10 counts: with more species the OUTCAR
    cannot say which ion is which, and the error points to vasprun.xml).
    ``step`` in ``atoms.info["source"]`` is VASP's ionic
    step number (the N of ``Iteration N(k)``); ``line`` is the TOTEN line.

    EFG output (``LEFG = .TRUE.``) is attached to the step it follows:
    ``atoms.arrays["efg"]`` (N, 3, 3) V/Å² from the raw ``Electric field
    gradients (V/A^2)`` table, and, as VASP printed them,
    ``efg_principal_vasp`` (N, 3) V/Å² (V_xx, V_yy, V_zz in VASP's order,
    |V_zz| > |V_xx| > |V_yy|), ``cq_vasp_mhz`` (N,), ``eta_vasp`` (N,) and
    ``quad_moment_mb`` (N,) from ``NMR quadrupolar parameters``.

    Machine-learned and partly printed steps: see the module docstring.
    """
    _check_options(incomplete, unconverged)
    with open_text(path) as fh:
        parser = _OutcarParser(path, fh)
        parser.run()
    return parser.result(incomplete, unconverged)


class _EndOfFile(Exception):
    """The file ended inside a table."""


class _Lines:
    """Forward reader over a text file that knows the current line number.

    A last line without its newline is what a killed job leaves (the file was
    cut in the middle of a line), and so is a compressed stream that stops
    early: both count as the end of the file, before that line.
    """

    def __init__(self, fh):
        self._it = iter(fh)
        self.number = 0
        self.cut_mid_line = False    # the last line had no newline

    def __iter__(self):
        return self

    def _next(self):
        try:
            line = next(self._it, None)
        except EOFError:          # gzip/bz2/xz stream cut short
            return None
        if line is None or not line.endswith("\n"):
            self.cut_mid_line = line is not None
            return None
        self.number += 1
        return line

    def __next__(self):
        line = self._next()
        if line is None:
            raise StopIteration
        return line

    def take(self):
        """The next line, inside a table: the file must not end here."""
        line = self._next()
        if line is None:
            raise _EndOfFile()
        return line


@dataclass
class _Step:
    """What the OUTCAR printed for one ab-initio ionic step."""
    number: int
    energy: float
    energy_line: int
    energy_sigma0: float | None
    cell: np.ndarray | None
    positions: np.ndarray | None
    forces: np.ndarray | None
    stress: np.ndarray | None
    scf_steps: int = 0               # electronic steps ('Iteration N(M)' headers)
    arrays: dict = field(default_factory=dict)


_ION_STEP = re.compile(r"Iteration\s*(\d+)\s*\(\s*(\d+)\s*\)")
# The 6 numbers (fixed-width fields, possibly fused) a force-table row starts with.
_SIX_NUMBERS = re.compile(r"\s*(?:" + FLOAT_PATTERN + r"\s*){5}" + FLOAT_PATTERN + r"(?=\s|$)")
# Linear-response switches (header "Linear response parameters"): their
# loops print "Iteration N(M)" headers after the last ionic step.
_RESPONSE_FLAG = re.compile(r"(LEPSILON|LCHIMAG)\s*=\s*([TF])\b")
_EFG_TABLES = {
    # title (stripped line) -> (name, numbers per ion after the ion index)
    "Electric field gradients (V/A^2)": ("raw", 6),
    "Electric field gradients after diagonalization (V/A^2)": ("principal", 4),
    "NMR quadrupolar parameters": ("nmr", 3),
}


class _OutcarParser:
    """Single forward pass over an OUTCAR; the steps end up in ``steps``."""

    def __init__(self, path, fh):
        self.path = path
        self.lines = _Lines(fh)
        self.potcar_symbols = []
        self.symbols = None
        self.nions = None            # NIONS of the first 'Dimension of arrays'
        self.vrhfin_lines = 0        # one per POTCAR type
        self.nwrite = None
        self.nelm = None
        self.cell = None
        self.ionic_step = 0          # last "Iteration N(" seen
        self.open_step_line = None   # its line while no energy closed it yet
        self.scf_steps = 0           # electronic steps of the open step so far
        self.stress_is_ml = False    # set by the last "FORCE on cell" header
        self.pending = {"ab": {}, "ml": {}}
        self.steps = []              # ab-initio steps, complete or not
        self.ml_steps = 0
        self.truncated_line = None   # where a table was cut by the end of file
        self.response = []           # LEPSILON / LCHIMAG set in the header
        self.response_line = None    # where the linear-response loops began
        self.finished = False        # VASP's closing timing summary was printed

    # -- the pass ---------------------------------------------------------
    def run(self):
        try:
            for line in self.lines:
                self._dispatch(line)
        except _EndOfFile:
            self.truncated_line = self.lines.number + self.lines.cut_mid_line

    def _dispatch(self, line):
        stripped = line.strip()
        if not stripped:
            return
        if stripped.startswith("POTCAR:"):
            self._potcar(stripped)
        elif stripped.startswith("VRHFIN"):
            self.vrhfin_lines += 1
        elif "NIONS" in stripped and self.nions is None:
            match = re.search(r"NIONS\s*=\s*(\d+)", stripped)
            self.nions = int(match.group(1)) if match else None
        elif stripped.startswith("ions per type"):
            self._ions_per_type(stripped)
        elif stripped.startswith("NWRITE") and self.nwrite is None:
            match = re.match(r"NWRITE\s*=\s*(\d+)", stripped)
            self.nwrite = int(match.group(1)) if match else None
        elif stripped.startswith("NELM") and self.nelm is None:
            match = re.match(r"NELM\s*=\s*(\d+)", stripped)
            self.nelm = int(match.group(1)) if match else None
        elif _RESPONSE_FLAG.match(stripped):
            self._response_flag(stripped)
        elif stripped.startswith("General timing and accounting"):
            self.finished = True
        elif "direct lattice vectors" in stripped:
            self.cell = self._cell()
        elif "Iteration" in stripped and stripped.startswith("-"):
            match = _ION_STEP.search(stripped)
            if match and self._starts_response(int(match.group(1))):
                self.response_line = self.lines.number
            if match and self.response_line is None:
                self._electronic_step(int(match.group(1)), int(match.group(2)))
        elif "FORCE on cell =-STRESS" in stripped:
            self.stress_is_ml = stripped.startswith("ML")
        elif stripped.startswith("in kB"):
            kind = "ml" if self.stress_is_ml else "ab"
            values = parse_floats(stripped[5:], 6, self.path, self.lines.number,
                                  "the 'in kB' stress")
            self._store(kind, stress=vasp_kbar_to_stress(*values))
        elif stripped.startswith("POSITION") and "TOTAL-FORCE" in stripped:
            kind = "ml" if "(ML)" in stripped else "ab"
            table = self._position_force_table(vdw="FORCE-w/o vdW" in stripped)
            self._store(kind, positions=table[:, :3], forces=table[:, 3:],
                        cell=self.cell)
        elif "FREE ENERGIE OF THE ION-ELECTRON SYSTEM" in stripped:
            if stripped.startswith("ML"):
                self.ml_steps += 1
                self.pending["ml"] = {}
            else:
                self._close_ab_initio_step()
        elif stripped in _EFG_TABLES:
            self._efg_table(*_EFG_TABLES[stripped], title_line=self.lines.number)

    # -- header -----------------------------------------------------------
    def _potcar(self, stripped):
        # "POTCAR:    PAW_PBE Ca_pv 06Sep2000" -> "Ca"
        element = _potcar_element(stripped[len("POTCAR:"):])
        if element:
            self.potcar_symbols.append((element, self.lines.number))

    def _ions_per_type(self, stripped):
        line = self.lines.number
        try:
            counts = [int(t) for t in stripped.split("=", 1)[1].split()]
        except (IndexError, ValueError):
            raise ParseError(self.path, line, f"cannot read {stripped!r}") from None
        if len(self.potcar_symbols) < len(counts):
            raise ParseError(self.path, line,
                             f"{len(counts)} atom types but only "
                             f"{len(self.potcar_symbols)} POTCAR: lines before")
        if self.nions is not None and sum(counts) != self.nions:
            raise ParseError(self.path, line, self._ion_count_mismatch(counts))
        # VASP lists every POTCAR once, in type order, before repeating any.
        types = [check_symbol(s, self.path, ln)
                 for s, ln in self.potcar_symbols[:len(counts)]]
        self.symbols = [s for s, n in zip(types, counts) for _ in range(n)]

    def _ion_count_mismatch(self, counts):
        message = (f"'ions per type' counts {sum(counts)} ions in {len(counts)} "
                   f"types, but NIONS = {self.nions}")
        if self.vrhfin_lines > len(counts):
            # VASP (<= 6.3) prints the counts of the first 10 types only.
            missing = [s for s, _ in self.potcar_symbols[len(counts):self.vrhfin_lines]]
            message += (f": VASP printed the counts of the first {len(counts)} of "
                        f"{self.vrhfin_lines} POTCAR types only, so how ions "
                        f"{sum(counts) + 1}-{self.nions} divide among "
                        f"{', '.join(missing)} is not in the OUTCAR; read the "
                        f"run's vasprun.xml, which names every ion")
        return message

    def _response_flag(self, stripped):
        name, value = _RESPONSE_FLAG.match(stripped).groups()
        if value == "T" and name not in self.response:
            self.response.append(name)

    # -- tables -----------------------------------------------------------
    def _cell(self):
        rows = []
        for _ in range(3):
            text = self.lines.take()
            rows.append(parse_floats(text, 6, self.path, self.lines.number,
                                     "a direct/reciprocal lattice row")[:3])
        return np.array(rows)

    def _natoms(self):
        if self.symbols is None:
            raise ParseError(self.path, self.lines.number,
                             "table before 'ions per type': atom count unknown")
        return len(self.symbols)

    def _rule(self, what):
        text = self.lines.take()
        if not text.strip().startswith("---"):
            raise ParseError(self.path, self.lines.number,
                             f"expected a '-----' line {what}, found {text.strip()!r}")

    def _position_force_table(self, vdw=False):
        """(NIONS, 6): position and TOTAL-FORCE of every ion.

        ``vdw``: the table of a van der Waals run, whose 3 more columns hold the
        forces without the vdW term (not needed here, and VASP may print them
        as ``NaN``): the 6 numbers a row starts with are read.
        """
        n = self._natoms()
        self._rule("under the POSITION/TOTAL-FORCE header")
        table = np.empty((n, 6))
        for i in range(n):
            text = self.lines.take()
            if vdw:
                leading = _SIX_NUMBERS.match(text)
                text = leading.group(0) if leading else text
            table[i] = parse_floats(text, 6, self.path, self.lines.number,
                                    f"position and TOTAL-FORCE of ion {i + 1}"
                                    + (" (then 3 FORCE-w/o vdW)" if vdw else ""))
        self._rule(f"after {n} ions (NIONS) in the POSITION/TOTAL-FORCE table")
        return table

    def _efg_table(self, name, ncols, title_line):
        n = self._natoms()
        step = self.steps[-1] if self.steps else None
        if step is None:
            raise ParseError(self.path, title_line,
                             "EFG table before any ab-initio ionic step")
        for _ in range(10):
            text = self.lines.take()
            if text.split()[:1] == ["ion"]:
                break
        else:
            raise ParseError(self.path, title_line,
                             "no 'ion ...' column header within 10 lines")
        self._rule("under the EFG column header")
        rows = np.empty((n, ncols))
        for i in range(n):
            text = self.lines.take()
            head, _, rest = text.strip().partition(" ")
            if head != str(i + 1):
                raise ParseError(self.path, self.lines.number,
                                 f"expected the row of ion {i + 1}, "
                                 f"found {text.strip()!r}")
            rows[i] = parse_floats(rest, ncols, self.path, self.lines.number,
                                   f"EFG table row of ion {i + 1}")
        self._rule(f"after {n} ions (NIONS) in the EFG table")
        if name in step.arrays:
            raise ParseError(self.path, title_line,
                             f"second '{name}' EFG table for ionic step {step.number}")
        step.arrays[name] = rows

    # -- steps ------------------------------------------------------------
    def _store(self, kind, **values):
        """Keep a step's stress or positions/forces/cell until its energy closes it.

        VASP >= 5.3 prints them before the step's ``FREE ENERGIE`` block; VASP
        5.2 prints them after it. So values that arrive after a step was closed
        without them, before the next step's first ``Iteration`` header, are
        that step's.
        """
        last = self.steps[-1] if self.steps else None
        if (kind == "ab" and self.open_step_line is None and last is not None
                and all(getattr(last, name) is None
                        for name in values if name != "cell")):
            for name, value in values.items():
                setattr(last, name, value)
        else:
            self.pending[kind].update(values)

    def _close_ab_initio_step(self):
        energy, energy_line = self._value_after("TOTEN", "free energy TOTEN")
        sigma0, _ = self._value_after("energy(sigma->0)", "energy(sigma->0)")
        number = self.ionic_step if self.open_step_line else (
            self.steps[-1].number + 1 if self.steps else 1)
        pending = self.pending["ab"]
        self.steps.append(_Step(
            number=number, energy=energy, energy_line=energy_line,
            energy_sigma0=sigma0, cell=pending.get("cell", self.cell),
            positions=pending.get("positions"), forces=pending.get("forces"),
            stress=pending.get("stress"), scf_steps=self.scf_steps))
        self.pending["ab"] = {}
        self.open_step_line = None
        self.scf_steps = 0

    def _value_after(self, key, what):
        """The number after '=' on the first of the next 4 lines holding ``key``."""
        for _ in range(4):
            text = self.lines.take()
            if key in text:
                rest = text[text.index(key):].split("=", 1)
                if len(rest) == 2:
                    # van der Waals runs go on with "w/o vdW = <energy>"
                    text = rest[1].split("w/o vdW", 1)[0]
                    value = parse_floats(text.replace("eV", ""), 1, self.path,
                                         self.lines.number, what)
                    return float(value[0]), self.lines.number
        raise ParseError(self.path, self.lines.number,
                         f"no {what} in the 4 lines after 'FREE ENERGIE'")

    # -- result -----------------------------------------------------------
    def result(self, incomplete, unconverged):
        complete = [s for s in self.steps if s.positions is not None]
        energy_only = [s for s in self.steps if s.positions is None]
        if self.ml_steps:
            _log.info("%s: left out %d machine-learned steps", self.path,
                      self.ml_steps)
        if energy_only:
            nwrite = "" if self.nwrite is None else f" (NWRITE = {self.nwrite})"
            _report_incomplete(
                self.path, incomplete, energy_only[0].energy_line,
                f"ionic steps {_step_ranges(s.number for s in energy_only)} "
                f"({len(energy_only)} of {len(self.steps)}) have an energy but no "
                f"POSITION/TOTAL-FORCE table{nwrite}: VASP prints forces for the "
                f"first and last step only when NWRITE < 2; the matching "
                f"vasprun.xml has every step")
        if self.truncated_line is not None:
            _report_incomplete(
                self.path, incomplete, self.truncated_line,
                "file ends inside a table"
                + (" in the middle of" if self.lines.cut_mid_line else " at")
                + f" line {self.truncated_line} (ionic step {self.ionic_step})")
        elif self.open_step_line is not None and not self.finished:
            _report_incomplete(
                self.path, incomplete, self.open_step_line,
                f"file ends inside ionic step {self.ionic_step} (begun at line "
                f"{self.open_step_line}) before its energy was printed"
                + self._response_note())
        elif self.response_line is not None and not self.finished:
            _report_incomplete(
                self.path, incomplete, self.response_line,
                f"file ends inside the linear-response part of the run (begun "
                f"at line {self.response_line}"
                + (f", {'/'.join(self.response)} = T" if self.response else "")
                + f") after ionic step {self.steps[-1].number}: the run stopped "
                f"before VASP's timing summary")
        elif self.open_step_line is not None:
            # A run that VASP finished: the 'Iteration' headers after the last
            # ionic step belong to the linear-response loops (LEPSILON,
            # LCHIMAG), which print no ionic step.
            _log.debug("%s: 'Iteration' headers from line %d on belong to the "
                       "linear-response part", self.path, self.open_step_line)
        if not complete:
            raise ParseError(self.path, None,
                             "no complete ab-initio ionic step (energy, positions "
                             "and forces) found")
        frames = [self._atoms(step) for step in complete]
        return _screen_unconverged(self.path, frames, unconverged, self.nelm)

    def _starts_response(self, ionic_step):
        """An 'Iteration N(M)' header with the number of a step already closed
        starts the linear-response loops (LEPSILON, LCHIMAG), which follow the
        last ionic step; no ionic step begins after them."""
        return (self.response_line is None and self.open_step_line is None
                and bool(self.steps) and ionic_step <= self.steps[-1].number)

    def _electronic_step(self, ionic_step, electronic_step):
        if self.open_step_line is None or ionic_step != self.ionic_step:
            self.ionic_step = ionic_step
            self.open_step_line = self.lines.number
            self.scf_steps = 0
        self.scf_steps = max(self.scf_steps, electronic_step)

    def _response_note(self):
        if not (self.response and self.steps):
            return ""
        return (f" (or inside the linear-response part of the run, "
                f"{'/'.join(self.response)} = T, which also prints 'Iteration' "
                f"headers: the run stopped before VASP's timing summary)")

    def _atoms(self, step):
        if step.cell is None:
            raise ParseError(self.path, step.energy_line,
                             "no 'direct lattice vectors' before this step")
        atoms = make_atoms(self.symbols, step.cell, step.positions, step.energy,
                           step.forces, step.stress,
                           energy_sigma0=step.energy_sigma0,
                           source={"file": str(self.path), "format": "outcar",
                                   "step": step.number,
                                   "line": step.energy_line})
        if self.nelm is not None and step.scf_steps:
            atoms.info["scf_converged"] = step.scf_steps < self.nelm
        _attach_efg(atoms, step.arrays)
        return atoms


def _attach_efg(atoms, tables):
    """Per-atom EFG arrays from the parsed tables (see :func:`read_outcar`)."""
    raw = tables.get("raw")
    if raw is not None:
        xx, yy, zz, xy, xz, yz = raw.T
        atoms.arrays["efg"] = np.stack([np.stack([xx, xy, xz], axis=-1),
                                        np.stack([xy, yy, yz], axis=-1),
                                        np.stack([xz, yz, zz], axis=-1)], axis=1)
    principal = tables.get("principal")
    if principal is not None:
        atoms.arrays["efg_principal_vasp"] = principal[:, :3].copy()
    nmr = tables.get("nmr")
    if nmr is not None:
        atoms.arrays["cq_vasp_mhz"] = nmr[:, 0].copy()
        atoms.arrays["eta_vasp"] = nmr[:, 1].copy()
        atoms.arrays["quad_moment_mb"] = nmr[:, 2].copy()
