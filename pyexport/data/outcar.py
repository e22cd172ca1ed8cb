"""Reader for VASP's ``OUTCAR``, with its EFG tables (``LEFG = .TRUE.``).

Returns ``list[ase.Atoms]`` following the convention in
:mod:`pyexport.data.dataset`; machine-learned, partly printed and
SCF-unconverged steps are treated as described in
:mod:`pyexport.data.vasp_common`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import numpy as np

from .dataset import (
    FLOAT_PATTERN,
    ParseError,
    check_symbol,
    make_atoms,
    open_text,
    parse_floats,
    vasp_kbar_to_stress,
)
from .vasp_common import (
    check_options,
    potcar_element,
    report_incomplete,
    screen_unconverged,
    step_ranges,
)

__all__ = ["read_outcar"]

_log = logging.getLogger(__name__)


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

    Machine-learned and partly printed steps: see :mod:`pyexport.data.vasp_common`.
    """
    check_options(incomplete, unconverged)
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
        element = potcar_element(stripped[len("POTCAR:"):])
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
            report_incomplete(
                self.path, incomplete, energy_only[0].energy_line,
                f"ionic steps {step_ranges(s.number for s in energy_only)} "
                f"({len(energy_only)} of {len(self.steps)}) have an energy but no "
                f"POSITION/TOTAL-FORCE table{nwrite}: VASP prints forces for the "
                f"first and last step only when NWRITE < 2; the matching "
                f"vasprun.xml has every step")
        if self.truncated_line is not None:
            report_incomplete(
                self.path, incomplete, self.truncated_line,
                "file ends inside a table"
                + (" in the middle of" if self.lines.cut_mid_line else " at")
                + f" line {self.truncated_line} (ionic step {self.ionic_step})")
        elif self.open_step_line is not None and not self.finished:
            report_incomplete(
                self.path, incomplete, self.open_step_line,
                f"file ends inside ionic step {self.ionic_step} (begun at line "
                f"{self.open_step_line}) before its energy was printed"
                + self._response_note())
        elif self.response_line is not None and not self.finished:
            report_incomplete(
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
        return screen_unconverged(self.path, frames, unconverged, self.nelm)

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
