"""Throughput of the whole ``efg analyze`` (dump → EFG model → NMR statistics), in atom-frames/s,
with 1 and 2 MPI ranks, and where the time of a 1-rank run goes.

Claim: the post-processor turns a LAMMPS dump into NMR parameters at a rate set by the EFG model,
not by reading the dump or building neighbour lists, and MPI ranks add to it.

One run:

  - writes a dump of a rattled CsPbBr3 supercell (``--repeat``, default 6×6×6 = 1080 atoms;
    ``--frames`` frames; ``--rattle`` Å; ``dump custom id type x y z vx vy vz`` with LAMMPS's
    ``%g``; the velocities are random) and
    exports an EFG model of the default ``pyexport fit-efg`` size (cutoff 6 Å, lmax 3, 8 channels;
    freshly initialised: the weights do not change the cost), both in a temporary directory;
  - runs the ``efg analyze`` command line (``python -m efg analyze``, this source tree) with
    1 rank and under ``mpirun -np 2``, ``--repeats`` times each, and reports atom-frames/s from
    the median wall time of the whole process and from the ``wall_time_s`` that analyze reports
    (its work without interpreter start-up and imports);
  - runs ``efg.analyze.analyze`` once in this process with its stages timed (the functions it
    calls wrapped with timers): reading the dump (``pyexport.lammps.dump.iread``), loading the model,
    neighbour lists and image atoms (``pyexport.contract.build_inputs``), the model
    (TorchScript calls with batching; the first two calls, which TorchScript optimises, count
    as in any run), perovskite structure, the statistics after the frames, and the output
    files (the histogram plot included);
  - times, on the same frames, the neighbour search alone: ASE's ``primitive_neighbor_list``
    (what build_inputs used before) against ``pyexport.neighbors.neighbor_pairs``.

Every process gets ``--threads`` torch/OpenMP threads (default 1, so that 2 ranks use the 2
cores a 1-rank run leaves half idle). On a machine shared with other jobs the wall times wander;
the load average is printed with the tables.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_analyze_throughput.py [--repeat 6 6 6]
        [--frames 40] [--repeats 3] [--threads 1] [--json bench_analyze_throughput.json]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from ase import Atoms

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench_efg_throughput import ELEMENTS, default_model  # noqa: E402

TYPES = "Cs,Pb,Br"                   # LAMMPS types 1, 2, 3 = ELEMENTS
MPIRUN = Path(sys.prefix) / "bin" / "mpirun"


def write_dump(path: Path, repeat, n_frames: int, rattle: float) -> int:
    """Frames of a CsPbBr3 supercell (a = 5.87 Å), each atom displaced from its site by a fresh
    normal deviate of ``rattle`` Å per component, written as LAMMPS writes them; velocities
    random (Å/ps). Returns atoms/frame."""
    unit = Atoms("CsPbBr3", scaled_positions=[[.5, .5, .5], [0, 0, 0], [.5, 0, 0], [0, .5, 0],
                                              [0, 0, .5]], cell=np.eye(3) * 5.87, pbc=True)
    crystal = unit.repeat(repeat)
    types = [ELEMENTS.index(s) + 1 for s in crystal.get_chemical_symbols()]
    lx, ly, lz = np.diag(crystal.cell.array)
    rng = np.random.default_rng(0)
    with open(path, "w") as out:
        for frame in range(n_frames):
            positions = crystal.positions + rng.normal(0.0, rattle, (len(crystal), 3))
            velocities = rng.normal(0.0, 1.5, (len(crystal), 3))
            out.write(f"ITEM: TIMESTEP\n{100 * frame}\nITEM: NUMBER OF ATOMS\n{len(crystal)}\n"
                      f"ITEM: BOX BOUNDS pp pp pp\n0 {lx:.16e}\n0 {ly:.16e}\n0 {lz:.16e}\n"
                      "ITEM: ATOMS id type x y z vx vy vz\n")
            out.write("".join("%d %d %g %g %g %g %g %g\n" % (k + 1, t, *x, *v)
                              for k, (t, x, v) in enumerate(zip(types, positions, velocities))))
    return len(crystal)


def thread_env(threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = str(threads)
    return env


def run_cli(ranks: int, dump: Path, model: Path, out: Path, threads: int) -> dict:
    """One ``efg analyze`` process (or mpirun of several); wall seconds and analyze's own."""
    cmd = [sys.executable, "-m", "efg", "analyze", "--dump", str(dump), "--model", str(model),
           "--types", TYPES, "-o", str(out), "--no-progress"]
    if ranks > 1:
        cmd = [str(MPIRUN), "-np", str(ranks)] + cmd
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=thread_env(threads), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    report = json.loads(out.read_text())
    return {"process_s": seconds, "analyze_s": report["wall_time_s"],
            "n_frames": report["n_frames"], "n_atoms": report["n_atoms"]}


class StageTimer:
    """Wraps functions of a module so that the seconds spent in them add up per stage."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self._undo = []

    def wrap(self, module, name: str, stage: str, iterator: bool = False):
        original = getattr(module, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            result = original(*args, **kwargs)
            self.seconds[stage] += time.perf_counter() - start
            return self._timed_iter(result, stage) if iterator else result

        setattr(module, name, timed)
        self._undo.append((module, name, original))

    def _timed_iter(self, items, stage):
        while True:
            start = time.perf_counter()
            try:
                item = next(items)
            except StopIteration:
                return
            finally:
                self.seconds[stage] += time.perf_counter() - start
            yield item

    def restore(self):
        for module, name, original in reversed(self._undo):
            setattr(module, name, original)


def stage_breakdown(dump: Path, model: Path, out: Path) -> dict:
    """Seconds per stage of one in-process ``analyze`` (1 rank)."""
    import efg.analyze
    import efg.frame_steps
    import pyexport.contract
    import pyexport.efg_eval

    timer = StageTimer()
    timer.wrap(efg.analyze, "iread", "read", iterator=True)
    timer.wrap(pyexport.contract, "load_model", "model loading")
    timer.wrap(pyexport.efg_eval, "build_inputs", "neighbours")
    timer.wrap(pyexport.efg_eval, "predict_efg", "predict_efg")
    timer.wrap(efg.frame_steps, "find_octahedra", "structure")
    timer.wrap(efg.frame_steps, "structure_of", "structure")
    timer.wrap(efg.analyze, "evaluate_frames", "evaluate_frames")
    timer.wrap(efg.analyze, "write_outputs", "output files")
    start = time.perf_counter()
    try:
        report = efg.analyze.analyze(str(dump), model=str(model), types=TYPES, output=str(out),
                                     progress=False)
    finally:
        timer.restore()
    total = time.perf_counter() - start
    assert report["perovskite"] is not None, "frames not recognised as a perovskite: lower --rattle"
    s = timer.seconds
    return {"read": s["read"], "neighbours": s["neighbours"], "model loading": s["model loading"],
            "model": s["predict_efg"] - s["neighbours"], "structure": s["structure"],
            "other per-frame work": (s["evaluate_frames"] - s["read"] - s["model loading"]
                                     - s["predict_efg"] - s["structure"]),
            "statistics": total - s["evaluate_frames"] - s["output files"],
            "output files (json, npz, png)": s["output files"], "total": total}


def neighbour_search(dump: Path, cutoff: float, repeats: int) -> dict:
    """Median seconds over the frames of the dump: ASE's neighbour list and ours."""
    from ase.neighborlist import primitive_neighbor_list
    from pyexport.lammps.dump import iread
    from pyexport.neighbors import neighbor_pairs

    frames = list(iread(dump, types=TYPES.split(",")))
    searches = {
        "ase.neighborlist.primitive_neighbor_list": lambda a: primitive_neighbor_list(
            "ijSd", a.pbc, a.cell.array, a.positions, cutoff),
        "pyexport.neighbors.neighbor_pairs": lambda a: neighbor_pairs(
            a.positions, a.cell.array, a.pbc, cutoff),
    }
    out = {}
    for name, search in searches.items():
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for atoms in frames:
                search(atoms)
            times.append(time.perf_counter() - start)
        out[name] = float(np.median(times))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, nargs=3, default=[6, 6, 6],
                        help="CsPbBr3 supercell (5 atoms per cell)")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--rattle", type=float, default=0.05,
                        help="rms displacement per component, Å (pyexport.octahedra.find_octahedra "
                             "must still recognise the frames)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each command (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads per process")
    parser.add_argument("--json", help="write the tables as JSON here")
    args = parser.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dump, model = tmp / "md.dump", tmp / "efg.pt"
        n_atoms = write_dump(dump, args.repeat, args.frames, args.rattle)
        default_model(model, cutoff=6.0, dtype="float64")
        atom_frames = n_atoms * args.frames

        cli = {}
        for ranks in (1, 2):
            runs = [run_cli(ranks, dump, model, tmp / f"np{ranks}.json", args.threads)
                    for _ in range(args.repeats)]
            assert all(r["n_frames"] == args.frames and r["n_atoms"] == n_atoms for r in runs)
            cli[ranks] = {key: float(np.median([r[key] for r in runs]))
                          for key in ("process_s", "analyze_s")}
        stages = stage_breakdown(dump, model, tmp / "in_process.json")
        search = neighbour_search(dump, 6.0, args.repeats)

    load = os.getloadavg()
    print(f"\nefg analyze, CsPbBr3 {'x'.join(map(str, args.repeat))} ({n_atoms} atoms) x "
          f"{args.frames} frames = {atom_frames} atom-frames, EFG model of the default size "
          f"(float64), {args.threads} torch thread(s) per process; median of {args.repeats} runs; "
          f"load average {load[0]:.1f} on {os.cpu_count()} cores\n")
    print("| ranks | wall, whole process (s) | atom-frames/s | analyze's own time (s) | "
          "atom-frames/s | speed-up vs 1 rank (process / analyze) |")
    print("|---|---|---|---|---|---|")
    rows = []
    for ranks, t in cli.items():
        row = {"ranks": ranks, **t, "atom_frames_per_s_process": atom_frames / t["process_s"],
               "atom_frames_per_s_analyze": atom_frames / t["analyze_s"],
               "speedup_process": cli[1]["process_s"] / t["process_s"],
               "speedup_analyze": cli[1]["analyze_s"] / t["analyze_s"]}
        rows.append(row)
        print(f"| {ranks} | {t['process_s']:.2f} | {row['atom_frames_per_s_process']:.0f} | "
              f"{t['analyze_s']:.2f} | {row['atom_frames_per_s_analyze']:.0f} | "
              f"{row['speedup_process']:.2f}x / {row['speedup_analyze']:.2f}x |")

    print("\nWhere a 1-rank run spends its time (one in-process analyze, stages timed)\n")
    print("| stage | s | share | atom-frames/s of the stage alone |")
    print("|---|---|---|---|")
    for stage, seconds in stages.items():
        if stage != "total":
            print(f"| {stage} | {seconds:.2f} | {100 * seconds / stages['total']:.0f}% | "
                  f"{atom_frames / seconds:.0f} |")
    print(f"| total | {stages['total']:.2f} | 100% | {atom_frames / stages['total']:.0f} |")

    baseline = search["ase.neighborlist.primitive_neighbor_list"]
    print(f"\nNeighbour search alone, cutoff 6 Å, all {args.frames} frames (median of "
          f"{args.repeats})\n")
    print("| search | s | ms/frame | speed-up vs ASE |")
    print("|---|---|---|---|")
    for name, seconds in search.items():
        print(f"| {name} | {seconds:.3f} | {1e3 * seconds / args.frames:.1f} | "
              f"{baseline / seconds:.1f}x |")

    if args.json:
        Path(args.json).write_text(json.dumps({
            "atoms": n_atoms, "frames": args.frames, "threads": args.threads,
            "repeats": args.repeats, "load_average": load, "cli": rows, "stages_s": stages,
            "neighbour_search_s": search}, indent=2))


if __name__ == "__main__":
    main()
