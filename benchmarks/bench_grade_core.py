"""Claim: the repulsive core and the extrapolation-grade guard together add ≤ 15 % to the cost per
atom-step of `pair_style mlff` (issue "Potentials that survive production MD").

One run, the same fitted CsPbBr3 `cluster` potential exported four ways, NVT at 300 K on the
orthorhombic ground state repeated to n×n×n pseudocubic cells, 1 rank, 1 thread, runs interleaved:

  bare        no core, no active set (what `pyexport fit --no-core-repulsion --no-active-set` exports)
  core        with the core (the default export), no grade asked for
  core+guard  with core and active set, `compute mlff/grade` + `fix halt` every 25 steps
              (the guard of examples/cspbbr3/in.npt.lmp at its stability-campaign setting)
  core+grade1 grade on every step (thermo 1): the worst case, for scale

Cost = CPU time (user + sys) of the `lmp` process per atom-step: the difference between a run
of 3s and one of s steps over 2s (start-up, model loading and TorchScript warm-up cancel), median
over repeats; ratios against `bare`.
The load average is printed: this machine is shared.

    python benchmarks/bench_grade_core.py --checkpoint potential.ckpt [--supercell 8] [--steps 100]

The checkpoint is a `pyexport fit` checkpoint with an active set and a core (the default fit);
without --checkpoint the script fits the demo's potential from the shipped reference first.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from lammps_timing import cpu_per_atom_step, nvt_input

ROOT = Path(__file__).resolve().parents[1]
ELEMENTS = ["Cs", "Pb", "Br"]

VARIANTS = {
    "bare": {"core": False, "grade": False, "grade_every": 0},
    "core": {"core": True, "grade": False, "grade_every": 0},
    "core+guard": {"core": True, "grade": True, "grade_every": 25},
    "core+grade1": {"core": True, "grade": True, "grade_every": 1},
}


def export_variants(checkpoint: Path, folder: Path) -> dict:
    from pyexport.contract import export_model
    from pyexport.training.checkpoints import load_checkpoint, potential_from_checkpoint

    paths = {}
    for name, v in VARIANTS.items():
        ckpt = load_checkpoint(str(checkpoint))
        if not ckpt.get("active_set") or not ckpt.get("core_repulsion"):
            raise SystemExit(f"{checkpoint}: needs a checkpoint with an active set and a core (the default fit)")
        if not v["core"]:
            ckpt["core_repulsion"] = None
        if not v["grade"]:
            ckpt["active_set"] = None
        paths[name] = folder / f"{name}.pt"
        export_model(potential_from_checkpoint(ckpt), paths[name])
    return paths


def grade_guard(grade_every: int) -> str:
    """The γ guard of stability.py, evaluated every ``grade_every`` steps (0: none); its
    threshold is never reached, so every variant runs all its steps."""
    if not grade_every:
        return ""
    return (f"compute g all mlff/grade\nvariable gmax equal c_g\n"
            f"fix guard all halt {grade_every} v_gmax > 1e9 error continue\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path)
    p.add_argument("--supercell", type=int, default=8, help="n of the n×n×n pseudocubic cell (even; 8: 2,560 atoms)")
    p.add_argument("--steps", type=int, default=100, help="timed steps (and as many warm-up steps) per run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("-o", "--output", type=Path, help="JSON of the table")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "examples" / "cspbbr3"))
    from stability import ground_state_supercell
    from pyexport.lammps.data_file import write_lammps_data

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint = args.checkpoint
        if checkpoint is None:
            checkpoint = tmp / "potential.ckpt"
            subprocess.run([sys.executable, "-m", "pyexport", "fit", str(ROOT / "examples/cspbbr3/reference/cspbbr3_7net0.extxyz.xz"),
                            "--basis", "small", "--cutoff", "6.5", "--lambdas", "1e-8:1e-2:7", "--no-progress",
                            "-o", str(checkpoint)], check=True)
        models = export_variants(checkpoint, tmp)
        atoms = ground_state_supercell(args.supercell)
        write_lammps_data(tmp / "start.data", atoms, ELEMENTS)
        per_variant = {name: [] for name in VARIANTS}
        for _ in range(args.repeats):
            for name, v in VARIANTS.items():
                per_variant[name].append(cpu_per_atom_step(
                    tmp, lambda s: nvt_input(models[name], ELEMENTS, s, grade_guard(v["grade_every"])),
                    args.steps, len(atoms))[0])
        load = os.getloadavg()
    medians = {name: statistics.median(values) for name, values in per_variant.items()}
    print(f"{len(atoms)} atoms, {args.steps}/{3 * args.steps} steps, {args.repeats} repeats, "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print("| variant | CPU µs/atom-step (median) | runs | vs bare |")
    print("|---|---:|---|---:|")
    for name in VARIANTS:
        runs = ", ".join(f"{x:.1f}" for x in per_variant[name])
        print(f"| {name} | {medians[name]:.1f} | {runs} | {medians[name] / medians['bare']:.3f} |")
    if args.output:
        args.output.write_text(json.dumps({"atoms": len(atoms), "steps": args.steps, "load": load,
                                           "cpu_us_per_atom_step": per_variant, "median": medians}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
