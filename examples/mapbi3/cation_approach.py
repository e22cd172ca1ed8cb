#!/usr/bin/env python
"""Methyl-methyl approaches of neighbouring CH3NH3+ cations, sampled on purpose and labelled by
7net-0 (issue #20).

With the fit on the 852-structure set (active-learning round 19), the 450 K runs of the stability
campaign stopped on one event: the C atoms of two cations in neighbouring cages within 3.7 Å
(the 96-atom cells of the set never below 3.89 Å) while γ of both C climbed from 2.6 to 15 over
70 fs and the C force error reached 1.7 eV/Å against 7net-0. Active learning adds such an
approach one distance at a time, where the last fit stopped. This script samples it across the
approach instead (as ``examples/cspbbr3/pair_approach.py --method md`` does for Pb-Pb): for
--n-frames 96-atom NPT frames of the set at >= --min-temperature K (drawn at random, seeded), the
two cations with the closest C atoms are moved rigidly towards each other until the C atoms are
d apart, for each of --distances d (Å), and held there by a one-sided spring on the C atoms in
Langevin MD at the frame's temperature with the potential being trained (--model, 0.5 fs steps
for the hydrogens); --per-distance snapshots from each run's second half are
labelled like the rest of the set (7net-0 energy, forces, stress; point-charge EFGs). Snapshots
where the MD tore a cation apart (``structures.intact_molecules``) or 7net-0 gives a force above
--max-force are left out (listed in the summary). Usage (the Python that has sevenn):

    python examples/mapbi3/cation_approach.py --model potential.pt --out cation_approach.extxyz.xz
"""
import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]    # this example's recipe, examples/: the shared code
from make_reference import FORMAL_CHARGES  # noqa: E402
from model_settings import REFERENCE  # noqa: E402
from reference_labels import (add_efg_labels, labelled, load_sevennet0, read_extxyz,  # noqa: E402
                              shown_path, statistics, write_frames, write_json)
from restrained_approach import (add_approach_arguments, check_restrained_md_arguments,  # noqa: E402
                                 parse_approach_arguments, restrained_md, sane, starting_frames)
from structures import ATOMS_PER_CELL, intact_molecules  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, default=REFERENCE, help="the set whose 96-atom NPT frames are the starts")
    p.add_argument("--out", type=Path, required=True, help="labelled extxyz (.xz compresses)")
    p.add_argument("--n-frames", type=int, default=8, help="starting frames (one C-C pair each)")
    p.add_argument("--min-temperature", type=float, default=400.0, help="K, of the starting frames")
    p.add_argument("--distances", default="4.0,3.8,3.6", help="C-C distances the spring holds, Å")
    add_approach_arguments(p, timestep_fs=0.5, min_distances="C-C=2.8,H-H=1.2,C-I=2.6,I-N=2.6", seed=19,
                           md_steps=200, spring=20.0)
    args = p.parse_args(argv)
    parse_approach_arguments(p, args, 2.5, 6.0)
    if args.n_frames < 1:
        p.error("--n-frames must be >= 1")
    check_restrained_md_arguments(p, args)
    return args


def closest_carbon_pair(atoms: Atoms) -> Tuple[int, int]:
    """The two C atoms (of two cations) closest to each other in the frame (minimum image):
    the cations whose methyl groups already face each other."""
    carbon = np.flatnonzero(np.array(atoms.get_chemical_symbols()) == "C")
    distances = atoms.get_all_distances(mic=True)[np.ix_(carbon, carbon)] + np.eye(len(carbon)) * 1e9
    a, b = np.unravel_index(np.argmin(distances), distances.shape)
    return int(carbon[a]), int(carbon[b])


def cation_atoms(i: int) -> np.ndarray:
    """The indices of the cation (C, N, 6 H) whose C is atom ``i`` (structures.py order)."""
    base = i - i % ATOMS_PER_CELL
    return np.arange(base + 4, base + ATOMS_PER_CELL)


def cations_moved_together(atoms: Atoms, i: int, j: int, distance: float) -> Atoms:
    """``atoms`` with the cations of C ``i`` and C ``j`` translated rigidly towards each other
    along their C-C line, half the way each, until the C atoms are ``distance`` Å apart (moved
    only if farther). A spring on the C atoms alone would tear them out of their cations (a
    5.4 → 3.6 Å pull stretched C-H bonds beyond 1.35 Å within 20 fs)."""
    out = atoms.copy()
    vector = out.get_distance(i, j, mic=True, vector=True)
    length = float(np.linalg.norm(vector))
    if length > distance:
        shift = 0.5 * (length - distance) * vector / length
        out.positions[cation_atoms(i)] += shift
        out.positions[cation_atoms(j)] -= shift
        out.wrap()
    return out


def approaches(jobs, args, calc, rng) -> Tuple[List[Atoms], List[dict]]:
    """``per_distance`` snapshots per (pair, distance) of restrained MD with the potential, those
    that are not :func:`restrained_approach.sane` (with every cation intact) left out."""
    from pyexport.calculator import MLFFCalculator
    potential = MLFFCalculator(args.model)
    tasks = [(job, d) for job in jobs for d in args.distances]
    frames, built = [], []
    for (source, atoms, i, j), distance in tqdm(tasks, desc="restrained MD", unit="run"):
        temperature = float(atoms.info["temperature_K"])
        start = cations_moved_together(atoms, i, j, distance)
        for snapshot, step, grade in restrained_md(start, i, j, distance, potential, temperature, args, rng):
            info = {"config_type": "cation_approach", "pair": "C-C", "target_distance_A": distance,
                    "source_index": source, "carbons": f"{i},{j}", "md_step": step, "temperature_K": temperature,
                    "c_c_A": round(float(snapshot.get_distance(i, j, mic=True)), 4)}
            frame = labelled(snapshot, calc, **info)
            keep = sane(frame, args.max_force, args.min_distances, intact=intact_molecules)
            built.append({**info, "max_grade": round(grade, 3), "kept": keep})
            if keep:
                frames.append(frame)
    return frames, built


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    calc, provenance = load_sevennet0(args.device, args.threads)
    starts = starting_frames(read_extxyz(args.data), args.n_frames, args.min_temperature, 96, rng)
    jobs = [(k, atoms, *closest_carbon_pair(atoms)) for k, atoms in starts]
    frames, built = approaches(jobs, args, calc, rng)
    for row in built:
        print(f"d {row['target_distance_A']:.2f} Å  source {row['source_index']:4d}  step {row['md_step']:5d}  "
              f"C-C {row['c_c_A']:.2f} Å  max γ {row['max_grade']:.2f}" + ("" if row["kept"] else "  (left out)"))
    if not frames:
        raise SystemExit("cation_approach.py: every snapshot was left out (see the rows above); nothing written")
    add_efg_labels(frames, FORMAL_CHARGES)
    write_frames(frames, args.out)
    summary = {"command": "python " + " ".join([shown_path(Path(sys.argv[0]))] + sys.argv[1:]),
               "provenance": provenance, "statistics": statistics(frames), "structures": built}
    write_json(args.summary or args.out.with_suffix("").with_suffix(".json"), summary)
    print(f"{args.out}: {len(frames)} C-C approach structures labelled by 7net-0")


if __name__ == "__main__":
    main()
