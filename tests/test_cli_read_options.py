"""``--incomplete`` / ``--unconverged`` on the pyexport commands that read DFT data, and
:func:`pyexport.data.read_options`, which carries them to every file a command reads. Real files:
tests/data/dpdata (see tests/data/README.md); a killed job is made by cutting a copy."""

import json
import warnings
from pathlib import Path

import pytest

from pyexport.cli import build_parser, main
from pyexport.data import IncompleteDataWarning, ParseError, UnconvergedSCFWarning, read, read_options

DATA = Path(__file__).parent / "data"
H2O_OUTCAR = DATA / "dpdata" / "OUTCAR.h2o.md.10"
TI_OUTCAR = DATA / "dpdata" / "Ti-aimd-nwrite0" / "OUTCAR"
CH4_UNCONVERGED_OUTCAR = DATA / "dpdata" / "OUTCAR.ch4.unconverged"


@pytest.mark.parametrize("argv", [
    ["fit", "OUTCAR"], ["committee", "fit", "OUTCAR"], ["fit-efg", "OUTCAR"],
    ["eval", "model.pt", "OUTCAR"],
    ["scan", "model.pt", "--structure", "POSCAR", "--mode", "polar", "--reference", "OUTCAR"],
], ids=lambda argv: " ".join(argv[:2]) if argv[0] == "committee" else argv[0])
def test_every_command_reading_dft_data_takes_the_read_options(argv):
    args = build_parser().parse_args(argv + ["--incomplete", "warn", "--unconverged", "drop"])
    assert (args.incomplete, args.unconverged) == ("warn", "drop")
    args = build_parser().parse_args(argv)
    assert (args.incomplete, args.unconverged) == (None, None)


def test_read_options_set_the_default_and_read_arguments_win():
    with pytest.raises(ParseError, match="--incomplete warn"):
        read(TI_OUTCAR)
    with read_options(incomplete="warn"), pytest.warns(IncompleteDataWarning):
        assert [a.info["source"]["step"] for a in read(TI_OUTCAR)] == [1, 10]
    with read_options(incomplete="warn"), pytest.raises(ParseError):
        read(TI_OUTCAR, incomplete="error")
    with read_options(unconverged="drop"), pytest.warns(UnconvergedSCFWarning, match="left out"):
        assert [a.info["source"]["step"] for a in read(CH4_UNCONVERGED_OUTCAR)] == [3]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnconvergedSCFWarning)
        assert len(read(CH4_UNCONVERGED_OUTCAR)) == 3     # the block's default is gone
    with pytest.raises(ValueError, match="incomplete must be one of"):
        with read_options(incomplete="skip"):
            pass


def test_fit_of_a_killed_run_follows_the_advice_of_its_error(tmp_path, capsys):
    # a job killed while printing step 5's TOTEN line: 4 complete steps
    text = H2O_OUTCAR.read_text(encoding="latin-1")
    cut = text.index("free  energy   TOTEN", text.index("Iteration    5(")) + 30
    outcar = tmp_path / "OUTCAR"
    outcar.write_text(text[:cut], encoding="latin-1")
    model = tmp_path / "model.ckpt"
    assert main(["fit", str(outcar), "-o", str(model), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"{outcar}:" in err and "--incomplete warn" in err
    assert main(["fit", str(outcar), "-o", str(model), "--no-progress", "--incomplete", "warn"]) == 0
    err = capsys.readouterr().err
    # the reader's warning, printed as text naming the file and the step left out
    assert f"pyexport fit: warning: {outcar}: file ends inside a table in the middle of line" in err
    assert "(ionic step 5)" in err and "IncompleteDataWarning" not in err
    metrics = json.loads(model.with_suffix(".metrics.json").read_text())
    assert sum(metrics[s]["n_structures"] for s in ("train", "val", "test") if s in metrics) == 4
