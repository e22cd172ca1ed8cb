"""The ``efg`` command: NMR observables from trajectories and the harmonic baseline.

The command line lives here and only here: each command is one module of this package
(``analyze``, ``scan``, ``harmonic``, ``compare``) with ``add_parser(subparsers)``, whose parser
sets ``func`` to the function that runs it. These modules parse options, call the library
(:mod:`efg.analyze`, ...), print the summary and return the exit code; the library returns data
and logs (``logging``). Option defaults are taken from the library functions' signatures
(:mod:`.defaults`), and ``--help`` shows them. A new command is one module plus its name in
:data:`COMMANDS`.
"""
import argparse
import importlib
import logging
import sys

#: command modules, in the order ``efg --help`` lists them
COMMANDS = ["analyze", "scan", "harmonic", "compare"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="efg", description="Electric field gradients and NMR quadrupolar parameters from MD "
                                "trajectories, with a phonopy harmonic baseline.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(subparsers)
    return parser


class _UserLog(logging.Handler):
    """The library's warnings as ``efg <command>: warning: ...`` on stderr."""

    def __init__(self, prefix: str):
        super().__init__(logging.WARNING)
        self.prefix = prefix

    def emit(self, record: logging.LogRecord) -> None:
        print(f"{self.prefix}: {record.levelname.lower()}: {record.getMessage()}", file=sys.stderr)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    prefix = f"efg {args.command}"
    handler = _UserLog(prefix)
    logger = logging.getLogger("efg")
    logger.addHandler(handler)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"{prefix}: error: {exc}", file=sys.stderr)
        return 1
    finally:
        logger.removeHandler(handler)


if __name__ == "__main__":
    sys.exit(main())
