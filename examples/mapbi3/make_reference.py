#!/usr/bin/env python
"""Make the MAPbI3 reference data set of the second example.

Energies, forces and stresses come from SevenNet-0 (``7net-0``, inside the ``sevenn`` wheel,
trained on PBE data), a stand-in for DFT; EFG labels are classical point-charge EFGs from
``efg.pointcharge.ewald_efg`` with formal charges Pb +2, I −1 and the cation's +1 on N (C and H
neutral), a stand-in for DFT EFGs. Shared code: ``examples/reference_labels.py``. See
``reference/README.md`` for what the set holds and how it was made.

The structures (2×2×2 pseudocubic supercells, 96 atoms, cations in random orientations,
``structures.py``):

- a0: the volume of a cubic cell with random cations minimising the 7net-0 energy (isotropic
  scan);
- two starting phases, positions and cell relaxed with 7net-0 (no symmetry: the cations break
  it): "cubic" (untilted framework) and "tetragonal" (a⁰a⁰c⁻ tilt, c/a > 1);
- further cells with fresh random cation orientations, unrelaxed (orientational disorder, what
  the rotating cations of the cubic phase sample);
- homogeneous strains (±3 % normal, ±2 % shear; half also rattled) and random rattles;
- cells with one bond of every cation stretched or compressed (``distorted_cations``);
- snapshots of fixed-cell Langevin MD at 250–450 K with a 0.5 fs step (hydrogen): 170 fs per
  run, so the cations librate and their bonds vibrate; the reorientations themselves are covered
  by the random-orientation cells, not by the MD.

Everything random draws from ``numpy.random.SeedSequence(--seed)``, one child stream per stage.
Run it with the ``reference`` extra installed (``pip install efgmd[reference]``):

    python examples/mapbi3/make_reference.py          # writes examples/mapbi3/reference/*

or label given structures (frames picked by active learning) with 7net-0 and point-charge EFGs:

    python examples/mapbi3/make_reference.py --label frames.extxyz --out labelled.extxyz
"""
import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from ase import Atoms
from tqdm import tqdm

from structures import ATOMS_PER_CELL, intact_molecules, mapbi3_supercell

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # examples/: the shared labelling code
from reference_labels import (MODEL_NAME, add_efg_labels, add_recipe_arguments, check_recipe_arguments,  # noqa: E402
                              energy_of, labelled,
                              load_sevennet0, md_snapshots, rattled_cells, read_extxyz,
                              shown_path, statistics, strained_cells, write_frames, write_json)

HERE = Path(__file__).resolve().parent
#: e, for the point-charge EFG labels: the formal charges, the cation's +1 on its NH3⁺ group
FORMAL_CHARGES = {"Pb": 2.0, "I": -1.0, "N": 1.0, "C": 0.0, "H": 0.0}
REPEAT = (2, 2, 2)
TETRAGONAL_TILT_A = 0.45        # Å of I displacement, about 8° (room-temperature MAPbI3: ~ 7–10°)
TETRAGONAL_C_OVER_A = 1.015
# Which relaxed phase each MD run starts from; experiment: tetragonal below ~327 K, cubic above.
MD_RUNS = ((250.0, "tetragonal"), (300.0, "tetragonal"), (350.0, "cubic"), (400.0, "cubic"),
           (450.0, "cubic"))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    out_dir = HERE / "reference"
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_recipe_arguments(p, {"out": out_dir / "mapbi3_7net0.extxyz.xz",
                             "summary_out": out_dir / "generation_summary.json", "seed": 20261122,
                             "threads": 2, "fmax": 0.02, "max_relax_steps": 80, "n_strain": 12, "n_rattle": 12,
                             "rattle_max": 0.10, "timestep": 0.5, "timestep_help": "MD time step, fs (hydrogen)",
                             "n_md_steps": 240, "n_md_steps_help": "sampled MD steps per run", "md_interval": 12})
    p.add_argument("--n-orientations", type=int, default=24,
                   help="unrelaxed cubic cells with fresh random cation orientations")
    p.add_argument("--n-distortions", type=int, default=24,
                   help="cells per phase with one bond of every cation stretched or compressed")
    args = p.parse_args(argv)
    check_recipe_arguments(p, args, ("n_orientations", "n_strain", "n_rattle", "n_distortions", "n_equil_steps",
                                     "n_md_steps"))
    return args


def relax_cubic_a0(calc, rng_seed, bounds=(6.0, 6.7)) -> float:
    """Pseudocubic lattice parameter (Å) minimising the 7net-0 energy of one cubic 2×2×2 cell
    with random cations, scaled isotropically (the cations move rigidly with their centres)."""
    from scipy.optimize import minimize_scalar
    result = minimize_scalar(
        lambda a: energy_of(mapbi3_supercell(a, REPEAT, np.random.default_rng(rng_seed)), calc),
        bounds=bounds, method="bounded", options={"xatol": 1e-3})
    a0 = float(result.x)
    if min(a0 - bounds[0], bounds[1] - a0) < 1e-2:
        raise RuntimeError(f"cubic a0 = {a0:.4f} Å at the edge of the search interval {bounds}")
    return a0


def relax(atoms: Atoms, calc, fmax: float, steps: int) -> Atoms:
    """Positions and cell relaxed with 7net-0 (BFGS on a Fréchet cell filter). Not converging in
    ``steps`` is accepted (a random-cation cell has many shallow minima): the result is a start
    for MD and perturbations, not a ground state."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS
    work = atoms.copy()
    work.calc = calc
    BFGS(FrechetCellFilter(work), logfile=None).run(fmax=fmax, steps=steps)
    work.calc = None
    return work


def starting_phases(calc, a0: float, args, rng: np.random.Generator) -> Dict[str, Atoms]:
    cubic = mapbi3_supercell(a0, REPEAT, rng)
    tetragonal = mapbi3_supercell(a0, REPEAT, rng, tilt_A=TETRAGONAL_TILT_A, c_over_a=TETRAGONAL_C_OVER_A)
    phases = {}
    for name, start in tqdm((("cubic", cubic), ("tetragonal", tetragonal)), desc="relax", unit="cell"):
        phases[name] = relax(start, calc, args.fmax, args.max_relax_steps)
        if not intact_molecules(phases[name]):
            raise RuntimeError(f"{name}: a cation came apart in the 7net-0 relaxation")
    return phases


def orientation_cells(calc, a0: float, count: int, rng: np.random.Generator) -> List[Atoms]:
    return [labelled(mapbi3_supercell(a0, REPEAT, rng), calc, config_type="orientation", phase="cubic")
            for _ in tqdm(range(count), desc="orientations", unit="cell")]


def distorted_cations(calc, phases: Dict[str, Atoms], count: int, rng: np.random.Generator) -> List[Atoms]:
    """``count`` copies of each relaxed phase in which one bond of every cation is stretched or
    compressed far beyond thermal motion, the rest only slightly.

    Per cation, one of its seven bonds (C–N or one of the six X–H) is picked at random and its
    length changed by δ uniform in −0.25 … +0.30 Å (C–N 1.2–1.8 Å, C–H 0.85–1.4 Å, N–H
    0.8–1.35 Å): the moving end (N with its three H for C–N; the H for X–H) moves along the bond.
    Every atom then gets a Gaussian displacement of σ 0.02 Å. The MD of a potential that has
    not seen such bonds compresses them without resistance (a linear model has no built-in
    repulsion); these frames give each bond its wall on both sides."""
    frames = []
    jobs = [name for name in phases for _ in range(count)]
    for name in tqdm(jobs, desc="distorted cations", unit="cell"):
        cell = phases[name].copy()
        positions = cell.positions.copy()
        for start in range(0, len(cell), ATOMS_PER_CELL):
            c, n = start + 4, start + 5
            bond = int(rng.integers(7))
            delta = float(rng.uniform(-0.25, 0.30))
            if bond == 0:
                moving, anchor = [n, start + 9, start + 10, start + 11], c
                tip = n
            else:
                h = start + 5 + bond                  # H on C: start+6..8 (bond 1-3), on N: start+9..11
                moving, anchor, tip = [h], (c if bond <= 3 else n), h
            vector = cell.get_distance(anchor, tip, mic=True, vector=True)
            positions[moving] += delta * vector / np.linalg.norm(vector)
        positions += rng.normal(0.0, 0.02, size=positions.shape)
        cell.positions = positions
        frames.append(labelled(cell, calc, config_type="cation_distortion", phase=name))
    return frames


def intact_only(frames: List[Atoms], dropped: Dict[str, int]) -> List[Atoms]:
    """The frames whose cations are all intact; counts the others in ``dropped`` by config type.

    A Gaussian rattle of σ up to 0.1 Å per component now and then stretches an X–H bond past
    1.3 Å: a cation coming apart, 0.1–0.3 eV/atom above the rest with forces up to 70 eV/Å. No MD
    of the fitted potential should go there, and in a least-squares fit such frames outweigh the
    whole MD domain, so they are left out (the MD snapshots are kept as they are)."""
    kept = [atoms for atoms in frames if intact_molecules(atoms)]
    for atoms in frames:
        if not intact_molecules(atoms):
            kind = atoms.info.get("config_type", "?")
            dropped[kind] = dropped.get(kind, 0) + 1
    return kept


def md_frames(calc, phases: Dict[str, Atoms], args, rng_seeds) -> List[Atoms]:
    frames = []
    for (temperature, phase), seed in tqdm(list(zip(MD_RUNS, rng_seeds.spawn(len(MD_RUNS)))),
                                           desc="MD runs", unit="run"):
        run = md_snapshots(calc, phases[phase], phase, temperature, args.n_equil_steps,
                           args.n_md_steps, args.md_interval, args.timestep, args.friction,
                           np.random.default_rng(seed))
        broken = [k for k, atoms in enumerate(run) if not intact_molecules(atoms)]
        if broken:
            print(f"  MD {phase} {temperature:.0f} K: {len(broken)} snapshots with a broken cation "
                  f"kept (7net-0 let them break; they teach the fit the repulsion)", flush=True)
        frames += run
    return frames


def describe_phases(phases: Dict[str, Atoms], minima: Dict[str, Atoms]) -> Dict:
    out = {}
    for name, atoms in phases.items():
        frame = minima[name]
        n_fu = len(frame) // ATOMS_PER_CELL
        out[name] = {"cell_lengths_angles": np.round(atoms.cell.cellpar(), 4).tolist(),
                     "energy_eV_per_fu": frame.get_potential_energy() / n_fu,
                     "max_force_eV_per_A": float(np.abs(frame.get_forces()).max())}
    cubic = out["cubic"]["energy_eV_per_fu"]
    for entry in out.values():
        entry["energy_vs_cubic_meV_per_fu"] = (entry["energy_eV_per_fu"] - cubic) * 1e3
    return out


def label_structures(args) -> None:
    """7net-0 energy, forces, stress and point-charge EFGs for every structure of ``--label``."""
    calc, _ = load_sevennet0(args.device, args.threads)
    frames = [labelled(atoms, calc, **atoms.info)
              for atoms in tqdm(read_extxyz(args.label), desc="7net-0", unit="cell")]
    add_efg_labels(frames, FORMAL_CHARGES)
    write_frames(frames, args.out)
    print(f"{args.out}: {len(frames)} structures labelled by {MODEL_NAME}")


def generate(args) -> None:
    timings: Dict[str, float] = {}
    start_all = clock = time.perf_counter()

    def lap(name):
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 1)
        clock = now

    calc, provenance = load_sevennet0(args.device, args.threads)
    dropped: Dict[str, int] = {}
    # child k of a SeedSequence does not depend on how many are spawned: adding a stage at the
    # end keeps every earlier stage's numbers
    seeds = dict(zip(("a0", "phases", "orientation", "strain", "rattle", "md", "distortion"),
                     np.random.SeedSequence(args.seed).spawn(7)))
    a0 = relax_cubic_a0(calc, seeds["a0"])
    print(f"7net-0 pseudocubic a0 = {a0:.4f} Å (random cations, isotropic)", flush=True)
    phases = starting_phases(calc, a0, args, np.random.default_rng(seeds["phases"]))
    minima = {name: labelled(atoms, calc, config_type="phase_min", phase=name)
              for name, atoms in phases.items()}
    phase_info = describe_phases(phases, minima)
    for name, info in phase_info.items():
        print(f"{name:>12}: E - E_cubic = {info['energy_vs_cubic_meV_per_fu']:8.2f} meV/f.u.  "
              f"cell {info['cell_lengths_angles']}", flush=True)
    lap("relax")
    frames: List[Atoms] = list(minima.values())
    frames += orientation_cells(calc, a0, args.n_orientations, np.random.default_rng(seeds["orientation"]))
    frames += strained_cells(calc, phases, args.n_strain, np.random.default_rng(seeds["strain"]))
    rattles = rattled_cells(calc, phases, args.n_rattle, (args.rattle_min, args.rattle_max),
                            np.random.default_rng(seeds["rattle"]))
    frames += intact_only(rattles, dropped)
    lap("orientations_strains_rattles")
    frames += md_frames(calc, phases, args, seeds["md"])
    lap("md")
    frames += distorted_cations(calc, phases, args.n_distortions, np.random.default_rng(seeds["distortion"]))
    lap("distortions")
    add_efg_labels(frames, FORMAL_CHARGES)
    write_frames(frames, args.out)
    lap("efg_and_write")
    timings["total"] = round(time.perf_counter() - start_all, 1)
    stats = statistics(frames)
    write_json(args.summary_out, {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
        "arguments": {k: (shown_path(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "provenance": provenance,
        "python": platform.python_version(),
        "a0_A": a0,
        "phases": phase_info,
        "formal_charges_e": FORMAL_CHARGES,
        "statistics": stats,
        "dropped_broken_cations": dropped,
        "timings_s": timings,
        "output": {"file": args.out.name, "bytes": args.out.stat().st_size},
    })
    print(json.dumps({"a0_A": a0, **stats, "timings_s": timings}, indent=1))


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if args.label is not None:
        label_structures(args)
    else:
        generate(args)


if __name__ == "__main__":
    main()
