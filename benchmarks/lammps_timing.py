"""What the LAMMPS benchmarks share: the timed NVT input and the kernel's accounting of one `lmp`
child process (CPU time, peak memory, page faults)."""
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

BIN = Path(sys.prefix) / "bin"


def nvt_input(model: Path, elements: Sequence[str], steps: int, extra: str = "") -> str:
    """NVT at 300 K (4 fs) on ``start.data`` with ``pair_style mlff``; ``extra`` lines (computes,
    fixes) go before the run."""
    return f"""units metal
atom_style atomic
boundary p p p
read_data start.data
pair_style mlff
pair_coeff * * {model} {' '.join(elements)}
neighbor 1.0 bin
velocity all create 300 4928 mom yes rot yes dist gaussian
timestep 0.004
fix nvt all nvt temp 300 300 0.4
{extra}thermo {steps}
run {steps}
"""


def run_lmp(cwd: Path, env: Optional[Dict[str, str]] = None) -> Tuple[float, float, int]:
    """Run ``lmp -in in.lmp`` in ``cwd`` (1 OpenMP thread; ``env`` adds variables) and return its
    (CPU s = user + sys, peak RSS MiB, minor page faults) from the kernel's accounting."""
    cmd = [str(BIN / "lmp"), "-in", "in.lmp", "-log", "none", "-screen", "none", "-nocite"]
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    _, status, usage = os.wait4(proc.pid, 0)
    returncode = os.waitstatus_to_exitcode(status)
    if returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (rc {returncode}) in {cwd}: {proc.stderr.read().decode()[-2000:]}")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0, usage.ru_minflt
