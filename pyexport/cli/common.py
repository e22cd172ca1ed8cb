"""What both command lines (``pyexport`` and ``efg``) do around a command: :func:`run_main`.

- ``--version`` and ``--traceback`` on the top-level parser (:func:`add_common_arguments`);
- no command given: the help, exit code 2 (argparse's own usage errors exit 2 as well);
- an error the user can fix (ValueError, OSError, FileNotFoundError, FileExistsError) is one
  line ``<prog> <command>: error: <message>`` on stderr and exit code 1; ``--traceback`` shows
  the Python traceback instead;
- the warnings of :mod:`pyexport.data` (steps left out, SCF-unconverged; their message names
  the file) print as ``<prog> <command>: warning: <message>``, without the reader's source line;
- the library's log records (``logging.getLogger(__name__)`` in :mod:`pyexport` and :mod:`efg`)
  reach the user: INFO as plain lines on stdout, WARNING and above as
  ``<prog> <command>: warning: ...`` on stderr.

``efg`` imports this module (``efg`` may import ``pyexport``, never the reverse).
"""
import argparse
import contextlib
import logging
import sys
import warnings
from typing import Optional, Sequence

#: Exceptions that are the user's to fix (a bad option, a missing or unreadable file): one line,
#: exit code 1. Anything else is a bug and shows its traceback.
USER_ERRORS = (ValueError, OSError)

#: Packages whose loggers :func:`run_main` shows.
LOGGED_PACKAGES = ("pyexport", "efg")


def add_common_arguments(parser: argparse.ArgumentParser, version: str) -> None:
    """``--version`` and ``--traceback``, the options every program has."""
    parser.add_argument("--version", action="version", version=f"{parser.prog} {version}")
    parser.add_argument("--traceback", action="store_true", help="show the Python traceback on errors")


def command_name(args: argparse.Namespace) -> str:
    """The command the user ran (``fit``; ``committee`` for ``committee fit``), as messages name it."""
    return getattr(args, "command", None) or ""


class _UserHandler(logging.Handler):
    """INFO records as plain lines on stdout, WARNING and above prefixed on stderr; the streams
    are looked up when a record is written (so captured or redirected streams are honoured)."""

    def __init__(self, prefix: str):
        super().__init__(logging.INFO)
        self.prefix = prefix

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            print(f"{self.prefix}: {record.levelname.lower()}: {message}", file=sys.stderr)
        else:
            print(message, file=sys.stdout)


@contextlib.contextmanager
def user_logging(prefix: str):
    """Show the library's log records to the user while a command runs (see module docstring)."""
    handler = _UserHandler(prefix)
    loggers = [logging.getLogger(name) for name in LOGGED_PACKAGES]
    saved = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
        lg.propagate = False
    try:
        yield
    finally:
        for lg, (level, propagate) in zip(loggers, saved):
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate


def _show_data_warning(prefix: str):
    """``warnings.showwarning`` that prints the warnings of :mod:`pyexport.data` as
    ``<prefix>: warning: ...`` without the reader's source line; other warnings as before."""
    from pyexport.data import IncompleteDataWarning, UnconvergedSCFWarning

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, (IncompleteDataWarning, UnconvergedSCFWarning)):
            print(f"{prefix}: warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)
    return show


def run_command(args: argparse.Namespace, prefix: str) -> int:
    """Run ``args.func(args)`` with the reading options, data warnings and logging of a command;
    exceptions pass through."""
    from pyexport.data import read_options

    with warnings.catch_warnings(), user_logging(prefix), \
            read_options(getattr(args, "incomplete", None), getattr(args, "unconverged", None)):
        warnings.showwarning = _show_data_warning(prefix)
        return int(args.func(args) or 0)


def run_main(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv``, run the chosen command and turn user errors into one line and an exit
    code (see the module docstring). The parser's commands set ``func`` (``set_defaults``)."""
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    prefix = f"{parser.prog} {command_name(args)}"
    try:
        return run_command(args, prefix)
    except USER_ERRORS as exc:
        if getattr(args, "traceback", False):
            raise
        print(f"{prefix}: error: {exc}", file=sys.stderr)
        return 1
