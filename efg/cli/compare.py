"""``efg compare``: options and printed summary of :func:`efg.compare.compare` (the harmonic
baseline against the MD temperature scan)."""
import argparse
from pathlib import Path

from pyexport.cli.options import show_defaults, with_config

from efg import compare as comparison
from efg.compare import compare


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("compare", help="harmonic (phonopy) vs MD report",
                              description=comparison.__doc__.split("\n\n")[0])
    p.add_argument("harmonic", help="harmonic.json of efg harmonic")
    p.add_argument("scan", help="scan.json of efg scan (its runs are read too)")
    p.add_argument("-o", "--output", required=True, help="report folder (report.md, compare.json, PNGs)")
    p.set_defaults(func=with_config(run, p))
    show_defaults(p)


def run(args: argparse.Namespace) -> int:
    result = compare(args.harmonic, args.scan, args.output)
    print(f"{len(result['rows'])} comparisons, {result['n_departing']} where harmonic departs from MD "
          f"by more than the MD error bar; wrote {Path(args.output) / 'report.md'}")
    return 0
