"""Potentials stay repulsive at short range (pyexport.short_range): for every species pair, an atom
pushed towards its nearest neighbour of that species inside the relaxed crystal keeps the energy
above its start below 1.5 Å and at least 10 eV above it at 0.4 Å.

The shipped CsPbBr3 potential (examples/cspbbr3/potential.pt, the demo's fit settings, with the
repulsive core `pyexport fit` adds by default) must pass; the same fit exported without its core
must fail (the bare polynomial digs holes: −1.2 keV with two Cs at 0.6 Å)."""
import io
import lzma
from pathlib import Path

import ase.io
import pytest

from pyexport.calculator import MLFFCalculator
from pyexport.contract import export_model
from pyexport.training.checkpoints import load_checkpoint, potential_from_checkpoint
from pyexport.short_range import approach_scan, short_range_scans
from test_grade import graded  # noqa: F401  (fixture: a small fit of the same data)

pytestmark = pytest.mark.usefixtures("one_thread")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "cspbbr3"


@pytest.fixture(scope="module")
def ground(tmp_path_factory):
    """The relaxed orthorhombic CsPbBr3 cell of the reference set (40 atoms)."""
    text = lzma.decompress((EXAMPLE / "reference" / "cspbbr3_7net0.extxyz.xz").read_bytes()).decode()
    path = tmp_path_factory.mktemp("ground") / "all.xyz"
    path.write_text(text)
    return next(a for a in ase.io.read(path, index=":")
                if a.info.get("config_type") == "phase_min" and a.info.get("phase") == "orthorhombic")


def test_shipped_cspbbr3_potential_repels_every_species_pair(ground):
    calc = MLFFCalculator(EXAMPLE / "potential.pt")
    scans = short_range_scans(calc, ground, calc.elements)
    assert len(scans) == 9
    failures = [f for scan in scans.values() for f in scan.failures]
    assert not failures, failures
    for scan in scans.values():
        assert scan.separations.min() == pytest.approx(0.4)
        assert scan.energies[-1] >= 10.0


def test_shipped_mapbi3_potential_repels_every_species_pair():
    """The MAPbI3 example's potential (its fit on the reference set, shipped without the active
    set: examples/mapbi3/potential_without_grade.pt) in the relaxed tetragonal 96-atom cell: all
    25 ordered pairs at the separations the criterion looks at, 0.4-1.4 Å in steps of 0.1 (the
    whole approach, in steps of 0.05 Å, is the recorded scan in examples/mapbi3/short_range/)."""
    mapbi3 = EXAMPLE.parent / "mapbi3"
    # from memory: ASE seeks back in its input per frame, which an lzma stream answers by
    # decompressing again from the start
    text = io.StringIO(lzma.decompress((mapbi3 / "reference" / "mapbi3_7net0.extxyz.xz").read_bytes()).decode())
    tetragonal = next(a for a in ase.io.iread(text, format="extxyz")
                      if a.info.get("config_type") == "phase_min" and a.info.get("phase") == "tetragonal")
    calc = MLFFCalculator(mapbi3 / "potential_without_grade.pt")
    assert set(tetragonal.get_chemical_symbols()) == set(calc.elements) and len(calc.elements) == 5
    scans = short_range_scans(calc, tetragonal, calc.elements, step=0.1, longest=1.45)
    assert len(scans) == 25
    failures = [f for scan in scans.values() for f in scan.failures]
    for scan in scans.values():
        assert scan.energies[-1] >= 10.0 and scan.separations[-1] == pytest.approx(0.4)
        assert scan.separations[0] < min(1.45, scan.start_separation)
    assert not failures, failures


def test_the_same_fit_without_its_core_digs_holes(graded, ground, tmp_path):
    """The check can fail: the small fit of test_grade exported without the core."""
    ckpt = load_checkpoint(graded["ckpt"])
    assert ckpt["core_repulsion"] is not None          # the default
    with_core = MLFFCalculator(graded["pt"])
    ckpt["core_repulsion"] = None
    export_model(potential_from_checkpoint(ckpt), tmp_path / "bare.pt")
    bare = MLFFCalculator(tmp_path / "bare.pt")
    scans = short_range_scans(bare, ground, bare.elements)
    assert any(not scan.ok for scan in scans.values())
    assert all(scan.ok for scan in short_range_scans(with_core, ground, with_core.elements).values())


def test_approach_scan_measures_from_the_unperturbed_crystal(ground):
    """The energies are relative to the crystal; the first separation just below the start
    changes the energy by little, and the closest separation is the one asked for."""
    calc = MLFFCalculator(EXAMPLE / "potential.pt")
    scan = approach_scan(calc, ground, "Pb", "Br", separations=[0.4, 1.0, 2.0, 2.9])
    assert list(scan.separations) == [2.9, 2.0, 1.0, 0.4]
    assert 2.9 < scan.start_separation < 3.3
    assert abs(scan.energies[0]) < 1.0 and scan.energies[-1] > scan.energies[-2] > 0.0
    assert scan.as_dict()["ok"] is True
    with pytest.raises(ValueError, match="no other atom of Xe"):
        approach_scan(calc, ground, "Pb", "Xe", separations=[1.0])


def test_the_command_line_reports_each_pair_and_fails_on_a_hole(graded, ground, tmp_path, capsys):
    """`pyexport short-range`: a table, a JSON and a plot; exit 0 for the shipped potential, 1 with
    the failures named for the same small fit exported without its core; a pair of a species the
    structure lacks is an error that names it."""
    import json

    from pyexport.cli import main as pyexport

    ase.io.write(tmp_path / "ground.extxyz", ground)
    args = [str(tmp_path / "ground.extxyz"), "--pairs", "Cs-Cs,Pb-Br", "--no-progress"]
    assert pyexport(["short-range", str(EXAMPLE / "potential.pt"), *args, "-o", str(tmp_path / "ok.json"),
                     "--plot", str(tmp_path / "ok.png")]) == 0
    out = capsys.readouterr().out
    assert "2 of 2 pairs repulsive at short range" in out
    result = json.loads((tmp_path / "ok.json").read_text())
    assert result["ok"] is True and [s["pair"] for s in result["scans"]] == ["Cs-Cs", "Pb-Br"]
    calc = MLFFCalculator(EXAMPLE / "potential.pt")
    direct = approach_scan(calc, ground, "Pb", "Br", result["scans"][1]["separations_A"])
    assert result["scans"][1]["energies_eV"] == pytest.approx(direct.energies.tolist(), rel=1e-10, abs=1e-9)
    assert (tmp_path / "ok.png").stat().st_size > 0

    ckpt = load_checkpoint(graded["ckpt"])
    ckpt["core_repulsion"] = None
    export_model(potential_from_checkpoint(ckpt), tmp_path / "bare.pt")
    every_pair = [str(tmp_path / "ground.extxyz"), "--no-progress", "-o", str(tmp_path / "bare.json")]
    assert pyexport(["short-range", str(tmp_path / "bare.pt"), *every_pair]) == 1
    out = capsys.readouterr().out
    assert "fails: " in out and " NO" in out
    assert json.loads((tmp_path / "bare.json").read_text())["ok"] is False

    assert pyexport(["short-range", str(EXAMPLE / "potential.pt"), str(tmp_path / "ground.extxyz"),
                     "--pairs", "Cs-I", "--no-progress"]) == 1
    assert "pairs Cs-I: not pairs of the potential's species" in capsys.readouterr().err
