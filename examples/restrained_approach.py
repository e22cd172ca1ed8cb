"""Restrained MD that pushes two atoms together with the potential being trained, and the filter
for its snapshots (shared by ``cspbbr3/pair_approach.py --method md`` and
``mapbi3/cation_approach.py``).

Active learning meets a rare close approach (two Pb of neighbouring octahedra, the methyl groups
of two neighbouring cations) only where the last fit failed, one distance at a time. Pulling the
pair together on purpose with a one-sided spring, in Langevin MD with the potential being
trained, samples the whole approach in seconds: these are the configurations the potential
drifts into once the pair is pushed together, where it is wrong, and the reference labels of
its snapshots teach it what happens there. Lengths Å, energies eV, times fs.
"""
import argparse
import sys
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms, units
from ase.constraints import Hookean
from ase.md.langevin import Langevin

from reference_labels import add_efg_labels, labelled, shown_path, statistics, thermalize, write_frames, write_json


def add_approach_arguments(p: argparse.ArgumentParser, timestep_fs: float, min_distances: str, seed: int,
                           md_steps: int = 400, spring: float = 5.0) -> None:
    """The options every approach script shares: the MD's (--model, --md-steps, --timestep,
    --friction, --spring, --per-distance, --max-force), the snapshot filter (--min-distances),
    --seed, --threads, --device (of the reference model) and --summary."""
    p.add_argument("--model", type=Path, help="exported potential that runs the MD")
    p.add_argument("--md-steps", type=int, default=md_steps, help="MD steps per distance")
    p.add_argument("--timestep", type=float, default=timestep_fs, help="fs")
    p.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs")
    p.add_argument("--spring", type=float, default=spring, help="one-sided Hookean spring, eV/Å²")
    p.add_argument("--per-distance", type=int, default=2, help="snapshots per distance, from the run's second half")
    p.add_argument("--max-force", type=float, default=30.0,
                   help="eV/Å: snapshots with a larger reference force (a collapse) are left out")
    p.add_argument("--min-distances", default=min_distances,
                   help="Å: snapshots with a pair closer than these are left out")
    p.add_argument("--seed", type=int, default=seed)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--summary", type=Path, help="JSON of what was built (default: --out with .json)")


def parse_approach_arguments(p: argparse.ArgumentParser, args: argparse.Namespace, shortest: float,
                             longest: float) -> None:
    """--distances (comma list, each in (shortest, longest) Å) and --min-distances (A-B=Å,...)
    into lists and a {"A-B" (sorted): Å} dict, or a parser error naming the option."""
    try:
        args.distances = [float(d) for d in args.distances.split(",")]
    except ValueError:
        p.error(f"--distances: expected comma-separated Å, got {args.distances!r}")
    if not all(shortest < d < longest for d in args.distances):
        p.error(f"--distances: every distance must lie in ({shortest:g}, {longest:g}) Å, got {args.distances}")
    try:
        args.min_distances = {"-".join(sorted(k.strip().split("-"))): float(v)
                              for k, v in (item.split("=") for item in args.min_distances.split(","))}
    except ValueError:
        p.error(f"--min-distances: expected A-B=Å,..., got {args.min_distances!r}")


def check_restrained_md_arguments(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.model is None or not args.model.is_file():
        p.error(f"the restrained MD needs --model, an exported potential file (got {args.model})")
    if not 1 <= args.per_distance <= args.md_steps // 2:
        p.error("--per-distance must lie in 1 .. --md-steps / 2")


def starting_frames(frames: Sequence[Atoms], count: int, min_temperature: float, n_atoms: int,
                    rng: np.random.Generator) -> List[Tuple[int, Atoms]]:
    """``count`` (index, frame) pairs drawn without replacement among the NPT frames of
    ``n_atoms`` atoms of the set at >= ``min_temperature`` K."""
    pool = [k for k, a in enumerate(frames) if len(a) == n_atoms and a.info.get("ensemble") == "npt"
            and float(a.info.get("temperature_K", 0.0)) >= min_temperature]
    if len(pool) < count:
        raise SystemExit(f"only {len(pool)} NPT frames of {n_atoms} atoms at >= {min_temperature} K in the set, "
                         f"{count} asked for")
    return [(int(k), frames[int(k)]) for k in sorted(rng.choice(pool, count, replace=False))]


def restrained_md(atoms: Atoms, i: int, j: int, distance: float, calc, temperature_K: float,
                  args, rng: np.random.Generator) -> List[Tuple[Atoms, int, float]]:
    """``args.per_distance`` snapshots (structure, MD step, max γ of the potential or nan) of
    Langevin MD with ``calc`` at ``temperature_K`` and atoms ``i``, ``j`` held within ``distance``
    Å by a one-sided spring (it pulls only while they are farther apart)."""
    work = atoms.copy()
    work.set_constraint(Hookean(i, j, args.spring, distance))
    work.calc = calc
    thermalize(work, temperature_K, rng)
    md = Langevin(work, args.timestep * units.fs, temperature_K=temperature_K, friction=args.friction / units.fs,
                  rng=rng, logfile=None)
    every = max(1, (args.md_steps // 2) // args.per_distance)
    picks = set(range(args.md_steps - (args.per_distance - 1) * every, args.md_steps + 1, every))
    snapshots = []
    for step in range(1, args.md_steps + 1):
        md.run(1)
        if step in picks:
            grade = float("nan")
            if getattr(calc, "has_grade", False):
                calc.calculate(work, ["energy", "forces", "extrapolation_grade"], [])
                grade = float(np.max(calc.results["extrapolation_grade"]))
            snapshot = work.copy()
            del snapshot.constraints
            snapshots.append((snapshot, step, grade))
    return snapshots


def labelled_approach(start: Atoms, i: int, j: int, distance: float, potential, temperature_K: float,
                      calc, args, rng: np.random.Generator, info: dict, distance_key: str,
                      intact: Optional[Callable[[Atoms], bool]] = None) -> Tuple[List[Atoms], List[dict]]:
    """The snapshots of one :func:`restrained_md` run from ``start`` with ``potential``, labelled by
    the reference ``calc``: (the :func:`sane` frames, one row per snapshot). Each frame's info is
    ``info`` plus ``md_step`` and ``distance_key`` (the i–j distance, Å); each row the same plus
    ``max_grade`` and ``kept``."""
    frames, rows = [], []
    for snapshot, step, grade in restrained_md(start, i, j, distance, potential, temperature_K, args, rng):
        frame_info = {**info, "md_step": step,
                      distance_key: round(float(snapshot.get_distance(i, j, mic=True)), 4)}
        frame = labelled(snapshot, calc, **frame_info)
        keep = sane(frame, args.max_force, args.min_distances, intact=intact)
        rows.append({**frame_info, "max_grade": round(grade, 3), "kept": keep})
        if keep:
            frames.append(frame)
    return frames, rows


def shortest_pairs(atoms: Atoms, cutoff: float = 4.0) -> dict:
    """The shortest distance (Å) of every species pair ``"A-B"`` (sorted) within ``cutoff``."""
    from ase.neighborlist import neighbor_list
    i, j, d = neighbor_list("ijd", atoms, cutoff)
    symbols = np.array(atoms.get_chemical_symbols())
    shortest: dict = {}
    for a, b, r in zip(symbols[i], symbols[j], d):
        key = "-".join(sorted((a, b)))
        shortest[key] = min(shortest.get(key, np.inf), float(r))
    return shortest


def sane(frame: Atoms, max_force: float, min_distances: dict,
         intact: Optional[Callable[[Atoms], bool]] = None) -> bool:
    """Whether a labelled snapshot is worth fitting: once the potential's MD has collapsed (two
    atoms far inside any distance of the data, reference forces of 10²-10¹³ eV/Å, a molecule
    torn apart: ``intact``) the frame would only pull the repulsive core's radii in and dominate
    the force loss."""
    if np.abs(frame.get_forces()).max() > max_force:
        return False
    if intact is not None and not intact(frame):
        return False
    shortest = shortest_pairs(frame)
    return all(shortest.get(pair, np.inf) >= r for pair, r in min_distances.items())


def write_approaches(frames: List[Atoms], built: List[dict], provenance: dict, charges: dict,
                     args: argparse.Namespace) -> None:
    """The labelled snapshots with their point-charge EFGs (formal ``charges``, e) to ``args.out``,
    and the summary (command, reference-model provenance, statistics, every structure built, kept
    or not) to ``args.summary`` or ``--out`` with ``.json``."""
    add_efg_labels(frames, charges)
    write_frames(frames, args.out)
    summary = {"command": "python " + " ".join([shown_path(Path(sys.argv[0]))] + sys.argv[1:]),
               "provenance": provenance, "statistics": statistics(frames), "structures": built}
    write_json(args.summary or args.out.with_suffix("").with_suffix(".json"), summary)
