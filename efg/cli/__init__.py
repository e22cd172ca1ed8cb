"""The ``efg`` command: NMR observables from trajectories and the harmonic baseline.

The command line lives here and only here: each command is one module of this package
(``analyze``, ``scan``, ``harmonic``, ``compare``) with ``add_parser(subparsers)``, whose parser
sets ``func`` to the function that runs it. These modules parse options, call the library
(:mod:`efg.analyze`, ...), print the summary and return the exit code; the library returns data
and logs (``logging``). Option defaults are taken from the library functions' signatures
(:func:`pyexport.cli.options.defaults_of`), and ``--help`` shows them
(:func:`pyexport.cli.options.show_defaults`). A new command is one module plus its name in
:data:`COMMANDS`. Around every command, :func:`pyexport.cli.common.run_main`, shared with the
``pyexport`` program.
"""
import argparse
import importlib
import sys
from typing import Optional, Sequence

from pyexport import __version__
from pyexport.cli.common import add_common_arguments, run_main

#: command modules, in the order ``efg --help`` lists them
COMMANDS = ["analyze", "scan", "harmonic", "compare"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="efg", description="Electric field gradients and NMR quadrupolar parameters from MD "
                                "trajectories, with a phonopy harmonic baseline.")
    add_common_arguments(parser, __version__)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The ``efg`` program: ``--version``, ``--traceback``, one-line errors and the library's log
    records as ``efg <command>: warning: ...``, the same as ``pyexport``
    (:func:`pyexport.cli.common.run_main`)."""
    return run_main(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
