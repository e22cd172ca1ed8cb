"""``efg compare``: options and printed summary of :func:`efg.compare.compare` (the harmonic
baselines against the MD temperature scan)."""
import argparse
from pathlib import Path

from pyexport.cli.options import show_defaults, with_config

from efg import compare as comparison
from efg.compare import DEFAULT_Z_THRESHOLD, HarmonicReference, compare


def reference_arg(text: str) -> HarmonicReference:
    try:
        return HarmonicReference.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("compare", help="harmonic (phonopy) vs MD report",
                              description=comparison.__doc__.split("\n\n")[0])
    p.add_argument("scan", help="scan.json of efg scan (its runs are read too)")
    p.add_argument("--harmonic", action="append", required=True, type=reference_arg,
                   metavar="PATH:TMIN-TMAX",
                   help="an efg harmonic report and the MD temperatures (K, inclusive) it is the "
                        "baseline for: 0-250, 620- (no upper end), -250, or all; repeat for each "
                        "phase (ranges may not overlap). MD temperatures in no range get no "
                        "harmonic reference")
    p.add_argument("--z-threshold", type=float, default=DEFAULT_Z_THRESHOLD,
                   help="a quantity departs from the harmonic baseline when |harmonic - MD| / "
                        "sqrt(sigma_MD^2 + sigma_harm^2) >= this")
    p.add_argument("-o", "--output", required=True, help="report folder (report.md, compare.json, PNGs)")
    p.set_defaults(func=with_config(run, p))
    show_defaults(p)


def run(args: argparse.Namespace) -> int:
    result = compare(args.harmonic, args.scan, args.output, z_threshold=args.z_threshold)
    for ref in result["references"]:
        temps = ", ".join(f"{t:.0f}" for t in ref["md_temperatures_K"]) or "none"
        state = "all modes real" if ref["dynamically_stable"] else \
            f"{len(ref['unstable_modes'])} unstable mode sets, stable modes only"
        print(f"{ref['name']} ({ref['space_group']}, {state}): MD at {temps} K")
    without = [p["temperature_K"] for p in result["temperatures"] if p["reference"] is None]
    if without:
        print(f"no harmonic reference at {', '.join(f'{t:.0f}' for t in without)} K")
    print(f"{len(result['rows'])} comparisons, {result['n_departing']} depart from the harmonic "
          f"baseline (z >= {result['z_threshold']:g}); wrote {Path(args.output) / 'report.md'}")
    return 0
