"""The Pb-Pb approach builder of the CsPbBr3 example (examples/cspbbr3/pair_approach.py, issue #20):
the geometry it hands to 7net-0 is the one it promises (the labelling itself needs sevenn and is
the script's run, recorded in examples/cspbbr3/reference/)."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "cspbbr3" / "pair_approach.py"


@pytest.fixture(scope="module")
def builder():
    spec = importlib.util.spec_from_file_location("pair_approach", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shared(builder):
    """examples/restrained_approach.py, the MD and filter the builder script imports."""
    return sys.modules["restrained_approach"]


@pytest.fixture(scope="module")
def crystal():
    """Cubic CsPbBr3 (a = 6.0 Å) 4×4×4, rattled by 0.05 Å: 320 atoms like the script's frames."""
    a = 6.0
    cell = Atoms("CsPbBr3", scaled_positions=[(0, 0, 0), (0.5, 0.5, 0.5), (0, 0.5, 0.5), (0.5, 0, 0.5),
                                               (0.5, 0.5, 0)], cell=[a, a, a], pbc=True).repeat((4, 4, 4))
    cell.positions += np.random.default_rng(3).normal(scale=0.05, size=cell.positions.shape)
    return cell


def test_pick_pair_finds_nearest_lead_and_its_bridge(builder, crystal):
    i, j, bridge = builder.pick_pair(crystal, np.random.default_rng(0))
    assert crystal[i].symbol == crystal[j].symbol == "Pb" and crystal[bridge].symbol == "Br"
    assert 5.6 < crystal.get_distance(i, j, mic=True) < 6.4
    assert crystal.get_distance(i, bridge, mic=True) < 3.3 and crystal.get_distance(j, bridge, mic=True) < 3.3


@pytest.mark.parametrize("variant", ["edge", "corner"])
@pytest.mark.parametrize("distance", [4.4, 3.4])
def test_approach_places_the_pair_and_its_bridges(builder, crystal, variant, distance):
    rng = np.random.default_rng(1)
    i, j, bridge = builder.pick_pair(crystal, rng)
    mid_before = crystal.positions[i] + 0.5 * crystal.get_distance(i, j, mic=True, vector=True)
    moved, second = builder.approach(crystal, i, j, bridge, distance, variant, 2.95, rng)
    assert moved.get_distance(i, j, mic=True) == pytest.approx(distance, abs=1e-10)
    mid_after = moved.positions[i] + 0.5 * moved.get_distance(i, j, mic=True, vector=True)
    shift = crystal.cell.scaled_positions((mid_after - mid_before)[None])
    assert np.allclose(shift - np.round(shift), 0.0, atol=1e-10)    # the bond's midpoint stays
    for b in [bridge] + ([second] if variant == "edge" else []):
        assert moved.get_distance(i, b, mic=True) == pytest.approx(2.95, abs=1e-10)
        assert moved.get_distance(j, b, mic=True) == pytest.approx(2.95, abs=1e-10)
    if variant == "edge":
        assert second not in (i, j, bridge) and moved[second].symbol == "Br"
        # the two bridges sit on opposite sides of the Pb-Pb bond: the edge of two octahedra
        assert moved.get_distance(bridge, second, mic=True) > 2.0 * np.sqrt(2.95**2 - (distance / 2) ** 2) - 1e-9
    else:
        assert second is None
    untouched = [k for k in range(len(crystal)) if k not in (i, j, bridge, second)]
    shift = moved.get_scaled_positions(wrap=False)[untouched] - crystal.get_scaled_positions(wrap=False)[untouched]
    assert np.allclose(shift - np.round(shift), 0.0, atol=1e-12)   # only wrapped into the cell


def test_bad_distances_are_refused_by_name(builder, tmp_path, capsys):
    with pytest.raises(SystemExit):
        builder.parse_args(["--out", str(tmp_path / "x.extxyz"), "--distances", "4.0,abc"])
    assert "--distances" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        builder.parse_args(["--out", str(tmp_path / "x.extxyz"), "--variants", "edge,face"])
    assert "face" in capsys.readouterr().err


def test_restrained_md_pulls_the_pair_together_with_the_shipped_potential(builder, crystal):
    """--method md: real MD with the shipped potential; the one-sided spring closes the Pb-Pb gap
    and every snapshot comes back spring-free, with the potential's max γ."""
    import argparse
    from pyexport.calculator import MLFFCalculator
    rng = np.random.default_rng(2)
    i, j, _ = builder.pick_pair(crystal, rng)
    start = crystal.get_distance(i, j, mic=True)
    args = argparse.Namespace(spring=5.0, timestep=2.0, friction=0.01, md_steps=40, per_distance=2)
    calc = MLFFCalculator(SCRIPT.parent / "potential.pt")
    shots = shared(builder).restrained_md(crystal, i, j, 4.0, calc, 300.0, args, rng)
    assert [step for _, step, _ in shots] == [30, 40]
    for atoms, _, grade in shots:
        assert not atoms.constraints and len(atoms) == len(crystal)
        assert np.isfinite(grade) and grade > 0.0
    assert shots[-1][0].get_distance(i, j, mic=True) < start - 0.5


def test_collapsed_snapshots_are_left_out(builder, crystal):
    from ase.calculators.singlepoint import SinglePointCalculator
    limits = {"Br-Pb": 1.9, "Pb-Pb": 2.8}
    frame = crystal.copy()
    frame.calc = SinglePointCalculator(frame, forces=np.full((len(frame), 3), 1.0))
    assert shared(builder).sane(frame, 30.0, limits)
    assert not shared(builder).sane(frame, 0.5, limits)                     # a force beyond --max-force
    i, j, bridge = builder.pick_pair(crystal, np.random.default_rng(0))
    squeezed, _ = builder.approach(crystal, i, j, bridge, 4.0, "corner", 1.8, np.random.default_rng(0))
    squeezed.calc = SinglePointCalculator(squeezed, forces=np.zeros((len(squeezed), 3)))
    assert builder.shortest_pairs(squeezed)["Br-Pb"] == pytest.approx(np.sqrt(2.0**2 + 1.0), abs=1e-9)
    assert shared(builder).sane(squeezed, 30.0, limits)
    assert not shared(builder).sane(squeezed, 30.0, {"Br-Pb": 2.3})
