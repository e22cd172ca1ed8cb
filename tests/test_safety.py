"""Data safety across the command lines: no unpickling of untrusted files, no input overwritten.

- Checkpoints are read with ``torch.load(weights_only=True)``: a crafted "checkpoint" whose
  unpickling would create a marker file (``__reduce__`` → ``open(marker, "w")``) is refused with
  an error naming the file, by every loader and command, and the marker never appears; our own
  freshly written checkpoints (``pyexport fit``, ``pyexport fit-efg``) still load and export.
- No command writes over one of its inputs (same file after resolving links).
"""
import builtins
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from efg.cli import main as efg_main
from pyexport.cli import main as pyexport_main
from pyexport.contract import load_model
from pyexport.training.checkpoints import UnsafeCheckpointError, load_checkpoint, read_checkpoint_file
from pyexport.fit_efg import load_efg_checkpoint

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
VASPRUN = DATA / "dpdata" / "vasprun.h2o.md.10.xml"     # 10 labelled MD steps of water (VASP)
DUMP = DATA / "dpdata" / "traj.dump"                     # LAMMPS dump, 2 frames, Fe Ni


pytestmark = pytest.mark.usefixtures("one_thread")


class _CreatesMarker:
    """Unpickling this object calls open(marker, "w"): the file appearing means code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def _crafted(tmp_path, how: str, header: dict) -> tuple:
    """(crafted checkpoint path, marker path) in each file layout torch.load accepts."""
    marker = tmp_path / f"marker_{how}"
    path = tmp_path / f"crafted_{how}.ckpt"
    payload = {**header, "state_dict": _CreatesMarker(marker)}
    if how == "zip":
        torch.save(payload, path)
    elif how == "legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        with open(path, "wb") as fh:
            pickle.dump(payload, fh, protocol=2)
    return path, marker


HEADERS = {"potential": {"format": "pyexport-potential-checkpoint", "format_version": 1},
           "efg": {"model": "efg", "format_version": 1}}


def test_the_crafted_file_does_run_code_when_unpickled_blindly(tmp_path):
    """The test's premise: loading it the old way (weights_only=False) creates the marker."""
    path, marker = _crafted(tmp_path, "zip", HEADERS["potential"])
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("how", ["zip", "legacy", "raw_pickle"])
@pytest.mark.parametrize("kind", sorted(HEADERS))
def test_crafted_checkpoint_is_refused_everywhere(tmp_path, capsys, how, kind):
    path, marker = _crafted(tmp_path, how, HEADERS[kind])
    for loader in (read_checkpoint_file, load_checkpoint, load_efg_checkpoint):
        with pytest.raises(UnsafeCheckpointError, match=rf"{path.name}: refused: the file holds Python objects "
                                                        r"other than tensors and plain data"):
            loader(str(path))
    for argv in (["inspect", str(path)], ["inspect", "--json", str(path)],
                 ["export", str(path), "-o", str(tmp_path / "out.pt")]):
        assert pyexport_main(argv) == 1
        err = capsys.readouterr().err
        assert f"{path}: refused" in err and "could run code" in err, err
    assert efg_main(["analyze", "--dump", str(DUMP), "--types", "Fe,Ni", "--model", str(path),
                     "-o", str(tmp_path / "run.json"), "--no-progress"]) == 1
    assert "not a TorchScript model archive" in capsys.readouterr().err
    assert not marker.exists()
    assert not (tmp_path / "out.pt").exists()


def test_crafted_checkpoint_refused_in_a_fresh_process(tmp_path):
    """The command as a user runs it: exit status 1, the reason on stderr, no marker."""
    path, marker = _crafted(tmp_path, "zip", HEADERS["potential"])
    done = subprocess.run([sys.executable, "-m", "pyexport", "inspect", str(path)], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 1 and f"{path}: refused" in done.stderr, done.stderr
    assert not marker.exists()


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A checkpoint written by `pyexport fit` (tiny basis, the real VASP water MD)."""
    root = tmp_path_factory.mktemp("fit")
    ckpt = root / "water.ckpt"
    assert pyexport_main(["fit", str(VASPRUN), "--basis", "tiny", "--cutoff", "4.0", "--split", "0.6,0.2,0.2",
                          "--lambdas", "1e-10:1e-4:3", "-o", str(ckpt), "--no-progress"]) == 0
    return ckpt


def test_fit_checkpoint_loads_safely_and_exports(fitted, tmp_path, capsys):
    plain = torch.load(fitted, map_location="cpu", weights_only=True)     # raises if not plain data
    assert plain["format"] == "pyexport-checkpoint" and plain["kind"] == "potential"    # the common header
    assert plain["format_version"] == 2 and plain["elements"] == ["H", "O"]
    model = tmp_path / "water.pt"
    assert pyexport_main(["export", str(fitted), "-o", str(model)]) == 0
    _, meta = load_model(str(model), kind="potential")
    assert meta["elements"] == ["H", "O"]
    assert pyexport_main(["inspect", str(fitted)]) == 0
    assert "checkpoint" in capsys.readouterr().out


def test_fit_efg_checkpoint_loads_safely_and_exports(tmp_path, capsys):
    from test_efg_model import labelled_frames, write_training_file

    data = tmp_path / "train.extxyz"
    write_training_file(data, labelled_frames(6, seed=21))
    ckpt = tmp_path / "efg.ckpt"
    assert pyexport_main(["fit-efg", str(data), "-o", str(ckpt), "--epochs", "1", "--cutoff", "5.0", "--lmax", "2",
                          "--channels", "2", "--product-channels", "2", "--hidden", "4", "--n-radial", "4",
                          "--val-fraction", "0.2", "--test-fraction", "0.2", "--no-progress"]) == 0
    plain = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert (plain["format"], plain["kind"], plain["model"]) == ("pyexport-checkpoint", "efg", "efg")
    capsys.readouterr()
    assert pyexport_main(["inspect", str(ckpt)]) == 0          # the one reader knows every kind
    out = capsys.readouterr().out
    assert f"{ckpt}: checkpoint" in out and "EFG model:" in out and '["Br", "Cs", "Pb"]' in out
    assert "written" not in out                                 # inspect writes nothing
    model = tmp_path / "efg.pt"
    assert pyexport_main(["export", str(ckpt), "-o", str(model)]) == 0
    assert load_model(str(model), kind="efg")[1]["elements"] == ["Br", "Cs", "Pb"]


def test_one_reader_for_every_kind_and_the_version_1_headers(fitted, tmp_path, capsys):
    """read_checkpoint dispatches by kind; a checkpoint of format version 1 (its own header per
    kind, before the common one) still loads and exports to the same model."""
    from pyexport.training.checkpoints import read_checkpoint

    assert read_checkpoint(str(fitted))["kind"] == "potential"
    with pytest.raises(ValueError, match="not an EFG checkpoint"):
        load_efg_checkpoint(str(fitted))
    old = {k: v for k, v in torch.load(fitted, map_location="cpu", weights_only=True).items() if k != "kind"}
    old.update(format="pyexport-potential-checkpoint", format_version=1)
    torch.save(old, tmp_path / "v1.ckpt")
    assert read_checkpoint(str(tmp_path / "v1.ckpt"))["kind"] == "potential"
    for name in ("v1", "v2"):
        source = tmp_path / "v1.ckpt" if name == "v1" else fitted
        assert pyexport_main(["export", str(source), "-o", str(tmp_path / f"{name}.pt")]) == 0
    _, meta_v1 = load_model(str(tmp_path / "v1.pt"), kind="potential")
    _, meta_v2 = load_model(str(tmp_path / "v2.pt"), kind="potential")
    assert meta_v1["metrics"] == meta_v2["metrics"]
    torch.save({**old, "format_version": 7}, tmp_path / "v7.ckpt")
    assert pyexport_main(["inspect", str(tmp_path / "v7.ckpt")]) == 1
    assert "checkpoint format version 7 is not supported" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# no command writes over its inputs
# --------------------------------------------------------------------------------------------
def _assert_refused(rc, capsys, victim: Path, before: bytes):
    assert rc == 1
    err = capsys.readouterr().err
    assert "refusing to write over an input file of this command" in err, err
    assert victim.read_bytes() == before


@pytest.fixture()
def water(tmp_path):
    """A copy of the VASP water MD, a symbolic link and a hard link to it."""
    data = tmp_path / "water.xml"
    data.write_bytes(VASPRUN.read_bytes())
    (tmp_path / "symlink.xml").symlink_to(data)
    os.link(data, tmp_path / "hardlink.xml")
    return data


@pytest.mark.parametrize("option", ["-o", "--metrics"])
@pytest.mark.parametrize("target", ["water.xml", "symlink.xml", "hardlink.xml", "sub/../water.xml"])
def test_fit_refuses_to_overwrite_its_data(water, capsys, option, target):
    (water.parent / "sub").mkdir(exist_ok=True)
    before = water.read_bytes()
    argv = ["fit", str(water), "--basis", "tiny", "--cutoff", "4.0", "--no-progress",
            option, str(water.parent / target)]
    _assert_refused(pyexport_main(argv), capsys, water, before)
    _assert_refused(pyexport_main(["committee", "fit", str(water), "--basis", "tiny", "--cutoff", "4.0",
                                   "--no-progress", option, str(water.parent / target)]), capsys, water, before)


def test_fit_refuses_to_overwrite_its_config(water, capsys):
    config = water.parent / "fit.json"
    config.write_text('{"data": ["%s"], "basis": "tiny", "cutoff": 4.0}' % water)
    before = config.read_bytes()
    _assert_refused(pyexport_main(["fit", "--config", str(config), "--metrics", str(config), "--no-progress"]),
                    capsys, config, before)


def test_fit_efg_refuses_to_overwrite_its_data(tmp_path, capsys):
    from test_efg_model import labelled_frames, write_training_file

    data = tmp_path / "train.extxyz"
    write_training_file(data, labelled_frames(3, seed=21))
    (tmp_path / "link.extxyz").symlink_to(data)
    before = data.read_bytes()
    for option, target in (("-o", data), ("-o", tmp_path / "link.extxyz"), ("--metrics", data)):
        _assert_refused(pyexport_main(["fit-efg", str(data), option, str(target), "--epochs", "1",
                                       "--no-progress"]), capsys, data, before)


def test_export_eval_scan_refuse_to_overwrite_inputs(water, tmp_path, capsys):
    before = water.read_bytes()
    _assert_refused(pyexport_main(["export", str(water), "-o", str(water)]), capsys, water, before)
    _assert_refused(pyexport_main(["eval", "model.pt", str(water), "-o", str(tmp_path / "hardlink.xml")]),
                    capsys, water, before)
    _assert_refused(pyexport_main(["eval", "model.pt", str(water), "--plot", str(water)]), capsys, water, before)
    _assert_refused(pyexport_main(["scan", "model.pt", "--structure", str(water), "--mode", "R-tilt",
                                   "-o", str(tmp_path / "symlink.xml")]), capsys, water, before)


def test_analyze_refuses_to_overwrite_its_dump(tmp_path, capsys):
    dump = tmp_path / "md.dump"
    dump.write_bytes(DUMP.read_bytes())
    (tmp_path / "link.dump").symlink_to(dump)
    before = dump.read_bytes()
    for output in (dump, tmp_path / "link.dump"):
        _assert_refused(efg_main(["analyze", "--dump", str(dump), "--types", "Fe,Ni", "--efg-source", "model",
                                  "--model", "efg.pt", "-o", str(output), "--no-progress"]), capsys, dump, before)
    # run.npz beside run.json is an output too
    npz = tmp_path / "run.npz"
    npz.write_bytes(b"a model file named like the tensors")
    _assert_refused(efg_main(["analyze", "--dump", str(dump), "--types", "Fe,Ni", "--model", str(npz),
                              "-o", str(tmp_path / "run.json"), "--no-progress"]), capsys, npz, npz.read_bytes())


def test_efg_scan_compare_harmonic_refuse_to_overwrite_inputs(tmp_path, capsys):
    run = tmp_path / "run.json"
    run.write_text('{"temperature_K": 300}')
    before = run.read_bytes()
    _assert_refused(efg_main(["scan", str(run), "-o", str(run)]), capsys, run, before)
    out = tmp_path / "report"
    out.mkdir()
    (out / "compare.json").write_bytes(before)
    _assert_refused(efg_main(["compare", str(run), "--harmonic", f"{out / 'compare.json'}:all", "-o", str(out)]),
                    capsys, out / "compare.json", before)
    _assert_refused(efg_main(["harmonic", "--potential", "p.pt", "--structure", str(run), "--supercell", "2",
                              "-o", str(run)]), capsys, run, before)


def test_select_refuses_to_overwrite_its_dump(tmp_path, capsys):
    """The dump itself named like the selection's frames file, in the output folder."""
    folder = tmp_path / "selected"
    folder.mkdir()
    dump = folder / "frames.extxyz"
    dump.write_bytes(DUMP.read_bytes())
    _assert_refused(pyexport_main(["select", "--dump", str(dump), "--types", "Fe,Ni", "-n", "1",
                                   "-o", str(folder), "--overwrite"]), capsys, dump, DUMP.read_bytes())
