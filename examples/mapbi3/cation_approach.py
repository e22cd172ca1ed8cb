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
--max-force are left out (listed in the summary).

``--pair N-N`` and ``C-N`` pull two ammonium heads, or a methyl and an ammonium group, together
(a 400 K run of the 933-structure fit stopped with two N 3.71 Å apart, γ 10.0). ``--pair C-Pb``
samples the other recurring stop the same way: a cation's methyl group pushed
through a cage window towards a Pb (a 300 K run of the 933-structure fit stopped at 1.25 ps with
C–Pb 3.54 Å and an H 2.52 Å from the Pb, γ 12); the cation moves rigidly towards the Pb, the
framework stays, and the spring holds C and Pb. Usage (the Python that has sevenn):

    python examples/mapbi3/cation_approach.py --model potential.pt --out cation_approach.extxyz.xz
    python examples/mapbi3/cation_approach.py --pair C-Pb --model potential.pt --out c_pb.extxyz.xz
    python examples/mapbi3/cation_approach.py --pair N-N --model potential.pt --out n_n.extxyz.xz
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
from reference_labels import load_sevennet0, read_extxyz  # noqa: E402
from restrained_approach import (add_approach_arguments, check_restrained_md_arguments,  # noqa: E402
                                 labelled_approach, parse_approach_arguments, starting_frames,
                                 write_approaches)
from structures import ATOMS_PER_CELL, intact_molecules  # noqa: E402


#: --pair choices: the partner of the cation's C, and default --distances (Å)
PARTNERS = {"C-C": "4.0,3.8,3.6", "N-N": "4.0,3.8,3.6", "C-N": "4.0,3.8,3.6", "C-Pb": "3.8,3.5,3.2"}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, default=REFERENCE, help="the set whose 96-atom NPT frames are the starts")
    p.add_argument("--out", type=Path, required=True, help="labelled extxyz (.xz compresses)")
    p.add_argument("--pair", choices=tuple(PARTNERS), default="C-C",
                   help="C-C, N-N, C-N: two cations' methyl or ammonium groups; C-Pb: a methyl group into a "
                        "cage window")
    p.add_argument("--n-frames", type=int, default=8, help="starting frames (one pair each)")
    p.add_argument("--min-temperature", type=float, default=400.0, help="K, of the starting frames")
    p.add_argument("--distances", help="distances the spring holds, Å (default: 4.0,3.8,3.6; C-Pb 3.8,3.5,3.2)")
    # pairs of two cations, or of a cation and the framework: no bond of one cation is among them
    # (intact_molecules checks those)
    add_approach_arguments(p, timestep_fs=0.5, min_distances="C-C=2.8,N-N=2.6,H-H=1.2,C-I=2.6,I-N=2.6,C-Pb=2.5,"
                                                             "H-Pb=1.8", seed=19,
                           md_steps=200, spring=20.0)
    args = p.parse_args(argv)
    args.distances = args.distances or PARTNERS[args.pair]
    parse_approach_arguments(p, args, 2.5, 6.0)
    if args.n_frames < 1:
        p.error("--n-frames must be >= 1")
    check_restrained_md_arguments(p, args)
    return args


def closest_pair(atoms: Atoms, pair: str) -> Tuple[int, int]:
    """For ``pair`` "A-B" (A the C or N of a cation, B another cation's C or N, or a Pb), the
    atoms ``i`` of A and ``j`` of B closest to each other in the frame (minimum image, never two
    atoms of one cation): for C-C the cations whose methyl groups already face each other, for
    C-Pb the methyl group nearest a cage window."""
    from structures import ATOMS_PER_CELL
    a, b = pair.split("-")
    symbols = np.array(atoms.get_chemical_symbols())
    first, second = np.flatnonzero(symbols == a), np.flatnonzero(symbols == b)
    distances = atoms.get_all_distances(mic=True)[np.ix_(first, second)]
    distances[first[:, None] // ATOMS_PER_CELL == second[None, :] // ATOMS_PER_CELL] = np.inf
    k, m = np.unravel_index(np.argmin(distances), distances.shape)
    return int(first[k]), int(second[m])


def cation_atoms(i: int) -> np.ndarray:
    """The indices of the cation (C, N, 6 H) of its atom ``i`` (structures.py order)."""
    base = i - i % ATOMS_PER_CELL
    return np.arange(base + 4, base + ATOMS_PER_CELL)


def moved_together(atoms: Atoms, i: int, j: int, distance: float) -> Atoms:
    """``atoms`` with the cation of atom ``i`` translated rigidly along the line to atom ``j``
    until the two are ``distance`` Å apart (moved only if farther); when ``j`` belongs to another
    cation, both cations move, half the way each. A spring on the C atom alone would tear it out of its
    cation (a 5.4 → 3.6 Å pull stretched C-H bonds beyond 1.35 Å within 20 fs)."""
    out = atoms.copy()
    vector = out.get_distance(i, j, mic=True, vector=True)
    length = float(np.linalg.norm(vector))
    if length > distance:
        shift = (length - distance) * vector / length
        if out[j].symbol in ("C", "N"):
            out.positions[cation_atoms(i)] += 0.5 * shift
            out.positions[cation_atoms(j)] -= 0.5 * shift
        else:
            out.positions[cation_atoms(i)] += shift
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
        info = {"config_type": "cation_approach", "pair": args.pair, "target_distance_A": distance,
                "source_index": source, "atoms_pulled": f"{i},{j}", "temperature_K": temperature}
        kept, rows = labelled_approach(moved_together(atoms, i, j, distance), i, j, distance, potential,
                                       temperature, calc, args, rng, info, distance_key="distance_A",
                                       intact=intact_molecules)
        frames += kept
        built += rows
    return frames, built


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    calc, provenance = load_sevennet0(args.device, args.threads)
    starts = starting_frames(read_extxyz(args.data), args.n_frames, args.min_temperature, 96, rng)
    jobs = [(k, atoms, *closest_pair(atoms, args.pair)) for k, atoms in starts]
    frames, built = approaches(jobs, args, calc, rng)
    for row in built:
        print(f"d {row['target_distance_A']:.2f} Å  source {row['source_index']:4d}  step {row['md_step']:5d}  "
              f"{args.pair} {row['distance_A']:.2f} Å  max γ {row['max_grade']:.2f}" + ("" if row["kept"] else "  (left out)"))
    if not frames:
        raise SystemExit("cation_approach.py: every snapshot was left out (see the rows above); nothing written")
    write_approaches(frames, built, provenance, FORMAL_CHARGES, args)
    print(f"{args.out}: {len(frames)} {args.pair} approach structures labelled by 7net-0")


if __name__ == "__main__":
    main()
