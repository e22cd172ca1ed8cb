"""The command line's shared parts: defaults shown by ``--help``, ``--config`` files on every
long-running command (one implementation, :mod:`pyexport.cli.options`), and the error / logging
wrapper both programs use (:func:`pyexport.cli.common.run_main`)."""
import argparse
import json
import logging
import os

import pytest

from pyexport.cli import build_parser, main
from pyexport.cli.common import add_common_arguments, run_main

DATA = os.path.join(os.path.dirname(__file__), "data")
WATER_DUMP = os.path.join(DATA, "mdanalysis", "wat.lammpstrj.bz2")   # 3 frames, 24 atoms, types H O
VASPRUN = os.path.join(DATA, "dpdata", "vasprun.h2o.md.10.xml")

LONG_RUNNING = (["fit"], ["committee", "fit"], ["fit-efg"], ["eval"], ["select"], ["scan"])


@pytest.mark.parametrize("command", LONG_RUNNING, ids=" ".join)
def test_every_long_running_command_takes_a_config_file(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(command + ["--help"])
    assert "--config CONFIG" in capsys.readouterr().out


@pytest.mark.parametrize("command, shown", [
    (["fit"], ["cutoff radius, Å (default: 6.0)", "(default: 0.8,0.1,0.1)", "(default: model.ckpt)"]),
    (["committee", "fit"], ["committee size K, at least 2 (default: 4)", "(default: committee.pt)"]),
    (["fit-efg"], ["cutoff radius, Å (default: 6.0)", "(default: efg.ckpt)", "(default: 300)"]),
    (["select"], ["descriptor radius r_c, Å (default: 6.0)", "(default: 48)", "(default: selected)"]),
    (["scan"], ["(default: -0.6:0.6:25)", "(default: scan.json)"]),
], ids=lambda v: " ".join(v) if isinstance(v, list) and len(v) < 3 else "")
def test_help_shows_the_defaults_the_command_uses(command, shown, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(command + ["--help"])
    text = " ".join(capsys.readouterr().out.split())     # argparse wraps lines
    for piece in shown:
        assert piece in text, piece


@pytest.mark.parametrize("command, shown, not_shown", [
    (["analyze"], ["(':' = all) (default: :)", "frame (default: 1)", "(several frames) (default: 4000)",
                   "are both (default: auto)"], ["LAMMPS text dump (.gz/.bz2/.xz fine) (default"]),
    (["harmonic"], ["(default: 100:500:50)", "finite displacement, Å (default: 0.01)",
                    "seed of the harmonic sampler (default: 0)", "(default: 80 Å)"],
     ["(default: None)", "(default: False)", "(default: [])", "(default: 80 Å) (default"]),
    (["scan"], [], ["(default"]),
], ids=lambda v: " ".join(v) if isinstance(v, list) and len(v) == 1 else "")
def test_efg_help_shows_the_library_defaults_with_the_same_helper(command, shown, not_shown, capsys):
    """efg's options default to the library signature's values; pyexport.cli.options.show_defaults
    shows them (a 0 too), not where there is none, nor for required options and on/off flags."""
    from efg.cli import build_parser as build_efg_parser

    with pytest.raises(SystemExit):
        build_efg_parser().parse_args(command + ["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for piece in shown:
        assert piece in text, piece
    for piece in not_shown:
        assert piece not in text, piece


def test_select_from_a_config_file_equals_the_flags_and_flags_win(tmp_path, capsys):
    by_flags = tmp_path / "flags"
    assert main(["select", "--dump", WATER_DUMP, "--types", "H,O", "-n", "2", "--bins", "24",
                 "-o", str(by_flags)]) == 0
    config = tmp_path / "select.toml"
    config.write_text(f'dump = "{WATER_DUMP}"\ntypes = "H,O"\nn = 3\nbins = 24\noutput = "{tmp_path / "cfg"}"\n')
    assert main(["select", "--config", str(config), "-n", "2"]) == 0           # the flag wins over n = 3
    capsys.readouterr()
    a = json.loads((by_flags / "selection.json").read_text())
    b = json.loads((tmp_path / "cfg" / "selection.json").read_text())
    assert a["selected"] == b["selected"] and len(a["selected"]) == 2
    assert b["descriptor"]["n_bins"] == 24


def test_config_errors_name_the_file_and_missing_required_options(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"no_such_option": 1}))
    for argv in (["select", "--config", str(bad)], ["fit-efg", "--config", str(bad)],
                 ["eval", "--config", str(bad)], ["scan", "--config", str(bad)]):
        assert main(argv) == 1
        assert f"{bad}: unknown option 'no_such_option'" in capsys.readouterr().err
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"dump": WATER_DUMP, "types": "H,O"}))
    assert main(["select", "--config", str(partial)]) == 1
    assert "--n is required: give it on the command line or as 'n' in --config" in capsys.readouterr().err
    assert main(["eval", "model.pt"]) == 1
    assert "data is required" in capsys.readouterr().err


def test_eval_reads_model_and_data_from_a_config_file(tmp_path, capsys):
    """The config's relative data paths are relative to the config file."""
    config = tmp_path / "eval.json"
    config.write_text(json.dumps({"model": str(tmp_path / "missing.pt"), "data": [os.path.relpath(VASPRUN, tmp_path)]}))
    assert main(["eval", "--config", str(config)]) == 1
    # the data were found and read; the model is what is missing
    assert "missing.pt" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# run_main: what both programs do around a command
# --------------------------------------------------------------------------------------------
def _program(func):
    parser = argparse.ArgumentParser(prog="prog")
    add_common_arguments(parser, "1.2.3")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("go").set_defaults(func=func)
    return parser


def test_run_main_errors_are_one_line_with_an_exit_code(tmp_path, capsys):
    def fails(args):
        open(tmp_path / "no" / "such" / "dir.txt", "w")                 # FileNotFoundError, an OSError

    assert run_main(_program(fails), ["go"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("prog go: error: [Errno 2] No such file or directory") and err.count("\n") == 1
    with pytest.raises(FileNotFoundError):
        run_main(_program(fails), ["--traceback", "go"])
    assert run_main(_program(fails), []) == 2                           # no command: the help
    assert "usage: prog" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        run_main(_program(fails), ["--version"])
    assert capsys.readouterr().out.strip() == "prog 1.2.3"

    def bug(args):
        raise KeyError("a bug, not the user's to fix")

    with pytest.raises(KeyError):
        run_main(_program(bug), ["go"])


def test_run_main_shows_the_library_log(capsys):
    def logs(args):
        logging.getLogger("pyexport.some.module").info("read 3 frames")
        logging.getLogger("efg.other").warning("frame 2 has no cell")
        logging.getLogger("pyexport.some.module").debug("not shown")
        return 0

    assert run_main(_program(logs), ["go"]) == 0
    out, err = capsys.readouterr()
    assert out == "read 3 frames\n"
    assert err == "prog go: warning: frame 2 has no cell\n"
    assert not logging.getLogger("pyexport").handlers          # nothing left behind after the command


def test_efg_commands_take_config_files_and_flags_win(tmp_path):
    """--config on every efg command: options left at their default take the file's values, flags
    given win, unknown keys name the file."""
    import argparse

    from efg.cli import build_parser
    from pyexport.cli.options import with_config

    for command in ("analyze", "scan", "harmonic", "compare"):
        assert "--config" in build_parser()._subparsers._group_actions[0].choices[command].format_help()

    seen = {}
    p = argparse.ArgumentParser()
    p.add_argument("--every", type=int, default=1)
    p.add_argument("--index", default=":")
    p.add_argument("--isotope", dest="isotopes", action="append", default=[])
    p.set_defaults(func=with_config(lambda args: seen.update(vars(args)) or 0, p))
    config = tmp_path / "analyze.toml"
    config.write_text('every = 5\nindex = "10::2"\nisotopes = ["Br=81Br"]\n')
    args = p.parse_args(["--config", str(config), "--index", "::3"])
    assert args.func(args) == 0
    assert seen["every"] == 5 and seen["index"] == "::3" and seen["isotopes"] == ["Br=81Br"]
    config.write_text("evry = 5\n")
    with pytest.raises(ValueError, match="analyze.toml: unknown option 'evry'"):
        args = p.parse_args(["--config", str(config)])
        args.func(args)
