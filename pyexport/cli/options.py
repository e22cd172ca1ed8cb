"""Options of the long-running commands: one table of defaults per command, ``--config`` files,
and ``--help`` that shows the defaults.

Every command keeps its defaults in one dict (``FIT_DEFAULTS``, ``SELECT_DEFAULTS``, ...), whose
keys are the option names (``dest``). Its argparse options default to None, so that an option
left off the command line can be told from one given; :func:`resolve_options` then takes

    the table  <  the --config file (JSON or TOML, keys = option names, ``-`` or ``_``)  <  flags

and :func:`show_defaults` appends ``(default: X)`` from the table to each option's help, so the
help and the behaviour cannot disagree. The ``efg`` commands take their defaults from the
signature of the library function they call (:func:`defaults_of`) as argparse defaults, and
``show_defaults(parser)`` shows those.
"""
import argparse
import inspect
import json
import os
from typing import Callable, Dict, List, Optional


#: ``--max-atoms`` of ``fit`` and ``fit-efg`` (:func:`pyexport.training.data.at_most_atoms`).
MAX_ATOMS_HELP = ("leave out structures of more than this many atoms (a fit's cost grows with the atoms: "
                  "large MD frames can dominate it); the metrics record it")


def defaults_of(function: Callable) -> Dict[str, object]:
    """{parameter: default} of a library function's parameters (its positional ones without a
    default as None): a command's table of defaults when the function is where they are written."""
    return {name: (None if p.default is inspect.Parameter.empty else p.default)
            for name, p in inspect.signature(function).parameters.items()}


def add_config_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="JSON or TOML file of options (keys = option names); flags given win")


def with_config(run: Callable, p: argparse.ArgumentParser) -> Callable:
    """``run`` of a command whose argparse options carry their own defaults (the ``efg``
    commands), with ``--config`` (added here): every option left at its default takes the file's
    value (keys = option names, ``-`` or ``_``; unknown keys are an error naming the file), and
    flags given on the command line win. Options that must be on the command line (``required``)
    stay there."""
    add_config_argument(p)
    defaults = {a.dest: a.default for a in p._actions
                if a.dest not in ("help", "config") and a.default is not argparse.SUPPRESS}

    def run_with_config(args: argparse.Namespace) -> int:
        if getattr(args, "config", None):
            for key, value in read_config(args.config, defaults).items():
                if getattr(args, key, None) == defaults[key]:
                    setattr(args, key, value)
        return run(args)

    return run_with_config


def show_defaults(p: argparse.ArgumentParser, defaults: Optional[Dict[str, object]] = None) -> None:
    """Append ``(default: X)`` to the help of ``p``'s options, after they are all added.

    X comes from ``defaults`` {dest: value}, the table of a command whose options default to
    None (:func:`resolve_options`); without it, from each option's own argparse default (the
    ``efg`` commands, whose defaults are the library signature's, :func:`defaults_of`). Not for
    on/off flags, whose help says what they change, required options, nor where there is no
    default value."""
    for action in p._actions:
        value = action.default if defaults is None else defaults.get(action.dest)
        if (action.help in (None, argparse.SUPPRESS) or action.nargs == 0 or action.required
                or value in (None, [], "")):
            continue
        action.help += f" (default: {value})".replace("%", "%%")   # argparse %-formats help


def read_config(path: str, known: Dict[str, object]) -> dict:
    """Options from a JSON or TOML file; keys outside ``known`` are an error naming the file.
    Relative ``data`` paths are relative to the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: config file not found")
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        if path.endswith(".toml"):
            import tomllib

            values = tomllib.loads(raw.decode())
        else:
            values = json.loads(raw.decode())
    except Exception as exc:
        raise ValueError(f"{path}: cannot parse config ({exc})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: config must be a table/object of options")
    out = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ValueError(f"{path}: unknown option {key!r}; known: {sorted(known)}")
        out[name] = value
    if "data" in out:
        if isinstance(out["data"], str):
            out["data"] = [out["data"]]
        base = os.path.dirname(os.path.abspath(path))
        out["data"] = [d if os.path.isabs(d) else os.path.join(base, d) for d in out["data"]]
    return out


def resolve_options(args: argparse.Namespace, defaults: Dict[str, object]) -> dict:
    """The options of a command: ``defaults`` < ``args.config`` < flags given (not None; a
    positional list only when not empty)."""
    options = dict(defaults)
    if getattr(args, "config", None):
        options.update(read_config(args.config, defaults))
    for key in defaults:
        value = getattr(args, key, None)
        if isinstance(value, list) and not value:
            continue
        if value is not None:
            options[key] = list(value) if isinstance(value, list) else value
    return options


def require(options: dict, *keys: str) -> None:
    """Options that have no default and must come from the command line or --config."""
    for key in keys:
        if options.get(key) in (None, [], ""):
            flag = key if key in ("data", "model") else "--" + key.replace("_", "-")
            raise ValueError(f"{flag} is required: give it on the command line or as {key!r} in --config")


def number_list(text, name: str, kind=float) -> List:
    """``"0.8,0.1,0.1"`` (a flag or config string) or a config list as numbers."""
    if isinstance(text, (list, tuple)):
        return [kind(v) for v in text]
    try:
        return [kind(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--{name.replace('_', '-')}: expected comma-separated numbers, got {text!r}") from None


def element_list(text) -> Optional[List[str]]:
    """``"Cs,Pb,Br"`` or a config list as element symbols; None stays None."""
    if text is None or isinstance(text, (list, tuple)):
        return None if text is None else list(text)
    return [e.strip() for e in str(text).split(",") if e.strip()] or None
