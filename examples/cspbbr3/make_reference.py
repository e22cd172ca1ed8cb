#!/usr/bin/env python
"""Make the CsPbBr3 reference data set of the shipped example.

Energies, forces and stresses come from SevenNet-0 (``7net-0``, the checkpoint shipped inside
the ``sevenn`` wheel, trained on PBE data of the Materials Project), a stand-in for DFT so that
the example runs without a DFT code. EFG labels are classical point-charge EFGs (formal
charges Cs +1, Pb +2, Br −1, no Sternheimer factor) from ``efg.pointcharge.ewald_efg``, a
stand-in for DFT EFGs. See ``reference/README.md`` for what the data set holds and how it was
made.

The structures (pseudocubic supercells, all periodic):

- the cubic lattice parameter a0 relaxed with 7net-0, and the cubic (Pm-3m), tetragonal
  (a0a0c−, I4/mcm) and orthorhombic (a−a−c+, Pnma) 2×2×2 cells relaxed under their symmetry;
- frozen-mode scans of the cubic 2×2×2 cell: R-point tilt (also saved as the reference double
  well, ``--tilt-scan-out``), M-point tilt, polar Γ (Slater) mode, and isotropic volume;
- random mixtures of the R, M and Γ modes, homogeneous strains (±3 % normal, ±2 % shear, with
  and without rattles) and random rattles of the three phases;
- snapshots of Langevin MD (fixed cell) at 100–700 K of 40-, 80- and 160-atom cells.

Everything random draws from ``numpy.random.SeedSequence(--seed)``, one child stream per stage,
so the same seed, versions and thread count give the same file. Nothing is downloaded: the
script refuses to run if the 7net-0 checkpoint is not already on disk.

Run it with the ``reference`` extra installed (``pip install efgmd[reference]``):

    python examples/cspbbr3/make_reference.py     # writes examples/cspbbr3/reference/*

label given structures (e.g. frames picked by ``active_learning.py``) with 7net-0 and point-charge
EFGs, keeping their ``info``:

    python examples/cspbbr3/make_reference.py --label frames.extxyz --out labelled.extxyz

or label an existing file with point-charge EFGs only (no sevenn needed):

    python examples/cspbbr3/make_reference.py --label-efg-only in.extxyz.xz --out out.extxyz.xz
"""
import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms
from tqdm import tqdm

from modes import cubic_cell, cubic_supercell, displaced, polar_pattern, tilt_pattern

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # examples/: the shared labelling code
from reference_labels import (MODEL_NAME, add_efg_labels, add_recipe_arguments, check_recipe_arguments,  # noqa: E402
                              energy_of,
                              labelled, load_sevennet0, md_snapshots, rattled_cells, read_extxyz,
                              shown_path, statistics, strained_cells, write_frames, write_json)

HERE = Path(__file__).resolve().parent
FORMAL_CHARGES = {"Cs": 1.0, "Pb": 2.0, "Br": -1.0}  # e, for the point-charge EFG labels
ATOMS_PER_FORMULA_UNIT = 5
BASE_REPEAT = (2, 2, 2)  # the 40-atom pseudocubic cell that holds R- and M-point tilts

# Starting distortions (Å of Br displacement) from which the tilted phases are relaxed; any
# value in the basin of the phase gives the same minimum.
TETRAGONAL_START = {"R_z": 0.4}
ORTHORHOMBIC_START = {"R_x": 0.35, "R_y": 0.35, "M_z": 0.45}

# Which relaxed phase each MD run starts from: the phase sequence of CsPbBr3 (orthorhombic
# below ~361 K, tetragonal to ~403 K, cubic above); the fixed-cell MD then samples what 7net-0
# makes of it at that temperature.
MD_2X2X2 = ((100.0, "orthorhombic"), (200.0, "orthorhombic"), (300.0, "orthorhombic"),
            (400.0, "tetragonal"), (500.0, "cubic"), (700.0, "cubic"))
MD_LARGE = (((1, 1, 2), 200.0, "orthorhombic"), ((1, 1, 2), 500.0, "cubic"),
            ((1, 2, 2), 300.0, "orthorhombic"), ((1, 2, 2), 700.0, "cubic"))


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    out_dir = HERE / "reference"
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_recipe_arguments(p, {"out": out_dir / "cspbbr3_7net0.extxyz.xz",
                             "summary_out": out_dir / "generation_summary.json", "seed": 20240715,
                             "threads": 1, "fmax": 1e-3, "max_relax_steps": 400, "n_strain": 20, "n_rattle": 20,
                             "rattle_max": 0.15, "timestep": 4.0, "timestep_help": "MD time step, fs",
                             "n_md_steps": 300,
                             "n_md_steps_help": "sampled MD steps per 2x2x2 trajectory (after equilibration)",
                             "md_interval": 10})
    p.add_argument("--tilt-scan-out", type=Path, default=out_dir / "r_tilt_scan.json",
                   help="JSON of the R-point tilt double well of the cubic cell")
    p.add_argument("--label-efg-only", type=Path, metavar="EXTXYZ",
                   help="only add point-charge EFG labels to this existing file, write --out")
    p.add_argument("--tilt-scan-max", type=float, default=1.0, help="Å of Br displacement")
    p.add_argument("--tilt-scan-step", type=float, default=0.05, help="Å")
    p.add_argument("--n-mode-mix", type=int, default=40, help="random R/M/Γ mixtures")
    p.add_argument("--n-md-steps-large", type=int, default=100,
                   help="sampled MD steps per 80- and 160-atom trajectory")
    args = p.parse_args(argv)
    check_recipe_arguments(p, args, ("n_mode_mix", "n_strain", "n_rattle", "n_equil_steps", "n_md_steps",
                                     "n_md_steps_large"))
    if not 0.0 < args.tilt_scan_step < args.tilt_scan_max:
        p.error("--tilt-scan-step/--tilt-scan-max: expected 0 < step < max")
    return args


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------------
# Relaxed lattice and phases
# --------------------------------------------------------------------------------------------
def relax_cubic_a0(calc, bounds=(5.5, 6.5)) -> float:
    """Lattice parameter (Å) minimising the 7net-0 energy of the cubic 5-atom cell."""
    from scipy.optimize import minimize_scalar
    result = minimize_scalar(lambda a: energy_of(cubic_cell(a), calc), bounds=bounds,
                             method="bounded", options={"xatol": 1e-5})
    a0 = float(result.x)
    if min(a0 - bounds[0], bounds[1] - a0) < 1e-3:
        raise RuntimeError(f"cubic a0 = {a0:.4f} Å at the edge of the search interval {bounds}")
    return a0


def tilt_start(a0: float, start: Dict[str, float]) -> Atoms:
    """The ideal 2×2×2 cell displaced along the named modes (``R_z``: R-point tilt about z)."""
    ideal = cubic_supercell(a0, BASE_REPEAT)
    terms = [(amplitude, tilt_pattern(ideal, a0, name[2], name[0]))
             for name, amplitude in start.items()]
    return displaced(ideal, *terms)


def relax_under_symmetry(atoms: Atoms, calc, fmax: float, steps: int, name: str) -> Atoms:
    """Positions and cell relaxed with 7net-0 under the space group of ``atoms``."""
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS
    work = atoms.copy()
    work.set_constraint(FixSymmetry(work, symprec=1e-3))
    work.calc = calc
    optimizer = BFGS(FrechetCellFilter(work), logfile=None)
    if not optimizer.run(fmax=fmax, steps=steps):
        raise RuntimeError(f"{name}: relaxation not converged to fmax {fmax} eV/Å in {steps} "
                           f"steps (raise --max-relax-steps or --fmax)")
    del work.constraints
    return work


def space_group(atoms: Atoms, symprec: float = 1e-3) -> str:
    import spglib
    return str(spglib.get_spacegroup((atoms.cell.array, atoms.get_scaled_positions(),
                                      atoms.numbers), symprec=symprec))


def mode_amplitudes(atoms: Atoms, a0: float) -> Dict[str, float]:
    """Amplitudes (Å) of the R/M tilts and polar modes in a 2×2×2 cell, its positions first
    mapped onto the ideal cubic metric (fractional displacements × 2 a0)."""
    ideal = cubic_supercell(a0, BASE_REPEAT)
    delta = atoms.get_scaled_positions() - ideal.get_scaled_positions()
    delta = (delta - np.rint(delta)) @ ideal.cell.array
    patterns = {f"{point}_{axis}": tilt_pattern(ideal, a0, axis, point)
                for point in ("R", "M") for axis in "xyz"}
    patterns.update({f"polar_{axis}": polar_pattern(ideal, axis) for axis in "xyz"})
    return {name: float(np.vdot(delta, pattern) / np.vdot(pattern, pattern))
            for name, pattern in patterns.items()}


def relaxed_phases(calc, a0: float, fmax: float, steps: int) -> Dict[str, Atoms]:
    """The cubic, tetragonal (a0a0c−) and orthorhombic (a−a−c+) 2×2×2 cells, relaxed."""
    phases = {"cubic": cubic_supercell(a0, BASE_REPEAT)}
    for name, start in (("tetragonal", TETRAGONAL_START), ("orthorhombic", ORTHORHOMBIC_START)):
        phases[name] = relax_under_symmetry(tilt_start(a0, start), calc, fmax, steps, name)
    return phases


def describe_phases(phases: Dict[str, Atoms], frames: Dict[str, Atoms], a0: float) -> Dict:
    cubic_energy = frames["cubic"].get_potential_energy() / len(frames["cubic"])
    out = {}
    for name, atoms in phases.items():
        frame = frames[name]
        per_atom = frame.get_potential_energy() / len(frame)
        out[name] = {
            "space_group": space_group(atoms),
            "cell_A": np.round(atoms.cell.array, 5).tolist(),
            "cell_lengths_angles": np.round(atoms.cell.cellpar(), 4).tolist(),
            "energy_eV_per_fu": per_atom * ATOMS_PER_FORMULA_UNIT,
            "energy_vs_cubic_meV_per_fu": (per_atom - cubic_energy) * ATOMS_PER_FORMULA_UNIT * 1e3,
            "mode_amplitudes_A": {k: round(v, 4) for k, v in mode_amplitudes(atoms, a0).items()
                                  if abs(v) > 1e-4},
            "max_force_eV_per_A": float(np.abs(frame.get_forces()).max()),
        }
    return out


# --------------------------------------------------------------------------------------------
# Frozen-mode scans and mixtures
# --------------------------------------------------------------------------------------------
def r_tilt_scan(calc, a0: float, amplitude_max: float, step: float) -> Tuple[List[Atoms], Dict]:
    """Frozen R-point tilt about z (a0a0c−) of the cubic 2×2×2 cell at a0, amplitudes from
    −max to +max Å. Frames for amplitudes ≥ 0 (E(−A) = E(A) by symmetry) and the curve."""
    from scipy.optimize import minimize_scalar
    ideal = cubic_supercell(a0, BASE_REPEAT)
    pattern = tilt_pattern(ideal, a0, "z", "R")
    n_fu = len(ideal) // ATOMS_PER_FORMULA_UNIT
    n_side = int(round(amplitude_max / step))
    amplitudes = step * np.arange(-n_side, n_side + 1)
    frames, energies = [], []
    for amplitude in tqdm(amplitudes, desc="R-tilt scan", unit="cell"):
        frame = labelled(displaced(ideal, (amplitude, pattern)), calc, config_type="r_tilt_scan",
                         phase="cubic", mode="R_z", amplitude_A=float(amplitude))
        energies.append(frame.get_potential_energy() / n_fu)
        if amplitude >= -1e-12:
            frames.append(frame)
    energies = np.array(energies)
    e_cubic = energies[n_side]
    relative = energies - e_cubic

    def energy(amplitude):  # eV per formula unit
        return energy_of(displaced(ideal, (amplitude, pattern)), calc) / n_fu

    positive = amplitudes >= 0
    i_min = int(np.argmin(np.where(positive, relative, np.inf)))
    lower, upper = amplitudes[max(i_min - 1, n_side)], amplitudes[min(i_min + 1, 2 * n_side)]
    if i_min == n_side:
        minimum = {"amplitude_A": 0.0, "depth_meV_per_fu": 0.0}
    else:
        refined = minimize_scalar(energy, bounds=(lower, upper), method="bounded",
                                  options={"xatol": 1e-5})
        minimum = {"amplitude_A": float(refined.x),
                   "depth_meV_per_fu": float((e_cubic - refined.fun) * 1e3),
                   "tilt_angle_deg": float(np.degrees(np.arctan(2.0 * refined.x / a0)))}
    curve = {
        "description": "Frozen R-point octahedral tilt about z (Glazer a0a0c-) of the cubic "
                       "CsPbBr3 2x2x2 supercell at the 7net-0 lattice parameter a0 (cell fixed, "
                       "no other relaxation); reference energies from SevenNet-0 (7net-0).",
        "pattern": "examples/cspbbr3/modes.py: displaced(cubic_supercell(a0, (2, 2, 2)), "
                   "(A, tilt_pattern(cell, a0, 'z', 'R'))); A = displacement of each equatorial "
                   "Br in angstrom",
        "a0_A": a0,
        "supercell": list(BASE_REPEAT),
        "atoms_per_cell": len(ideal),
        "amplitude_A": [round(float(a), 6) for a in amplitudes],
        "energy_eV_per_fu": [float(e) for e in relative],
        "energy_zero_eV_per_fu": float(e_cubic),
        "energy_note": "energy_eV_per_fu is relative to the undistorted cubic cell "
                       "(amplitude 0), whose absolute 7net-0 energy is energy_zero_eV_per_fu",
        "minimum": minimum,
        "in_data_set": "the amplitude >= 0 points, config_type=r_tilt_scan, info amplitude_A",
    }
    return frames, curve


def mode_scans(calc, a0: float) -> List[Atoms]:
    """M-point tilt and polar Γ scans, and an isotropic volume scan, of the cubic 2×2×2 cell."""
    ideal = cubic_supercell(a0, BASE_REPEAT)
    jobs = [(ideal, "m_tilt_scan", "M_z", a, tilt_pattern(ideal, a0, "z", "M"))
            for a in np.round(np.arange(0.1, 1.01, 0.1), 6)]
    jobs += [(ideal, "polar_scan", "polar_z", a, polar_pattern(ideal, "z"))
             for a in np.round(np.arange(0.04, 0.241, 0.04), 6)]
    frames = []
    for cell, kind, mode, amplitude, pattern in tqdm(jobs, desc="mode scans", unit="cell"):
        frames.append(labelled(displaced(cell, (amplitude, pattern)), calc, config_type=kind,
                               phase="cubic", mode=mode, amplitude_A=float(amplitude)))
    for strain in tqdm((-0.03, -0.02, -0.01, 0.01, 0.02, 0.03), desc="volume scan", unit="cell"):
        cell = ideal.copy()
        cell.set_cell(ideal.cell.array * (1.0 + strain), scale_atoms=True)
        frames.append(labelled(cell, calc, config_type="volume_scan", phase="cubic",
                               linear_strain=float(strain)))
    return frames


def mode_mixtures(calc, a0: float, count: int, rng: np.random.Generator) -> List[Atoms]:
    """Random superpositions of all R and M tilts (|A| ≤ 0.6 Å, 0.5 Å) and polar modes
    (σ 0.05 Å) of the cubic 2×2×2 cell, with a 0.03 Å rattle and ≤ 1 % isotropic strain."""
    ideal = cubic_supercell(a0, BASE_REPEAT)
    patterns = {f"R_{k}": tilt_pattern(ideal, a0, k, "R") for k in "xyz"}
    patterns.update({f"M_{k}": tilt_pattern(ideal, a0, k, "M") for k in "xyz"})
    patterns.update({f"polar_{k}": polar_pattern(ideal, k) for k in "xyz"})
    frames = []
    for _ in tqdm(range(count), desc="mode mixtures", unit="cell"):
        amplitude = {name: (rng.uniform(-0.6, 0.6) if name[0] == "R" else
                            rng.uniform(-0.5, 0.5) if name[0] == "M" else rng.normal(0.0, 0.05))
                     for name in patterns}
        cell = displaced(ideal, *[(amplitude[name], patterns[name]) for name in patterns])
        cell.positions += rng.normal(0.0, 0.03, size=cell.positions.shape)
        cell.set_cell(cell.cell.array * (1.0 + rng.uniform(-0.01, 0.01)), scale_atoms=True)
        frames.append(labelled(cell, calc, config_type="mode_mix", phase="cubic",
                               mode_amplitudes_A=np.array([amplitude[n] for n in patterns]),
                               mode_names=" ".join(patterns)))
    return frames


# --------------------------------------------------------------------------------------------
# Strains and rattles of the relaxed phases
# --------------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------------
# Molecular dynamics
# --------------------------------------------------------------------------------------------
def md_frames(calc, phases: Dict[str, Atoms], args, rng_seeds) -> List[Atoms]:
    runs = [((1, 1, 1), t, phase, args.n_md_steps) for t, phase in MD_2X2X2]
    runs += [(repeat, t, phase, args.n_md_steps_large) for repeat, t, phase in MD_LARGE]
    frames = []
    jobs = list(zip(runs, rng_seeds.spawn(len(runs))))
    for (repeat, temperature, phase, n_sample), seed in tqdm(jobs, desc="MD runs", unit="run"):
        start = phases[phase].repeat(repeat)
        frames += md_snapshots(calc, start, phase, temperature, args.n_equil_steps, n_sample,
                               args.md_interval, args.timestep, args.friction,
                               np.random.default_rng(seed))
    return frames


# --------------------------------------------------------------------------------------------
# EFG labels, statistics, output
# --------------------------------------------------------------------------------------------
def label_efg_only(args) -> None:
    frames = read_extxyz(args.label_efg_only)
    add_efg_labels(frames, FORMAL_CHARGES)
    write_frames(frames, args.out)
    print(f"{args.out}: {len(frames)} structures with point-charge EFG labels")


def label_structures(args) -> None:
    """7net-0 energy, forces, stress and point-charge EFGs for every structure of ``--label``."""
    calc, _ = load_sevennet0(args.device, args.threads)
    frames = read_extxyz(args.label)
    frames = [labelled(atoms, calc, **atoms.info)
              for atoms in tqdm(frames, desc="7net-0", unit="cell")]
    add_efg_labels(frames, FORMAL_CHARGES)
    write_frames(frames, args.out)
    print(f"{args.out}: {len(frames)} structures labelled by {MODEL_NAME}")


def generate(args) -> None:
    timings: Dict[str, float] = {}
    start_all = time.perf_counter()
    clock = time.perf_counter()

    def lap(name):
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 1)
        clock = now

    calc, provenance = load_sevennet0(args.device, args.threads)
    lap("load_model")
    seeds = dict(zip(("mode_mix", "strain", "rattle", "md"),
                     np.random.SeedSequence(args.seed).spawn(4)))

    a0 = relax_cubic_a0(calc)
    print(f"7net-0 cubic lattice parameter a0 = {a0:.5f} Å")
    phases = relaxed_phases(calc, a0, args.fmax, args.max_relax_steps)
    minima = {name: labelled(atoms, calc, config_type="phase_min", phase=name)
              for name, atoms in phases.items()}
    phase_info = describe_phases(phases, minima, a0)
    for name, info in phase_info.items():
        print(f"{name:>12}: {info['space_group']:<14} E - E_cubic = "
              f"{info['energy_vs_cubic_meV_per_fu']:8.2f} meV/f.u.  "
              f"cell {info['cell_lengths_angles']}")
    lap("relax")

    frames: List[Atoms] = list(minima.values())
    scan_frames, curve = r_tilt_scan(calc, a0, args.tilt_scan_max, args.tilt_scan_step)
    frames += scan_frames
    frames += mode_scans(calc, a0)
    frames += mode_mixtures(calc, a0, args.n_mode_mix, np.random.default_rng(seeds["mode_mix"]))
    lap("scans_and_mixtures")
    frames += strained_cells(calc, phases, args.n_strain, np.random.default_rng(seeds["strain"]))
    frames += rattled_cells(calc, phases, args.n_rattle, (args.rattle_min, args.rattle_max),
                            np.random.default_rng(seeds["rattle"]))
    lap("strains_and_rattles")
    frames += md_frames(calc, phases, args, seeds["md"])
    lap("md")
    add_efg_labels(frames, FORMAL_CHARGES)
    lap("efg")
    write_frames(frames, args.out)
    lap("write")
    timings["total"] = round(time.perf_counter() - start_all, 1)

    stats = statistics(frames)
    write_json(args.tilt_scan_out, curve)
    summary = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
        "arguments": {k: (shown_path(v) if isinstance(v, Path) else v)
                      for k, v in vars(args).items()},
        "provenance": provenance,
        "python": platform.python_version(),
        "a0_A": a0,
        "phases": phase_info,
        "r_tilt_double_well": curve["minimum"],
        "formal_charges_e": FORMAL_CHARGES,
        "statistics": stats,
        "timings_s": timings,
        "output": {"file": args.out.name, "bytes": args.out.stat().st_size},
    }
    write_json(args.summary_out, summary)
    print(json.dumps({"a0_A": a0, "r_tilt_double_well": curve["minimum"], **stats,
                      "timings_s": timings}, indent=1))


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if args.label is not None and args.label_efg_only is not None:
        raise SystemExit("make_reference.py: --label and --label-efg-only exclude each other")
    if args.label is not None:
        label_structures(args)
    elif args.label_efg_only is not None:
        label_efg_only(args)
    else:
        generate(args)


if __name__ == "__main__":
    main()
