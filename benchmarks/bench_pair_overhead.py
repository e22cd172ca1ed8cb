"""Claim: pair_style mlff adds ≤ 10 % to the bare TorchScript forward+backward of the model.

For a CsPbBr3 supercell of ~1k and ~10k atoms, one run measures
  - bare: the exported model called from Python on contract inputs built once (forward and the
    backward pass inside it), median of repeated calls after warm-up;
  - LAMMPS: the wall time per MD step of `pair_style mlff` (NVE, neighbour lists, integration,
    everything), from LAMMPS's own loop time, median of repeated runs;
and prints the ratio LAMMPS / bare. One MPI rank, one torch thread for both.

    python benchmarks/bench_pair_overhead.py [--model potential.pt] [--sizes 6 13] [--steps 20]

Without --model it uses the smooth many-body model of pyexport.models.pair (EmbeddedDensity,
Cs Pb Br, cutoff 6 Å).
"""
import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from pyexport.contract import PotentialModule, build_inputs, export_model, load_model
from pyexport.lammps.data_file import write_lammps_data
from pyexport.models.pair import EmbeddedDensity

ELEMENTS = ["Cs", "Pb", "Br"]


def supercell(n, a=5.87, seed=0):
    unit = Atoms("CsPbBr3", scaled_positions=[[.5, .5, .5], [0, 0, 0], [.5, 0, 0], [0, .5, 0], [0, 0, .5]],
                 cell=np.eye(3) * a, pbc=True)
    atoms = unit.repeat((n, n, n))
    atoms.rattle(0.05, seed=seed)
    return atoms


def time_bare(model_path, atoms, repeats):
    torch.set_num_threads(1)
    model, meta = load_model(model_path, kind="potential")
    inputs = build_inputs(atoms, meta["cutoff"], meta["elements"])
    args = inputs.as_args()
    for _ in range(3):                      # the profiling executor optimises on the first calls
        model(*args)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), inputs.edge_index.shape[1]


def time_lammps(model_path, atoms, steps, repeats, workdir):
    workdir = Path(workdir)
    write_lammps_data(workdir / "data.lmp", atoms, ELEMENTS)
    script = f"""units metal
atom_style atomic
read_data data.lmp
pair_style mlff threads 1
pair_coeff * * {model_path} {' '.join(ELEMENTS)}
velocity all create 300 1234 loop geom
fix nve all nve
timestep 0.002
thermo {steps}
run 3
""" + "".join(f"run {steps}\n" for _ in range(repeats))
    (workdir / "in.lmp").write_text(script)
    out = subprocess.run([str(Path(sys.prefix) / "bin" / "lmp"), "-in", "in.lmp", "-log", "none", "-nocite"],
                         cwd=workdir, capture_output=True, text=True, env={"OMP_NUM_THREADS": "1",
                                                                          "PATH": "/usr/bin:/bin"})
    if out.returncode != 0:
        raise RuntimeError(out.stdout[-2000:] + out.stderr[-2000:])
    loops = [float(t) for t, n in re.findall(r"Loop time of ([0-9.eE+-]+) on 1 procs for (\d+) steps", out.stdout)
             if int(n) == steps]
    return statistics.median(loops) / steps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="exported potential (.pt); default: a built-in many-body model")
    parser.add_argument("--sizes", type=int, nargs="+", default=[6, 13],
                        help="supercell repeats n (5 n³ atoms); default 6 13 (1080 and 10985 atoms)")
    parser.add_argument("--steps", type=int, default=20, help="MD steps per timed LAMMPS run")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions (median reported)")
    parser.add_argument("--json", help="write the table as JSON here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        model_path = args.model
        if model_path is None:
            model_path = str(Path(tmp) / "many_body.pt")
            export_model(PotentialModule(EmbeddedDensity(6.0), ELEMENTS, 6.0), model_path)
        rows = []
        for n in args.sizes:
            atoms = supercell(n)
            bare, n_edges = time_bare(model_path, atoms, args.repeats)
            wd = Path(tmp) / f"n{n}"
            wd.mkdir()
            step = time_lammps(model_path, atoms, args.steps, args.repeats, wd)
            rows.append({"atoms": len(atoms), "edges": int(n_edges), "bare_ms": 1e3 * bare,
                         "lammps_step_ms": 1e3 * step, "ratio": step / bare})
    print(f"model: {args.model or 'built-in EmbeddedDensity (cutoff 6 Å)'}; 1 rank, 1 torch thread; "
          f"medians of {args.repeats}")
    print("| atoms | edges | bare forward+backward (ms) | LAMMPS step (ms) | LAMMPS / bare |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['atoms']} | {r['edges']} | {r['bare_ms']:.2f} | {r['lammps_step_ms']:.2f} | {r['ratio']:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
