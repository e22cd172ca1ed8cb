"""``efg harmonic``: options and printed summary of :func:`efg.harmonic.run_harmonic`."""
import argparse
import warnings
from typing import List

import numpy as np

from pyexport.cli.options import defaults_of, show_defaults, with_config
from pyexport.nmr import parse_isotope_options

from efg.harmonic import STATISTICS, HarmonicWarning, NamedMode, run_harmonic
from efg.harmonic.relax import relaxation_line


def mode_arg(text: str) -> NamedMode:
    """``--mode 'q1 q2 q3 band'`` -> NamedMode."""
    parts = text.replace(",", " ").split()
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"--mode {text!r}: expected 'q1 q2 q3 band', e.g. '0.5 0.5 0.5 0'")
    try:
        return NamedMode(tuple(float(p) for p in parts[:3]), int(parts[3]))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--mode {text!r}: expected three numbers and an integer band") from None


def mesh_arg(values: List[str]):
    """``--mesh``: one length (Å, float) or three integers."""
    if len(values) == 1:
        return float(values[0])
    if len(values) == 3:
        return [int(v) for v in values]
    raise argparse.ArgumentTypeError("--mesh: one length (Å) or three integers")


def add_parser(subparsers) -> argparse.ArgumentParser:
    defaults = defaults_of(run_harmonic)
    p = subparsers.add_parser(
        "harmonic", help="phonopy harmonic baseline from an exported potential",
        description="Force constants, bands/DOS, imaginary modes, harmonic sampling at T "
                    "(classical and quantum), MSDs, EFG/C_Q/eta over harmonic samples and the "
                    "energy along unstable modes, from the same potential.pt LAMMPS runs. "
                    "Writes a JSON report and PNGs beside it.")
    p.add_argument("--potential", required=True, help="exported potential (.pt)")
    p.add_argument("--structure", required=True, help="equilibrium structure (POSCAR, CIF, extxyz, ...)")
    p.add_argument("--relax", type=float, default=None, metavar="FMAX",
                   help="eV/Å: first relax the structure with the potential (positions and cell at "
                        "zero pressure, space group kept) until every force component is <= FMAX, "
                        "e.g. 1e-4; written to <output stem>_relaxed.vasp. Without it a structure "
                        "with residual forces > 1e-3 eV/Å gets a warning")
    p.add_argument("--relax-fixed-cell", action="store_true",
                   help="with --relax: relax the positions only, keep the cell")
    p.add_argument("--supercell", required=True, nargs="+", type=int, metavar="N",
                   help="supercell of the structure: 3 integers (diagonal) or 9 (matrix, rows)")
    p.add_argument("--temperatures", default=defaults["temperatures"],
                   help="K: start:stop:step (stop included) or a comma list")
    p.add_argument("--samples", type=int, default=defaults["n_samples"], help="harmonic samples per temperature")
    p.add_argument("--statistics", choices=["classical", "quantum", "both"], default="both")
    p.add_argument("--efg-model", default=None, help="exported EFG model (.pt): EFG over the samples")
    p.add_argument("--efg-samples", type=int, default=defaults["efg_samples"],
                   help="of those, how many get the EFG model (each is a whole supercell)")
    p.add_argument("--isotope", action="append", default=[], metavar="EL=ISO",
                   help="isotope for C_Q, e.g. Br=81Br (repeatable); other elements get their "
                        "default isotope (pyexport.nmr.DEFAULT_ISOTOPES)")
    p.add_argument("--displacement", type=float, default=defaults["displacement"],
                   help="finite displacement, Å")
    p.add_argument("--mesh", nargs="+", default=None, metavar="M",
                   help=f"DOS/thermal/MSD mesh: three integers, or one length in Å "
                        f"(default: {defaults['mesh']:g} Å)")
    p.add_argument("--band-points", type=int, default=defaults["band_points"],
                   help="q-points per band-path segment")
    p.add_argument("--imaginary-tolerance", type=float, default=defaults["imaginary_tolerance"],
                   help="THz: f < -tol is imaginary, |f| <= tol is zero")
    p.add_argument("--mode", action="append", default=[], type=mode_arg, metavar="'Q1 Q2 Q3 BAND'",
                   help="also compute the energy along this mode (q in the primitive reciprocal "
                        "basis, 0-based band); repeatable")
    p.add_argument("--mode-max-displacement", type=float, default=defaults["mode_max_displacement"],
                   help="largest atomic displacement of the mode energy scans, Å")
    p.add_argument("--mode-points", type=int, default=defaults["mode_points"],
                   help="points per mode energy scan")
    p.add_argument("--max-unstable-curves", type=int, default=defaults["max_unstable_curves"],
                   help="energy scans along at most this many unstable modes (one per degenerate "
                        "set and q-star; special points first, then most unstable first; 0 for none)")
    p.add_argument("--seed", type=int, default=defaults["seed"], help="seed of the harmonic sampler")
    p.add_argument("--symprec", type=float, default=defaults["symprec"], help="symmetry tolerance (Å)")
    p.add_argument("--threads", type=int, default=defaults["threads"], help="torch threads")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("-o", "--output", required=True, help="JSON report; PNGs are written beside it")
    p.set_defaults(func=with_config(run, p))
    show_defaults(p)
    return p


def run(args: argparse.Namespace) -> int:
    statistics = STATISTICS if args.statistics == "both" else (args.statistics,)
    mesh = defaults_of(run_harmonic)["mesh"] if args.mesh is None else mesh_arg(args.mesh)
    with warnings.catch_warnings():
        warnings.simplefilter("always", HarmonicWarning)
        report = run_harmonic(
            potential=args.potential, structure=args.structure, supercell=args.supercell,
            output=args.output, temperatures=args.temperatures, n_samples=args.samples,
            statistics=statistics, efg_model=args.efg_model, isotopes=parse_isotope_options(args.isotope),
            efg_samples=args.efg_samples,
            displacement=args.displacement, mesh=mesh, band_points=args.band_points,
            imaginary_tolerance=args.imaginary_tolerance, modes=args.mode,
            mode_max_displacement=args.mode_max_displacement, mode_points=args.mode_points,
            max_unstable_curves=args.max_unstable_curves, seed=args.seed, symprec=args.symprec,
            threads=args.threads, relax=args.relax, relax_cell=not args.relax_fixed_cell,
            progress=not args.no_progress)
    print_summary(report)
    return 0


def stability_line(imaginary_modes: dict) -> str:
    """'dynamically stable: ...' or 'NOT dynamically stable: ...' with the lowest mode."""
    mesh = imaginary_modes["mesh"]
    low = mesh["lowest_mode"]
    where = (f"lowest {low['frequency_THz']:.3f} THz at q = {np.round(low['qpoint'], 4).tolist()} "
             f"band {low['band_index']} (acoustic modes at Γ apart)")
    grid = "x".join(str(n) for n in mesh["mesh"])
    if imaginary_modes["dynamically_stable"]:
        return (f"dynamically stable: every mode real on the {grid} mesh, the commensurate q-points "
                f"and the band path; {where}")
    return (f"NOT dynamically stable: {mesh['n_imaginary']} of {mesh['n_modes']} modes imaginary on the "
            f"{grid} mesh (f < -{imaginary_modes['tolerance_THz']:g} THz); {where}")


def print_summary(report: dict) -> None:
    s = report["structure"]
    fc = report["force_constants"]
    print(f"{s['formula']}  {s['space_group']}  primitive {s['n_atoms_primitive']} atoms, "
          f"supercell {s['n_atoms_supercell']} atoms, {fc['n_displacements']} displacements")
    relaxed = relaxation_line(report.get("relaxation"))
    if relaxed:
        print(relaxed)
    im = report["imaginary_modes"]
    print(stability_line(im))
    for point in im["special_points"]:
        freqs = ", ".join(f"{m['frequency_THz']:.3f}" + (f" ({m['irrep']})" if m["irrep"] else "")
                          for m in point["imaginary"])
        print(f"imaginary at {point['label']} {np.round(point['qpoint'], 4).tolist()}: {freqs} THz")
    print(f"imaginary modes on the mesh: {im['mesh']['n_imaginary']} of {im['mesh']['n_modes']}; "
          f"lowest on the band path {im['band_path_min_frequency_THz']:.3f} THz")
    for curve in report["mode_energy_curves"]:
        well = curve["well"]
        depth = ""
        if well:
            edge = " (lowest point at the edge of the scan)" if well["at_edge_of_scan"] else ""
            depth = f", well depth {well['depth_meV_per_primitive_cell']:.2f} meV/primitive cell{edge}"
        print(f"mode {curve['label'] or ''} q={np.round(curve['qpoint'], 4).tolist()} band {curve['band_index']}: "
              f"{curve['frequency_THz']:.3f} THz{depth}")
    for w in report["warnings"]:
        print(f"warning: {w}")
    t = report["timings_s"]
    print("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in t.items()))
    print("wrote " + ", ".join(report["outputs"].values()))
