"""Defaults live once: in the signature of the library function a command calls.

A command's parser takes each default from there (:func:`defaults_of`), and ``--help`` shows it
(:class:`HelpFormatter`), so the library, the command line and its help cannot disagree.
"""
import argparse
import inspect
from typing import Any, Callable, Dict


def defaults_of(function: Callable) -> Dict[str, Any]:
    """{parameter: default} of ``function``'s keyword parameters that have one."""
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.default is not inspect.Parameter.empty}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default, except where there is none to show."""

    def _get_help_string(self, action):
        if action.default in (None, False, []) or action.required:
            return action.help
        return super()._get_help_string(action)
