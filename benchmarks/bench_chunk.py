"""Claim (issue #19): evaluating the owned atoms in chunks (`pair_style mlff chunk N`, the default
512) makes the cost per atom-step and the memory per atom of `pair_style mlff` independent of
the system size, where one model call over all atoms grows in both; and where that cost stands
against LAMMPS's POD (ML-POD, `pair_style pod`) in the same run.

One run: the shipped CsPbBr3 potential (examples/cspbbr3/potential.pt, `cluster`, float64) on
the orthorhombic ground state repeated to n×n×n pseudocubic cells (8: 2,560 atoms, 16: 20,480),
NVT at 300 K, 1 rank, 1 thread, each chunk setting at each size, runs interleaved. Cost = CPU
time (user + sys) of the `lmp` process per atom-step from runs of s and 3s steps (start-up and
warm-up cancel), median over repeats; memory = peak RSS of the longer run, whole process
(libtorch included), per atom. The load average is printed: this machine is shared.

POD (`--pod pod-s`, the smaller size of bench_vs_pod.py: 3 species, 6.5 Å, 2/3/4-body 6/5·4/4·2)
is fitted with `fitpod` on the reference set's 40-atom cells (its cost per step depends on its
basis, not on what it was fitted to; bench_vs_pod.py compares accuracy) and runs the same MD.

    python benchmarks/bench_chunk.py [--supercells 8 16] [--chunks 0 512 2048] [--pod pod-s] [--repeats 3]
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from lammps_timing import cpu_per_atom_step, nvt_input

ROOT = Path(__file__).resolve().parents[1]
ELEMENTS = ["Br", "Cs", "Pb"]       # LAMMPS types 1..3; POD's species order too (its pair_coeff maps by position)
MODEL = ROOT / "examples" / "cspbbr3" / "potential.pt"


def fit_pod_on_small_cells(size: str, folder: Path) -> str:
    """fitpod of POD ``size`` on the reference set's 40-atom cells; its pair_style lines."""
    from bench_vs_pod import fit_pod, write_pod_extxyz
    from pyexport.training.data import read_structures

    structures = [s for s in read_structures([str(ROOT / "examples/cspbbr3/reference/cspbbr3_7net0.extxyz.xz")])
                  if s.n_atoms == 40]
    for name, part in (("train", structures[::2]), ("test", structures[1::2])):
        (folder / name).mkdir(parents=True)
        write_pod_extxyz(folder / name / f"{name}.xyz", part)
    fit = fit_pod(folder / "fit", size, ELEMENTS, folder / "train", folder / "test", 100.0)
    print(f"  {size}: fitted on {len(structures)} cells of 40 atoms in {fit['fit_s']:.0f} s", flush=True)
    return fit["pair"]


def chunk_name(chunk: int) -> str:
    return f"mlff chunk {chunk or 'all'}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--supercells", type=int, nargs="+", default=[8, 16], help="n of the n×n×n cells (even)")
    p.add_argument("--chunks", type=int, nargs="+", default=[0, 512, 2048],
                   help="owned atoms per model call (0: all in one call)")
    p.add_argument("--steps", type=int, nargs="+", default=[10, 3],
                   help="s per supercell (runs of s and 3s steps), in the order of --supercells")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--model", type=Path, default=MODEL)
    p.add_argument("--pod", default="pod-s", help="POD size of bench_vs_pod.py to time beside (none: no POD)")
    p.add_argument("-o", "--output", type=Path, help="JSON of the results")
    args = p.parse_args(argv)
    if len(args.steps) != len(args.supercells):
        raise SystemExit("--steps needs one value per supercell")
    sys.path.insert(0, str(ROOT / "examples" / "cspbbr3"))
    from stability import ground_state_supercell
    from pyexport.lammps.data_file import write_lammps_data

    rows = {}
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folders = {}
        # display name -> nvt_input options
        variants = {chunk_name(chunk): {"pair_style": f"pair_style mlff chunk {chunk}"} for chunk in args.chunks}
        if args.pod != "none":
            variants[args.pod] = {"pair_lines": fit_pod_on_small_cells(args.pod, tmp / "pod")}
        for n in args.supercells:
            folders[n] = tmp / f"n{n}"
            folders[n].mkdir()
            atoms = ground_state_supercell(n)
            write_lammps_data(folders[n] / "start.data", atoms, ELEMENTS)
            for name in variants:
                rows[(n, name)] = {"atoms": len(atoms), "cpu": [], "rss": []}
        for _ in range(args.repeats):
            for n, steps in zip(args.supercells, args.steps):
                for name, variant in variants.items():
                    row = rows[(n, name)]
                    cpu, rss, _ = cpu_per_atom_step(
                        folders[n], lambda s: nvt_input(args.model, ELEMENTS, s, **variant), steps, row["atoms"])
                    row["cpu"].append(cpu)
                    row["rss"].append(rss)
                    print(f"  {row['atoms']} atoms, {name}: {cpu:.1f} µs/atom-step, {rss:.0f} MiB", flush=True)
    load_end = os.getloadavg()
    print(f"\n{args.repeats} repeats; load average {load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end")
    pod = args.pod if args.pod != "none" else None
    first = chunk_name(args.chunks[0])
    print(f"| atoms | potential | CPU µs/atom-step (median) | runs | vs {first} |"
          + (f" vs {pod} |" if pod else "") + " peak RSS MiB | kB/atom |")
    print("|---:|---|---:|---|---:|" + ("---:|" if pod else "") + "---:|---:|")
    table = []
    for (n, name), row in rows.items():
        cpu, rss = statistics.median(row["cpu"]), max(row["rss"])
        base = statistics.median(rows[(n, first)]["cpu"])
        kb = rss * 1024 * 1.048576 / row["atoms"]          # MiB -> kB (10^3 bytes)
        vs_pod = f" {cpu / statistics.median(rows[(n, pod)]['cpu']):.2f} |" if pod else ""
        print(f"| {row['atoms']} | {name} | {cpu:.1f} | {', '.join(f'{x:.1f}' for x in row['cpu'])} | "
              f"{cpu / base:.2f} |{vs_pod} {rss:.0f} | {kb:.1f} |")
        table.append({"supercell": n, "atoms": row["atoms"], "potential": name, "cpu_us_per_atom_step": row["cpu"],
                      "median": cpu, "peak_rss_MiB": row["rss"], "kB_per_atom": kb})
    if args.output:
        args.output.write_text(json.dumps({"load_start": load_start, "load_end": load_end, "rows": table}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
