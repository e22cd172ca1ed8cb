"""The ``pyexport`` command line: one module per command, each with ``add_<command>_parser
(subparsers)`` that sets ``func`` on its parser. Adding a command is one module and one line in
:data:`COMMANDS`.

The command modules are the only places that parse arguments, print or decide exit codes; the
work is done by library functions that return data (:mod:`pyexport.fit`, :mod:`pyexport.export`,
:mod:`pyexport.evaluate`, ...). Errors, ``--traceback``, ``--version`` and logging are shared with
the ``efg`` program (:func:`pyexport.cli.common.run_main`); defaults and ``--config`` files are
:mod:`pyexport.cli.options`.
"""
import argparse
from typing import Optional, Sequence

from .committee import add_committee_parser
from .common import add_common_arguments, run_main
from .eval import add_eval_parser
from .export import add_export_parser
from .fit import add_fit_parser
from .fit_efg import add_fit_efg_parser
from .inspect import add_inspect_parser
from .label import add_label_parser
from .scan import add_scan_parser
from .select import add_select_parser
from .short_range import add_short_range_parser
from .vasp_inputs import add_vasp_inputs_parser

#: Subcommand registrations, in help order.
COMMANDS = [add_fit_parser, add_committee_parser, add_fit_efg_parser, add_export_parser, add_inspect_parser,
            add_eval_parser, add_scan_parser, add_select_parser, add_vasp_inputs_parser,
            add_short_range_parser, add_label_parser]


def add_read_arguments(p) -> None:
    """``--incomplete`` / ``--unconverged``: how a command reads partly printed and SCF-unconverged
    VASP steps (:func:`pyexport.data.read_options`)."""
    from ..data import INCOMPLETE_CHOICES, UNCONVERGED_CHOICES

    group = p.add_argument_group("reading VASP data")
    group.add_argument("--incomplete", choices=INCOMPLETE_CHOICES,
                       help="steps VASP printed only partly (NWRITE < 2, a run killed mid-step): 'error' "
                            "(default) refuses the file, 'warn' reads its complete steps and says which were left out")
    group.add_argument("--unconverged", choices=UNCONVERGED_CHOICES,
                       help="SCF-unconverged steps (the electronic loop ran all NELM steps): 'warn' (default) "
                            "keeps them and says how many, 'drop' leaves them out")


def _add_read_arguments_where_data_is_read(subparsers) -> None:
    """``add_read_arguments`` on every (sub)command with DFT data files (``data`` positionals or a
    ``--reference`` data file), nested ones (``committee fit``) included."""
    for p in subparsers.choices.values():
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_read_arguments_where_data_is_read(action)
        if any(action.dest in ("data", "reference") for action in p._actions):
            add_read_arguments(p)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="pyexport", description="DFT data in, efgmd potential / EFG models out.")
    add_common_arguments(parser, __version__)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in COMMANDS:
        register(subparsers)
    _add_read_arguments_where_data_is_read(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The ``pyexport`` program (entry point ``pyexport = "pyexport.cli:main"``)."""
    return run_main(build_parser(), argv)
