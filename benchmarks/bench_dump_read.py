"""Reading LAMMPS text dumps: efg.dump.iread against ASE's lammps-dump-text reader, same files,
same run.

Claim: efg.dump reads a large dump much faster than ASE (goal: 10x) with memory flat in the
file size (bounded by one frame).

The dump is synthetic but written exactly as LAMMPS writes ``dump custom ... id type x y z vx vy
vz`` with its default ``%g`` float format: 4000-atom frames, ids in a different random order in
every frame (processor order, as without ``dump_modify sort``), atoms diffusing in a 30 Å cube.
Two files are written to a temporary directory (deleted afterwards), the large one >= 100 MB.

Each reader runs in a fresh subprocess per repetition: wall time and CPU time (user + system of
that process) for the whole file, and peak resident memory (``ru_maxrss``) minus that of a
subprocess which only imports the same modules. Both readers build every frame's ase.Atoms;
reported times are medians over the repetitions. On a machine shared with other jobs the wall
times wander; the CPU-time ratio is the steadier measure of the two readers' cost.

    .venv/bin/python benchmarks/bench_dump_read.py [--mb 100] [--atoms 4000] [--repeats 3]
"""
import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
TYPES = ["Cs", "Pb", "Br"]


def write_dump(path: Path, n_atoms: int, target_bytes: int, seed: int = 0) -> int:
    """Write frames until the file holds at least target_bytes; returns the number of frames."""
    rng = np.random.default_rng(seed)
    box = 30.0
    positions = rng.random((n_atoms, 3)) * box
    types = rng.integers(1, 4, n_atoms)
    row = "%d %d %g %g %g %g %g %g\n"
    n_frames = 0
    with open(path, "w") as out, tqdm(total=target_bytes, unit="B", unit_scale=True,
                                      desc=f"writing {path.name}", leave=False) as bar:
        while out.tell() < target_bytes:
            velocities = rng.normal(0.0, 2.0, (n_atoms, 3))
            positions = (positions + 0.01 * velocities) % box
            order = rng.permutation(n_atoms)
            out.write(f"ITEM: TIMESTEP\n{100 * n_frames}\nITEM: NUMBER OF ATOMS\n{n_atoms}\n"
                      f"ITEM: BOX BOUNDS pp pp pp\n0.0000000000000000e+00 {box:.16e}\n"
                      f"0.0000000000000000e+00 {box:.16e}\n0.0000000000000000e+00 {box:.16e}\n"
                      "ITEM: ATOMS id type x y z vx vy vz\n")
            before = out.tell()
            out.write("".join(row % (k + 1, types[k], *positions[k], *velocities[k])
                              for k in order))
            bar.update(out.tell() - before)
            n_frames += 1
    return n_frames


def child(reader: str, path: str) -> None:
    """Run one reader over the whole file (in a subprocess); print JSON with seconds, frames,
    peak RSS in MiB."""
    sys.path.insert(0, str(ROOT))
    import ase.io  # noqa: F401  (both children import the same modules)
    import efg.dump

    start = time.perf_counter()
    cpu_start = time.process_time()
    n_frames = 0
    n_atoms = 0
    if reader == "efg":
        for atoms in efg.dump.iread(path, types=TYPES):
            n_frames += 1
            n_atoms += len(atoms)
    elif reader == "ase":
        for atoms in ase.io.iread(path, format="lammps-dump-text", index=":", specorder=TYPES):
            n_frames += 1
            n_atoms += len(atoms)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "frames": n_frames, "atoms": n_atoms,
                      "peak_mib": peak_mib}))


def run_child(reader: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", reader, str(path)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=100.0, help="size of the large dump, MB")
    parser.add_argument("--atoms", type=int, default=4000, help="atoms per frame")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("READER", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)

    sizes = {"small": args.mb * 1e6 / 4, "large": args.mb * 1e6}
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for label, size in sizes.items():
            path = Path(tmp) / f"{label}.dump"
            n_frames = write_dump(path, args.atoms, int(size))
            files[label] = (path, n_frames, path.stat().st_size)
        baseline = run_child("none", files["small"][0])["peak_mib"]
        results = {}
        jobs = [(label, reader) for label in files for reader in ("efg", "ase")]
        with tqdm(total=len(jobs) * args.repeats, desc="reading") as bar:
            for label, reader in jobs:
                runs = []
                for _ in range(args.repeats):
                    runs.append(run_child(reader, files[label][0]))
                    bar.update()
                assert all(r["frames"] == files[label][1] for r in runs), (label, reader, runs)
                results[label, reader] = runs

    print(f"\nLAMMPS text dump, {args.atoms} atoms/frame, columns `id type x y z vx vy vz` (%g), "
          f"ids shuffled per frame; median of {args.repeats} runs, each in a fresh process. "
          f"Peak memory = peak RSS minus {baseline:.0f} MiB of a process that only imports "
          f"numpy/ase/efg.\n")
    print("| file | frames | size (MB) | reader | wall (s) | CPU (s) | CPU ms/frame | MB/s (wall) "
          "| speed-up vs ASE, wall | speed-up vs ASE, CPU | peak memory (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, (path, n_frames, n_bytes) in files.items():
        wall = {reader: float(np.median([r["seconds"] for r in results[label, reader]]))
                for reader in ("efg", "ase")}
        cpu = {reader: float(np.median([r["cpu_seconds"] for r in results[label, reader]]))
               for reader in ("efg", "ase")}
        for reader in ("efg", "ase"):
            peak = max(r["peak_mib"] for r in results[label, reader]) - baseline
            print(f"| {label} | {n_frames} | {n_bytes / 1e6:.0f} | "
                  f"{'efg.dump.iread' if reader == 'efg' else 'ase.io.iread'} | "
                  f"{wall[reader]:.2f} | {cpu[reader]:.2f} | {1e3 * cpu[reader] / n_frames:.2f} | "
                  f"{n_bytes / 1e6 / wall[reader]:.0f} | {wall['ase'] / wall[reader]:.2f}x | "
                  f"{cpu['ase'] / cpu[reader]:.2f}x | {peak:.0f} |")


if __name__ == "__main__":
    main()
