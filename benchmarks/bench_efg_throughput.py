"""Claim: the exported EFG model evaluates ≥ 50,000 atoms/s on 2 CPU cores (1,000-atom CsPbBr3).

One run measures, for a thermally displaced 1,000-atom CsPbBr3 supercell (5×5×8 pseudocubic):

  - model: the exported (TorchScript) EFG model called on contract inputs built beforehand, with
    1 frame per call and with several frames joined into one disjoint graph per call
    (pyexport.efg_eval.join_inputs, what ``predict_efg`` does); median of repeated calls after
    warm-up (the TorchScript profiling executor optimises during the first two calls);
  - end to end: ``predict_efg`` on the same frames, neighbour lists (ASE) included;
  - baseline alongside: the Ewald point-charge EFG of the same frame (efg.pointcharge.ewald_efg,
    accuracy 1e-6), the classical model the example's labels come from;

and prints atoms/s (from the median call) with the ratios to the 50,000 atoms/s goal and to the
Ewald baseline; the fastest call is printed too, since on a shared machine the median measures
the neighbours' load as much as the model. "End to end" is dominated by building the
neighbour lists (pyexport.contract.build_inputs), not by the model.

    python benchmarks/bench_efg_throughput.py [--model efg.pt] [--threads 2] [--batches 1 8]

Without --model it exports a freshly initialised model with the default hyperparameters of
``pyexport fit-efg`` (cutoff 6 Å, lmax 3, 8 channels): the weights do not change the cost.
"""
import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from efg.pointcharge import ewald_efg
from pyexport.contract import build_inputs, export_model, load_model
from pyexport.efg_eval import join_inputs, predict_efg
from pyexport.models.efg import EFGHyperparameters, build_efg_model, efg_contract_module

ELEMENTS = ["Cs", "Pb", "Br"]
GOAL_ATOMS_PER_S = 50_000
#: rms displacement per Cartesian component (Å), roughly CsPbBr3 near room temperature
THERMAL_SIGMA = {"Cs": 0.15, "Pb": 0.08, "Br": 0.13}


def cspbbr3_frame(seed, repeat=(5, 5, 8), a=5.87):
    unit = Atoms("CsPbBr3", scaled_positions=[[.5, .5, .5], [0, 0, 0], [.5, 0, 0], [0, .5, 0], [0, 0, .5]],
                 cell=np.eye(3) * a, pbc=True)
    atoms = unit.repeat(repeat)
    sigma = np.array([THERMAL_SIGMA[s] for s in atoms.get_chemical_symbols()])
    atoms.positions += np.random.default_rng(seed).normal(size=(len(atoms), 3)) * sigma[:, None]
    return atoms


def default_model(path, cutoff, dtype):
    hp = EFGHyperparameters(n_species=len(ELEMENTS), cutoff=cutoff, avg_neighbors=20.0)
    export_model(efg_contract_module(build_efg_model(hp, dtype=dtype), ELEMENTS, cutoff, dtype=dtype), path)
    return path


def call_times(fn, repeats, warmup=3):
    """Wall times (s) of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def time_model(model, inputs, repeats):
    joined = join_inputs(inputs)
    args = joined.as_args()
    with torch.no_grad():
        times = call_times(lambda: model(*args), repeats)
    return statistics.median(times), min(times), int(joined.edge_index.shape[1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="exported EFG model (.pt); default: a fresh default-size model")
    parser.add_argument("--cutoff", type=float, default=6.0, help="cutoff of the default model, Å")
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"], choices=["float64", "float32"],
                        help="dtypes of the default model to time (ignored with --model)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="frames per model call")
    parser.add_argument("--repeats", type=int, default=10, help="timed repetitions (median reported)")
    parser.add_argument("--json", help="write the table as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    frames = [cspbbr3_frame(seed) for seed in range(max(args.batches))]
    n_atoms = len(frames[0])
    ewald_s = statistics.median(call_times(
        lambda: ewald_efg(frames[0], {"Cs": 1.0, "Pb": 2.0, "Br": -1.0}, accuracy=1e-6), repeats=3, warmup=1))
    ewald_rate = n_atoms / ewald_s
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = ([("exported", args.model)] if args.model else
                  [(dtype, default_model(str(Path(tmp) / f"efg_{dtype}.pt"), args.cutoff, dtype))
                   for dtype in args.dtypes])
        for label, path in models:
            model, meta = load_model(path, kind="efg")
            inputs = [build_inputs(f, meta["cutoff"], meta["elements"]) for f in frames]
            for batch in args.batches:
                seconds, fastest, n_edges = time_model(model, inputs[:batch], args.repeats)
                end_to_end = statistics.median(call_times(
                    lambda: predict_efg(model, frames[:batch], batch_frames=batch),
                    repeats=max(3, args.repeats // 3), warmup=1))
                rate = batch * n_atoms / seconds
                rows.append({"model": label, "dtype": meta["dtype"], "cutoff": meta["cutoff"],
                             "frames_per_call": batch, "atoms_per_call": batch * n_atoms, "edges": n_edges,
                             "model_call_ms": 1e3 * seconds, "fastest_call_ms": 1e3 * fastest,
                             "atoms_per_s": rate,
                             "end_to_end_atoms_per_s": batch * n_atoms / end_to_end,
                             "vs_goal": rate / GOAL_ATOMS_PER_S, "vs_ewald": rate / ewald_rate})

    load = os.getloadavg()[0]
    print(f"{n_atoms}-atom CsPbBr3 frames; {args.threads} torch threads on {os.cpu_count()} CPUs "
          f"(load average {load:.1f} at the end: other processes slow the medians); medians of "
          f"{args.repeats} calls after 3 warm-up calls; goal {GOAL_ATOMS_PER_S} atoms/s")
    print(f"baseline: Ewald point-charge EFG (efg.pointcharge, accuracy 1e-6) "
          f"{1e3 * ewald_s:.0f} ms per frame = {ewald_rate:.0f} atoms/s")
    print("| model | dtype | cutoff (Å) | frames/call | edges | model call (ms) | fastest call (ms) | atoms/s | "
          "end-to-end atoms/s | / goal | / Ewald |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['dtype']} | {r['cutoff']:g} | {r['frames_per_call']} | {r['edges']} | "
              f"{r['model_call_ms']:.1f} | {r['fastest_call_ms']:.1f} | {r['atoms_per_s']:.0f} | "
              f"{r['end_to_end_atoms_per_s']:.0f} | "
              f"{r['vs_goal']:.2f} | {r['vs_ewald']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"ewald_atoms_per_s": ewald_rate, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
