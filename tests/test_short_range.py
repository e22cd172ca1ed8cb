"""Potentials stay repulsive at short range (pyexport.short_range): for every species pair, an atom
pushed towards its nearest neighbour of that species inside the relaxed crystal keeps the energy
above its start below 1.5 Å and at least 10 eV above it at 0.4 Å.

The shipped CsPbBr3 potential (examples/cspbbr3/potential.pt, the demo's fit settings, with the
repulsive core `pyexport fit` adds by default) must pass; the same fit exported without its core
must fail (the bare polynomial digs holes: −1.2 keV with two Cs at 0.6 Å)."""
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
