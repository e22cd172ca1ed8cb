"""Edge-sharing Pb-Pb approaches, built on purpose and labelled by 7net-0 (issue #20).

Every 800 K run that the grade guard stopped at 2,560 atoms (active-learning rounds 21-25) stopped
on the same event: two neighbouring Pb come within 3.6-4.4 Å (5.9-6.0 Å in the crystal) while two
Br bridge them, as if their octahedra were turning from corner- to edge-sharing. 7net-0 pushes the
two Pb apart there; the polynomial, never shown the event except in the few frames before each
stop, pulls them together. Active learning only met the event where the last fit failed, one
distance at a time. This script samples it across the whole approach instead, for each of
--n-frames 320-atom frames of the set (NPT snapshots at >= --min-temperature K), with a Pb and its
nearest Pb picked at random (seeded), at each of --distances d (Å):

--method relax (round 26): place the two Pb d apart along their bond, about its midpoint; put
    their bridging Br at Pb-Br = --bridge-bond on one side of the bond and, for the "edge"
    variant, a second Br of the pair's octahedra on the other side (two shared Br: the geometry
    of the stop frames); the "corner" variant moves only the bridging Br. Relax every other atom
    with 7net-0 (two Pb fixed, cell fixed; FIRE, at most --relax-steps steps or fmax --fmax
    eV/Å). 7net-0's own answer to the approach: cold cages, ~40 s a structure on one core.
--method md (round 27): Langevin MD at the frame's temperature with the potential being
    trained (--model), the two Pb held within d of each other by a one-sided spring (ASE
    Hookean, --spring eV/Å²), --md-steps steps of --timestep fs; --per-distance snapshots from
    the second half. These are the configurations the potential itself drifts into once two
    octahedra are pushed together, where it is wrong: the frames active learning needs, found
    without waiting for a 2,560-atom run to stop (a few seconds of MD and ~2 s of 7net-0 each).
    Where the MD collapsed (a pair closer than --min-distances, a 7net-0 force above --max-force)
    the snapshot is left out: it would only pull the repulsive core's radii in.

Every structure is labelled like the rest of the set: energy, forces, stress from 7net-0,
point-charge EFGs. Usage (the Python that has sevenn):

    python examples/cspbbr3/pair_approach.py --out pair_approach.extxyz.xz
    python examples/cspbbr3/pair_approach.py --method md --model potential.pt --out more.extxyz.xz
"""
import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms
from ase.constraints import FixAtoms
from ase.optimize import FIRE
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]    # this example's recipe, examples/: the shared labelling code
from make_reference import FORMAL_CHARGES  # noqa: E402
from reference_labels import labelled, load_sevennet0, read_extxyz  # noqa: E402
from restrained_approach import (add_approach_arguments, check_restrained_md_arguments,  # noqa: E402
                                 labelled_approach, parse_approach_arguments, shortest_pairs, starting_frames,
                                 write_approaches)

VARIANTS = ("edge", "corner")
METHODS = ("relax", "md")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, default=HERE / "reference" / "cspbbr3_7net0.extxyz.xz",
                   help="the set whose 320-atom NPT frames are the starting structures")
    p.add_argument("--out", type=Path, required=True, help="labelled extxyz (.xz compresses)")
    p.add_argument("--n-frames", type=int, default=4, help="starting frames (one Pb pair each)")
    p.add_argument("--min-temperature", type=float, default=700.0, help="K, of the starting frames")
    p.add_argument("--distances", default="5.0,4.6,4.2,3.9,3.6,3.3", help="Pb-Pb distances, Å")
    p.add_argument("--variants", default="edge,corner", help=f"of {', '.join(VARIANTS)}")
    p.add_argument("--bridge-bond", type=float, default=2.95, help="Pb-Br of the moved bridging Br, Å")
    p.add_argument("--relax-steps", type=int, default=40, help="FIRE steps at most")
    p.add_argument("--fmax", type=float, default=0.1, help="eV/Å, relaxation stop")
    p.add_argument("--method", choices=METHODS, default="relax",
                   help="relax: 7net-0-relaxed approaches; md: restrained MD with --model")
    add_approach_arguments(p, timestep_fs=2.0, min_distances="Br-Pb=1.9,Pb-Pb=2.8,Br-Br=2.5,Br-Cs=2.5,Cs-Pb=3.0",
                           seed=26)
    args = p.parse_args(argv)
    parse_approach_arguments(p, args, 1.0, 6.5)
    args.variants = [v.strip() for v in args.variants.split(",")]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        p.error(f"--variants: unknown {unknown}, expected some of {list(VARIANTS)}")
    if args.n_frames < 1 or args.relax_steps < 0:
        p.error("--n-frames must be >= 1 and --relax-steps >= 0")
    if args.method == "md":
        check_restrained_md_arguments(p, args)
    return args


def mic_vector(atoms: Atoms, i: int, j: int) -> np.ndarray:
    """r_j - r_i under the minimum-image convention, Å."""
    return atoms.get_distance(i, j, mic=True, vector=True)


def pick_pair(atoms: Atoms, rng: np.random.Generator) -> Tuple[int, int, int]:
    """A random Pb ``i``, its nearest Pb ``j`` and the Br ``b`` that bridges them (the Br with
    the smallest sum of distances to both)."""
    symbols = np.array(atoms.get_chemical_symbols())
    lead = np.flatnonzero(symbols == "Pb")
    i = int(rng.choice(lead))
    others = lead[lead != i]
    j = int(others[np.argmin(atoms.get_distances(i, others, mic=True))])
    bromine = np.flatnonzero(symbols == "Br")
    total = atoms.get_distances(i, bromine, mic=True) + atoms.get_distances(j, bromine, mic=True)
    return i, j, int(bromine[np.argmin(total)])


def approach(atoms: Atoms, i: int, j: int, bridge: int, distance: float, variant: str,
             bridge_bond: float, rng: np.random.Generator) -> Tuple[Atoms, Optional[int]]:
    """``atoms`` with Pb ``i`` and ``j`` ``distance`` Å apart about their midpoint, the bridging
    Br on one side of the bond at ``bridge_bond`` Å from both, and for ``edge`` the Br of the two
    octahedra most opposite to it on the other side. Returns the structure and that second Br."""
    out = atoms.copy()
    pos = out.get_positions()
    bond = mic_vector(out, i, j)
    axis = bond / np.linalg.norm(bond)
    mid = pos[i] + 0.5 * bond
    side = mic_vector(out, i, bridge) - 0.5 * bond
    side -= side.dot(axis) * axis
    if np.linalg.norm(side) < 0.05:  # Br on the bond line: any perpendicular will do
        side = np.cross(axis, rng.normal(size=3))
    side /= np.linalg.norm(side)
    height = np.sqrt(max(bridge_bond**2 - (0.5 * distance) ** 2, 1.0))
    pos[i] = mid - 0.5 * distance * axis
    pos[j] = mid + 0.5 * distance * axis
    pos[bridge] = mid + height * side
    second = None
    if variant == "edge":
        symbols = np.array(out.get_chemical_symbols())
        bromine = [b for b in np.flatnonzero(symbols == "Br") if b != bridge]
        near = [b for b in bromine if min(out.get_distance(i, b, mic=True),
                                          out.get_distance(j, b, mic=True)) < 3.6]
        # the octahedron Br whose direction from the midpoint is most opposite to the bridge's
        alignment = [np.dot(mic_vector(out, i, b) - 0.5 * bond, side)
                     / np.linalg.norm(mic_vector(out, i, b) - 0.5 * bond) for b in near]
        second = int(near[int(np.argmin(alignment))])
        pos[second] = mid - height * side
    out.set_positions(pos)
    out.wrap()
    return out, second


def relaxed(atoms: Atoms, fixed: Sequence[int], calc, steps: int, fmax: float) -> Tuple[Atoms, int]:
    """``atoms`` after at most ``steps`` FIRE steps with ``fixed`` held and the cell fixed."""
    work = atoms.copy()
    work.set_constraint(FixAtoms(indices=list(fixed)))
    work.calc = calc
    if steps == 0:
        return work, 0
    optimizer = FIRE(work, maxstep=0.1, logfile=None)
    optimizer.run(fmax=fmax, steps=steps)
    return work, int(optimizer.nsteps)


def relaxed_approaches(jobs, args, calc, rng) -> Tuple[List[Atoms], List[dict]]:
    """--method relax: one structure per (pair, variant, distance), its cage relaxed by 7net-0."""
    tasks = [(job, d, v) for job in jobs for v in args.variants for d in args.distances]
    frames, built = [], []
    for (source, atoms, i, j, bridge), distance, variant in tqdm(tasks, desc="Pb-Pb approaches", unit="cell"):
        start, second = approach(atoms, i, j, bridge, distance, variant, args.bridge_bond, rng)
        final, steps = relaxed(start, (i, j), calc, args.relax_steps, args.fmax)
        info = {"config_type": "pair_approach", "pair": "Pb-Pb", "target_distance_A": distance,
                "variant": variant, "source_index": source, "lead": f"{i},{j}", "bridge": bridge,
                "relax_steps": steps, "temperature_K": float(atoms.info.get("temperature_K", 0.0))}
        frame = labelled(final, calc, **info)
        fmax_free = float(np.delete(np.linalg.norm(frame.get_forces(), axis=1), [i, j]).max())
        built.append({**info, "pb_force_eV_per_A": np.linalg.norm(frame.get_forces()[[i, j]], axis=1).round(3).tolist(),
                      "fmax_others_eV_per_A": round(fmax_free, 3),
                      "energy_vs_start_eV": round(float(frame.get_potential_energy() - atoms.get_potential_energy()), 3),
                      "second_bridge": second})
        frames.append(frame)
    return frames, built


def md_approaches(jobs, args, calc, rng) -> Tuple[List[Atoms], List[dict]]:
    """--method md: ``per_distance`` snapshots per (pair, distance) of MD with the potential,
    those that are not :func:`sane` left out (listed in the summary with ``kept: false``)."""
    from pyexport.calculator import MLFFCalculator
    potential = MLFFCalculator(args.model)
    tasks = [(job, d) for job in jobs for d in args.distances]
    frames, built = [], []
    for (source, atoms, i, j, _), distance in tqdm(tasks, desc="restrained MD", unit="run"):
        temperature = float(atoms.info.get("temperature_K", args.min_temperature))
        info = {"config_type": "pair_approach", "pair": "Pb-Pb", "target_distance_A": distance,
                "variant": "md", "source_index": source, "lead": f"{i},{j}", "temperature_K": temperature}
        kept, rows = labelled_approach(atoms, i, j, distance, potential, temperature, calc, args, rng,
                                       info, distance_key="pb_pb_A")
        frames += kept
        built += rows
    return frames, built


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    calc, provenance = load_sevennet0(args.device, args.threads)
    starts = starting_frames(read_extxyz(args.data), args.n_frames, args.min_temperature, 320, rng)
    jobs = [(k, atoms, *pick_pair(atoms, rng)) for k, atoms in starts]
    build = relaxed_approaches if args.method == "relax" else md_approaches
    frames, built = build(jobs, args, calc, rng)
    write_approaches(frames, built, provenance, FORMAL_CHARGES, args)
    for row in built:
        if args.method == "relax":
            print(f"{row['variant']:>6} d {row['target_distance_A']:.2f} Å  source {row['source_index']:4d}  "
                  f"E - E_start {row['energy_vs_start_eV']:8.3f} eV  |F_Pb| {row['pb_force_eV_per_A']}  "
                  f"steps {row['relax_steps']}")
        else:
            print(f"d {row['target_distance_A']:.2f} Å  source {row['source_index']:4d}  step {row['md_step']:5d}  "
                  f"Pb-Pb {row['pb_pb_A']:.2f} Å  max γ {row['max_grade']:.2f}" + ("" if row["kept"] else "  (left out)"))
    print(f"{args.out}: {len(frames)} Pb-Pb approach structures labelled by 7net-0")


if __name__ == "__main__":
    main()
