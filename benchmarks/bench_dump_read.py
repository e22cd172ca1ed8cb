"""Reading LAMMPS text dumps: pyexport.lammps.dump.iread against ASE's lammps-dump-text reader, same files,
same run.

Claim: pyexport.lammps.dump reads a large dump much faster than ASE (goal: 10x) with memory flat in the
file size (bounded by one frame).

The dump is synthetic but written exactly as LAMMPS writes ``dump custom ... id type x y z vx vy
vz`` with its default ``%g`` float format: 4000-atom frames, ids in a different random order in
every frame (processor order, as without ``dump_modify sort``), atoms diffusing in a 30 Å cube.
Two files are written to a temporary directory (deleted afterwards): ``--mb`` (>= 100) MB and
twice that.

Each reader runs in a fresh subprocess per repetition: wall time and CPU time (user + system of
that process) for the whole file, and peak resident memory (``ru_maxrss``) minus that of a
subprocess which only imports the same modules. Both readers build every frame's ase.Atoms;
times are medians over the repetitions. On a machine shared with other jobs the wall times
wander; the CPU-time ratio is the steadier measure of the two readers' cost.

A second table times the conversion of one frame's atom rows alone with the bulk parsers numpy
offers (``np.loadtxt``, ``np.fromstring(sep=" ")``, ``float`` per token), against
``pyexport.lammps.dump.iread`` on a file holding just that frame (which also reads the header and builds
the Atoms): the reason pyexport.lammps.dump converts numbers itself.

    .venv/bin/python benchmarks/bench_dump_read.py [--mb 100] [--atoms 4000] [--repeats 3]
        [--json bench_dump_read.json]
"""
import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
TYPES = ["Cs", "Pb", "Br"]
READERS = {"efg": "pyexport.lammps.dump.iread", "ase": "ase.io.iread"}


def frame_text(rng, step: int, positions, types, box: float) -> str:
    """One frame as LAMMPS writes it (%g), rows in a random order; moves ``positions`` on."""
    n_atoms = len(positions)
    velocities = rng.normal(0.0, 2.0, (n_atoms, 3))
    positions[:] = (positions + 0.01 * velocities) % box
    row = "%d %d %g %g %g %g %g %g\n"
    header = (f"ITEM: TIMESTEP\n{100 * step}\nITEM: NUMBER OF ATOMS\n{n_atoms}\n"
              f"ITEM: BOX BOUNDS pp pp pp\n0.0000000000000000e+00 {box:.16e}\n"
              f"0.0000000000000000e+00 {box:.16e}\n0.0000000000000000e+00 {box:.16e}\n"
              "ITEM: ATOMS id type x y z vx vy vz\n")
    return header + "".join(row % (k + 1, types[k], *positions[k], *velocities[k])
                            for k in rng.permutation(n_atoms))


def write_dump(path: Path, n_atoms: int, target_bytes: int, seed: int = 0) -> int:
    """Write frames until the file holds at least target_bytes; returns the number of frames."""
    rng = np.random.default_rng(seed)
    box = 30.0
    positions = rng.random((n_atoms, 3)) * box
    types = rng.integers(1, 4, n_atoms)
    n_frames = 0
    with open(path, "w") as out, tqdm(total=target_bytes, unit="B", unit_scale=True,
                                      desc=f"writing {path.name}", leave=False) as bar:
        while out.tell() < target_bytes:
            before = out.tell()
            out.write(frame_text(rng, n_frames, positions, types, box))
            bar.update(out.tell() - before)
            n_frames += 1
    return n_frames


def child(reader: str, path: str) -> None:
    """Run one reader over the whole file (in a subprocess); print JSON with seconds, frames,
    peak RSS in MiB."""
    sys.path.insert(0, str(ROOT))
    import ase.io  # noqa: F401  (both children import the same modules)
    import pyexport.lammps.dump

    start = time.perf_counter()
    cpu_start = time.process_time()
    n_frames = 0
    n_atoms = 0
    if reader == "efg":
        for atoms in pyexport.lammps.dump.iread(path, types=TYPES):
            n_frames += 1
            n_atoms += len(atoms)
    elif reader == "ase":
        for atoms in ase.io.iread(path, format="lammps-dump-text", index=":", specorder=TYPES):
            n_frames += 1
            n_atoms += len(atoms)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "frames": n_frames,
                      "atoms": n_atoms, "peak_mib": peak_mib}))


def run_child(reader: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", reader, str(path)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_cpu_ms(convert, repeats: int) -> float:
    """Median CPU time of convert(), ms (after one untimed call)."""
    convert()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        convert()
        times.append(time.process_time() - start)
    return 1e3 * float(np.median(times))


def bulk_parsers(tmp: Path, n_atoms: int, repeats: int) -> dict:
    """CPU ms to convert one frame's atom rows with numpy's bulk parsers, and to read the whole
    frame with pyexport.lammps.dump.iread."""
    sys.path.insert(0, str(ROOT))
    import pyexport.lammps.dump

    rng = np.random.default_rng(1)
    text = frame_text(rng, 0, rng.random((n_atoms, 3)) * 30.0, rng.integers(1, 4, n_atoms), 30.0)
    path = tmp / "one_frame.dump"
    path.write_text(text)
    rows = text.split("ITEM: ATOMS id type x y z vx vy vz\n", 1)[1].encode()
    n_numbers = 8 * n_atoms

    def fromstring():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            values = np.fromstring(rows, sep=" ")
        assert len(values) == n_numbers

    timings = {
        "np.loadtxt (as ASE)": lambda: np.loadtxt(io.BytesIO(rows)),
        "np.fromstring(sep=' ')": fromstring,
        "float() per token": lambda: np.array(rows.split(), dtype=np.float64),
        "pyexport.lammps.dump.iread, whole frame": lambda: next(pyexport.lammps.dump.iread(path, types=TYPES)),
    }
    return {name: median_cpu_ms(convert, 5 * repeats) for name, convert in timings.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=100.0, help="size of the smaller dump, MB")
    parser.add_argument("--atoms", type=int, default=4000, help="atoms per frame")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the tables as JSON here")
    parser.add_argument("--child", nargs=2, metavar=("READER", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)

    sizes = {"1x": args.mb * 1e6, "2x": 2 * args.mb * 1e6}
    with tempfile.TemporaryDirectory() as tmp:
        parsers = bulk_parsers(Path(tmp), args.atoms, args.repeats)
        files = {}
        for label, size in sizes.items():
            path = Path(tmp) / f"{label}.dump"
            n_frames = write_dump(path, args.atoms, int(size))
            files[label] = (path, n_frames, path.stat().st_size)
        baseline = run_child("none", files["1x"][0])["peak_mib"]
        results = {}
        jobs = [(label, reader) for label in files for reader in READERS]
        with tqdm(total=len(jobs) * args.repeats, desc="reading") as bar:
            for label, reader in jobs:
                runs = []
                for _ in range(args.repeats):
                    runs.append(run_child(reader, files[label][0]))
                    bar.update()
                assert all(r["frames"] == files[label][1] for r in runs), (label, reader, runs)
                results[label, reader] = runs

    rows = []
    for label, (path, n_frames, n_bytes) in files.items():
        wall = {reader: float(np.median([r["seconds"] for r in results[label, reader]]))
                for reader in READERS}
        cpu = {reader: float(np.median([r["cpu_seconds"] for r in results[label, reader]]))
               for reader in READERS}
        for reader in READERS:
            rows.append({"file": label, "frames": n_frames, "mb": n_bytes / 1e6,
                         "reader": READERS[reader], "wall_s": wall[reader], "cpu_s": cpu[reader],
                         "cpu_ms_per_frame": 1e3 * cpu[reader] / n_frames,
                         "mb_per_s_wall": n_bytes / 1e6 / wall[reader],
                         "speedup_vs_ase_wall": wall["ase"] / wall[reader],
                         "speedup_vs_ase_cpu": cpu["ase"] / cpu[reader],
                         "peak_mib": max(r["peak_mib"] for r in results[label, reader]) - baseline})

    print(f"\nLAMMPS text dump, {args.atoms} atoms/frame, columns `id type x y z vx vy vz` (%g), "
          f"ids shuffled per frame; median of {args.repeats} runs, each in a fresh process. "
          f"Peak memory = peak RSS minus {baseline:.0f} MiB of a process that only imports "
          f"numpy/ase/efg.\n")
    print("| file | frames | size (MB) | reader | wall (s) | CPU (s) | CPU ms/frame | MB/s (wall) "
          "| speed-up vs ASE, wall | speed-up vs ASE, CPU | peak memory (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['file']} | {r['frames']} | {r['mb']:.0f} | {r['reader']} | {r['wall_s']:.2f} | "
              f"{r['cpu_s']:.2f} | {r['cpu_ms_per_frame']:.2f} | {r['mb_per_s_wall']:.0f} | "
              f"{r['speedup_vs_ase_wall']:.2f}x | {r['speedup_vs_ase_cpu']:.2f}x | "
              f"{r['peak_mib']:.0f} |")

    print(f"\nOne frame ({args.atoms} atoms, {8 * args.atoms} numbers): CPU ms, median of "
          f"{5 * args.repeats}\n")
    print("| conversion | CPU ms | vs pyexport.lammps.dump.iread |")
    print("|---|---|---|")
    ours = parsers["pyexport.lammps.dump.iread, whole frame"]
    for name, ms in parsers.items():
        print(f"| {name} | {ms:.2f} | {ms / ours:.1f}x |")

    if args.json:
        Path(args.json).write_text(json.dumps({"atoms_per_frame": args.atoms,
                                               "repeats": args.repeats,
                                               "baseline_rss_mib": baseline, "rows": rows,
                                               "one_frame_cpu_ms": parsers}, indent=2))


if __name__ == "__main__":
    main()
