"""Thermo output and settings of a LAMMPS log file (``log.lammps``)."""
import re
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np


def read_thermo(log) -> Dict[str, np.ndarray]:
    """The thermo columns of every run section of a LAMMPS log, concatenated in order: a dict
    from the thermo header's names (``Step``, ``Temp``, ``c_grade``, ...) to arrays. Sections with
    other columns are read by their own header; a column absent from some sections is shorter.
    Warning lines inside a section are skipped."""
    columns: Dict[str, List[float]] = {}
    header: Optional[List[str]] = None
    for line in Path(log).read_text().splitlines():
        words = line.split()
        if words[:1] == ["Step"]:
            header = words
            continue
        if header is None:
            continue
        if line.startswith("Loop time"):
            header = None
            continue
        if len(words) != len(header):
            continue
        try:
            values = [float(w) for w in words]
        except ValueError:
            continue
        for name, value in zip(header, values):
            columns.setdefault(name, []).append(value)
    return {k: np.array(v) for k, v in columns.items()}


def elapsed_steps(step: np.ndarray) -> np.ndarray:
    """Steps since the first thermo line, from a ``Step`` column that restarts whenever an input
    resets the timestep (``reset_timestep 0`` after an equilibration)."""
    step = np.asarray(step, dtype=float)
    if len(step) < 2:
        return step.copy()
    offset = np.concatenate([[0.0], np.cumsum(np.where(np.diff(step) < 0, step[:-1], 0.0))])
    return step + offset


_TIMESTEP = re.compile(r"^\s*timestep\s+([-+0-9.eE]+)\s*(?:#.*)?$", re.M)


def read_timestep(log) -> float:
    """The MD time step (in the run's time unit: ps for ``units metal``) that the input set last,
    from the ``timestep`` commands LAMMPS echoes into the log (with variables substituted).
    Raises ``ValueError`` naming the log when it holds none (LAMMPS' default step then applies,
    which depends on the unit style)."""
    found = _TIMESTEP.findall(Path(log).read_text())
    if not found:
        raise ValueError(f"{log}: no 'timestep' command in this LAMMPS log")
    return float(found[-1])
