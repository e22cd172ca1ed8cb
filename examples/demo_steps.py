"""What the example drivers (``examples/run_demo.py``, ``examples/mapbi3/run_demo.py``) print
and how they run each command."""
import subprocess
import sys
import time
from pathlib import Path


def step(title):
    print(f"\n=== {title}  [{time.strftime('%H:%M:%S')}]", flush=True)


def run(cmd, cwd=None, log=None):
    """Run a command, echoing it; stop the demo with its output if it fails."""
    cmd = [str(c) for c in cmd]
    print("$ " + " ".join(cmd), flush=True)
    if log is None:
        subprocess.run(cmd, cwd=cwd, check=True)
        return
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        sys.stderr.write(Path(log).read_text()[-4000:])
        raise SystemExit(f"failed: {' '.join(cmd)} (log: {log})")
