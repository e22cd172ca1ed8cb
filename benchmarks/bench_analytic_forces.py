"""Claim: the hand-written backward of the `cluster` potential (forces and virial without
autograd, per-atom virial only on the steps that ask for it) lowers the CPU cost per atom-step of
`pair_style mlff`, with forces equal to those of the previous (autograd) export to 1e-10 eV/Å
(issue #19, item 1).

One run, the same fitted weights three ways, NVT at 300 K on the orthorhombic CsPbBr3 ground
state repeated to n×n×n pseudocubic cells (8: 2,560 atoms), 1 rank, 1 thread, runs interleaved:

  before    the model file as exported before this change (default: the shipped
            examples/cspbbr3/potential.pt): autograd through the descriptor, atom_virial on
            every step (it has no compute_atom_virial switch)
  autograd  the same weights exported now with ``autograd_forces = True``: autograd, but
            atom_virial only when LAMMPS asks (here never)
  analytic  the same weights exported now (the default): hand-written backward

Cost = CPU time (user + sys) of the `lmp` process per atom-step: the difference between a run
of 3s and one of s steps over 2s (start-up, model loading and TorchScript warm-up cancel), median
over repeats; ratios against `before`. Peak RSS of the longer run (it includes libtorch itself)
and the minor page faults per MD step (the difference of the two runs: fresh memory touched each
step) come from the kernel's accounting of the `lmp` process. Before the MD, the three files are
evaluated in Python on the rattled supercell: energies and forces must agree to 1e-10, and the
bare model call (median of 5, after 3 warm-up calls) is timed. The load average is printed: this machine is shared.

    python benchmarks/bench_analytic_forces.py [--before examples/cspbbr3/potential.pt]
                                               [--supercell 8] [--steps 30] [--repeats 3]

Set EFGMD_PLUGIN to run a plugin other than the installed one (e.g. a fresh build).
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lammps_timing import add_timing_arguments, cpu_per_atom_step, nvt_input

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("before", "autograd", "analytic")


def reexport(before: Path, folder: Path) -> dict:
    """The weights of ``before`` (a ``cluster`` potential with a core and an active set)
    exported by this code, analytic and autograd; {variant: path}."""
    from pyexport.contract import GradedPotentialModule, export_model, load_model
    from pyexport.models.cluster import build_energy_model
    from pyexport.models.cluster_basis import ClusterBasis
    from pyexport.models.grade import ExtrapolationGrade
    from pyexport.models.pair import CoreRepulsion, WithCore

    old, meta = load_model(before, kind="potential")
    if meta.get("model_type") != "cluster":
        raise SystemExit(f"{before}: a cluster potential is needed, this is {meta.get('model_type')!r}")
    if hasattr(old, "compute_atom_virial"):
        print(f"note: {before} was exported after the change (it has compute_atom_virial): "
              "'before' is then not the previous implementation")
    state = old.state_dict()
    basis = ClusterBasis.from_dict(meta["hyperparameters"]["basis"])
    energy = build_energy_model("cluster", len(meta["elements"]), basis, elements=meta["elements"])
    model = WithCore(energy, CoreRepulsion(state["model.core.r_core"], float(old.model.core.strength)))
    grade = ExtrapolationGrade({"weight": state["grade.weight"], "bias": state["grade.bias"],
                                "size": int(old.active_set_size)})
    module = GradedPotentialModule(model, grade, meta["elements"], meta["cutoff"])
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or set(unexpected) - {"model.model.descriptor.pair_cutoff"}:
        raise SystemExit(f"{before}: weights do not fit this code's model (missing {missing}, unexpected {unexpected})")
    for p in module.parameters():
        p.requires_grad_(False)
    paths = {"before": folder / "before.pt"}
    shutil.copyfile(before, paths["before"])     # the file may be replaced while the runs go on
    for name, autograd in (("autograd", True), ("analytic", False)):
        module.autograd_forces = autograd
        paths[name] = folder / f"{name}.pt"
        export_model(module, paths[name], provenance={"reexported_from": str(before)})
    return paths


def python_check(paths: dict, atoms) -> dict:
    """Max |ΔE|, |ΔF| against ``before`` and the median time of the bare model call (s)."""
    from pyexport.contract import build_inputs, load_model

    out = {}
    reference = None
    for name, path in paths.items():
        module, meta = load_model(path)
        inputs = build_inputs(atoms, meta["cutoff"], meta["elements"])
        for _ in range(3):      # TorchScript's profiling runs
            module(*inputs.as_args())
        times = []
        for _ in range(5):
            start = time.perf_counter()
            result = module(*inputs.as_args())
            times.append(time.perf_counter() - start)
        result = {k: v.detach() for k, v in result.items()}
        if reference is None:
            reference = result
        out[name] = {"model_call_s": statistics.median(times),
                     "max_dE_eV": float((result["energy"] - reference["energy"]).abs()),
                     "max_dF_eV_A": float((result["forces"] - reference["forces"]).abs().max()),
                     "max_dvirial_eV": float((result["virial"] - reference["virial"]).abs().max()),
                     "max_F_eV_A": float(reference["forces"].abs().max())}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", type=Path, default=ROOT / "examples" / "cspbbr3" / "potential.pt")
    add_timing_arguments(p)
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "examples" / "cspbbr3"))
    from stability import ground_state_supercell
    from pyexport.contract import load_model
    from pyexport.lammps.data_file import write_lammps_data

    torch.set_num_threads(1)
    elements = load_model(args.before)[1]["elements"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = reexport(args.before, tmp)
        atoms = ground_state_supercell(args.supercell)
        rattled = atoms.copy()
        rattled.rattle(0.05, seed=3)
        check = python_check(paths, rattled)
        write_lammps_data(tmp / "start.data", atoms, elements)
        cost = {name: [] for name in VARIANTS}
        rss = {name: [] for name in VARIANTS}
        faults = {name: [] for name in VARIANTS}
        loads = [os.getloadavg()[0]]
        for _ in range(args.repeats):
            for name in VARIANTS:
                cpu, peak, per_step_faults = cpu_per_atom_step(
                    tmp, lambda s: nvt_input(paths[name], elements, s), args.steps, len(atoms))
                cost[name].append(cpu)
                rss[name].append(peak)
                faults[name].append(per_step_faults)
            loads.append(os.getloadavg()[0])
    medians = {name: statistics.median(values) for name, values in cost.items()}
    print(f"{len(atoms)} atoms, runs of {args.steps} and {3 * args.steps} steps, {args.repeats} repeats, "
          f"1-min load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores, "
          f"plugin {os.environ.get('EFGMD_PLUGIN', '(installed)')}")
    print("| variant | CPU µs/atom-step (median) | runs | vs before | peak RSS MiB | page faults/step "
          "| model call s (Python) | max abs dF vs before (eV/Å) |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for name in VARIANTS:
        runs = ", ".join(f"{x:.1f}" for x in cost[name])
        print(f"| {name} | {medians[name]:.1f} | {runs} | {medians[name] / medians['before']:.3f} "
              f"| {max(rss[name]):.0f} | {statistics.median(faults[name]):.0f} | {check[name]['model_call_s']:.3f} "
              f"| {check[name]['max_dF_eV_A']:.1e} |")
    worst = max(max(c["max_dF_eV_A"], c["max_dE_eV"]) for c in check.values())
    print(f"max |dE|, |dF| against before: {worst:.1e} (forces up to {check['before']['max_F_eV_A']:.2f} eV/Å)")
    if args.output:
        args.output.write_text(json.dumps({"atoms": len(atoms), "steps": args.steps, "loads": loads,
                                           "cpu_us_per_atom_step": cost, "median": medians, "peak_rss_mib": rss,
                                           "minor_page_faults_per_step": faults,
                                           "python_check": check}, indent=2))
    return 0 if worst <= 1e-10 else 1


if __name__ == "__main__":
    sys.exit(main())
