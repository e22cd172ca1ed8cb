"""The ``efg`` command: NMR observables from trajectories and the harmonic baseline.

Each subcommand lives in its own module, which provides ``add_parser(subparsers)``; the parser
sets ``func`` to the function that runs it. A new subcommand is one more name in the list.
"""
import argparse
import importlib
import sys

#: subcommand modules, in the order ``efg --help`` lists them
SUBCOMMAND_MODULES = ["efg.analyze", "efg.scan", "efg.harmonic", "efg.compare"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="efg", description="Electric field gradients and NMR quadrupolar parameters from MD "
                                "trajectories, with a phonopy harmonic baseline.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"efg {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
