"""What the LAMMPS benchmarks share: the timed NVT input and the kernel's accounting of one `lmp`
child process (CPU time, peak memory, page faults)."""
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

BIN = Path(sys.prefix) / "bin"


def md_input(model: Path, elements: Sequence[str], steps: int, *, timestep_ps: float = 0.004,
             velocity_K: float = 300.0, integrator: str = "fix nvt all nvt temp 300 300 0.4",
             extra: str = "", thermo: Optional[int] = None, pair_style: str = "pair_style mlff",
             pair_lines: Optional[str] = None) -> str:
    """MD on ``start.data`` with ``pair_style`` (mlff and its keywords) and ``model``, or with
    ``pair_lines`` (pair_style and pair_coeff of another potential) instead: velocities drawn at
    ``velocity_K``, the ``integrator`` fix, ``extra`` lines (computes, fixes, output) before the run."""
    pair = pair_lines or f"{pair_style}\npair_coeff * * {model} {' '.join(elements)}"
    return f"""units metal
atom_style atomic
boundary p p p
read_data start.data
{pair}
neighbor 1.0 bin
velocity all create {velocity_K} 4928 mom yes rot yes dist gaussian
timestep {timestep_ps}
{integrator}
{extra}thermo {thermo or steps}
run {steps}
"""


def nvt_input(model: Path, elements: Sequence[str], steps: int, extra: str = "",
              pair_style: str = "pair_style mlff", pair_lines: Optional[str] = None) -> str:
    """NVT at 300 K (4 fs): the timed run of the speed benchmarks."""
    return md_input(model, elements, steps, extra=extra, pair_style=pair_style, pair_lines=pair_lines)


def add_timing_arguments(p, supercell: int = 8) -> None:
    """The options every timing benchmark shares: cell size, run lengths, repeats, JSON output."""
    p.add_argument("--supercell", type=int, default=supercell,
                   help="n of the n×n×n pseudocubic cell (even; 8: 2,560 atoms)")
    p.add_argument("--steps", type=int, default=30, help="s: runs of s and 3s steps")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("-o", "--output", type=Path, help="JSON of the results")


def cpu_per_atom_step(folder: Path, input_of, steps: int, n_atoms: int,
                      env: Optional[Dict[str, str]] = None) -> Tuple[float, float, float]:
    """(CPU µs per atom-step, peak RSS MiB, minor page faults per step) of MD alone: runs of
    ``steps`` and 3·``steps`` steps (``input_of(steps)`` is the input), whose difference has no
    start-up, model loading or TorchScript warm-up."""
    runs = []
    for s in (steps, 3 * steps):
        (folder / "in.lmp").write_text(input_of(s))
        runs.append(run_lmp(folder, env))
    (cpu0, _, flt0), (cpu1, rss, flt1) = runs
    return (cpu1 - cpu0) / (2 * steps * n_atoms) * 1e6, rss, (flt1 - flt0) / (2 * steps)


#: Runs a command and prints its CPU time, peak RSS and minor faults. It exists because a child
#: forked from this (large) Python process inherits its resident pages until it execs, and Linux
#: folds that high-water mark into the child's ru_maxrss: measured directly, every lmp would
#: "peak" at this benchmark's own size. Forked from this small interpreter instead, lmp's ru_maxrss
#: is its own (and that of its wrapper's child, the real binary).
_ACCOUNTING = """import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(usage.ru_utime + usage.ru_stime, usage.ru_maxrss, usage.ru_minflt, file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_lmp(cwd: Path, env: Optional[Dict[str, str]] = None) -> Tuple[float, float, int]:
    """Run ``lmp -in in.lmp`` in ``cwd`` (1 OpenMP thread; ``env`` adds variables) and return its
    (CPU s = user + sys, peak RSS MiB, minor page faults) from the kernel's accounting."""
    cmd = [str(BIN / "lmp"), "-in", "in.lmp", "-log", "none", "-screen", "none", "-nocite"]
    proc = subprocess.run([sys.executable, "-S", "-c", _ACCOUNTING, *cmd], cwd=cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (rc {proc.returncode}) in {cwd}: {proc.stderr[-2000:]}")
    cpu, maxrss_kib, minflt = proc.stderr.strip().splitlines()[-1].split()
    return float(cpu), float(maxrss_kib) / 1024.0, int(minflt)
