"""The methyl-methyl approach builder of the MAPbI3 example (examples/mapbi3/cation_approach.py,
issue #20): the geometry it hands to the restrained MD is the one it promises, and the restrained
MD (examples/restrained_approach.py) keeps the cations whole. The labelling needs sevenn and is
the script's run, recorded in examples/mapbi3/reference/cation_approach.json."""
import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mapbi3"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def builder():
    sys.path[:0] = [str(EXAMPLE), str(EXAMPLE.parent)]
    spec = importlib.util.spec_from_file_location("cation_approach", EXAMPLE / "cation_approach.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shared(builder):
    """examples/restrained_approach.py, the MD and filter the builder script imports."""
    return sys.modules["restrained_approach"]


@pytest.fixture(scope="module")
def frame(builder):
    """An NPT frame of the set at 450 K (96 atoms, structures.py order)."""
    frames = builder.read_extxyz(EXAMPLE / "reference" / "mapbi3_7net0.extxyz.xz")
    return next(a for a in frames if len(a) == 96 and a.info.get("ensemble") == "npt"
                and a.info.get("temperature_K") == 450.0)


def test_the_closest_carbons_belong_to_two_cations(builder, frame):
    from structures import ATOMS_PER_CELL
    i, j = builder.closest_pair(frame, "C-C")
    assert frame[i].symbol == frame[j].symbol == "C" and i // ATOMS_PER_CELL != j // ATOMS_PER_CELL
    carbon = [k for k, s in enumerate(frame.get_chemical_symbols()) if s == "C"]
    d = frame.get_all_distances(mic=True)[np.ix_(carbon, carbon)]
    assert frame.get_distance(i, j, mic=True) == pytest.approx(d[d > 0].min(), abs=1e-12)


@pytest.mark.parametrize("distance", [3.8, 3.4])
def test_cations_move_rigidly_until_their_carbons_are_that_far_apart(builder, frame, distance):
    from structures import cation_bond_lengths
    i, j = builder.closest_pair(frame, "C-C")
    moved = builder.moved_together(frame, i, j, distance)
    assert moved.get_distance(i, j, mic=True) == pytest.approx(distance, abs=1e-10)
    for bond, lengths in cation_bond_lengths(frame).items():
        assert cation_bond_lengths(moved)[bond] == pytest.approx(lengths, abs=1e-10)   # rigid
    cations = set(builder.cation_atoms(i)) | set(builder.cation_atoms(j))
    assert len(cations) == 16 and {frame[k].symbol for k in cations} == {"C", "N", "H"}
    others = [k for k in range(len(frame)) if k not in cations]
    shift = moved.get_scaled_positions(wrap=False)[others] - frame.get_scaled_positions(wrap=False)[others]
    assert np.allclose(shift - np.round(shift), 0.0, atol=1e-12)       # only wrapped into the cell
    far = builder.moved_together(frame, i, j, 10.0)             # already closer: unchanged
    assert np.allclose(far.positions, frame.positions)


def test_two_ammonium_heads_of_two_cations_move_together(builder, frame):
    from structures import ATOMS_PER_CELL
    i, j = builder.closest_pair(frame, "N-N")
    assert frame[i].symbol == frame[j].symbol == "N" and i // ATOMS_PER_CELL != j // ATOMS_PER_CELL
    moved = builder.moved_together(frame, i, j, 3.5)
    assert moved.get_distance(i, j, mic=True) == pytest.approx(3.5, abs=1e-10)
    k, m = builder.closest_pair(frame, "C-N")                          # never the C-N bond of one cation
    assert frame[k].symbol == "C" and frame[m].symbol == "N" and frame.get_distance(k, m, mic=True) > 2.5


def test_a_methyl_group_moves_towards_its_nearest_lead_and_the_framework_stays(builder, frame):
    i, j = builder.closest_pair(frame, "C-Pb")
    assert frame[i].symbol == "C" and frame[j].symbol == "Pb"
    lead = [k for k, s in enumerate(frame.get_chemical_symbols()) if s == "Pb"]
    assert frame.get_distance(i, j, mic=True) == pytest.approx(frame.get_distances(i, lead, mic=True).min(), abs=1e-12)
    moved = builder.moved_together(frame, i, j, 3.3)
    assert moved.get_distance(i, j, mic=True) == pytest.approx(3.3, abs=1e-10)
    cation = set(builder.cation_atoms(i))
    others = [k for k in range(len(frame)) if k not in cation]
    shift = moved.get_scaled_positions(wrap=False)[others] - frame.get_scaled_positions(wrap=False)[others]
    assert np.allclose(shift - np.round(shift), 0.0, atol=1e-12)       # the Pb and the rest stay


def test_restrained_md_holds_the_pair_together(builder, frame, tmp_path):
    """A few real MD steps with a small fit of the set: the snapshots come back spring-free and
    with γ, and the spring keeps the two carbons closer than the same MD without it."""
    import ase.io
    from model_settings import FIT_OPTIONS
    from pyexport.calculator import MLFFCalculator
    from pyexport.cli import main as pyexport
    frames = [a for a in builder.read_extxyz(EXAMPLE / "reference" / "mapbi3_7net0.extxyz.xz")
              if a.info.get("config_type") in ("phase_min", "md", "strain_rattle")][:40]
    ase.io.write(tmp_path / "data.extxyz", frames, format="extxyz")
    assert pyexport(["fit", str(tmp_path / "data.extxyz"), "--model", "cluster", "--basis", "tiny", "--cutoff", "6.0",
                     "--lambdas", "1e-6:1e-2:3", *FIT_OPTIONS, "--no-progress", "-o", str(tmp_path / "m.ckpt")]) == 0
    assert pyexport(["export", str(tmp_path / "m.ckpt"), "-o", str(tmp_path / "m.pt")]) == 0
    i, j = builder.closest_pair(frame, "C-C")
    start = builder.moved_together(frame, i, j, 3.9)
    args = argparse.Namespace(spring=20.0, timestep=0.5, friction=0.01, md_steps=20, per_distance=2)
    shots = shared(builder).restrained_md(start, i, j, 3.9, MLFFCalculator(tmp_path / "m.pt"), 450.0, args,
                                  np.random.default_rng(0))
    assert [step for _, step, _ in shots] == [15, 20]
    for atoms, _, grade in shots:
        assert not atoms.constraints and np.isfinite(grade) and grade > 0.0
    # the spring holds the pair: the same MD (same seed) without it ends with the carbons farther apart
    free = shared(builder).restrained_md(start, i, j, 3.9, MLFFCalculator(tmp_path / "m.pt"), 450.0,
                                 argparse.Namespace(**{**vars(args), "spring": 0.0}), np.random.default_rng(0))
    assert shots[-1][0].get_distance(i, j, mic=True) < free[-1][0].get_distance(i, j, mic=True) - 0.1
    # the same run through labelled_approach (the fit standing in for 7net-0 as the reference):
    # the same snapshots, each labelled, described and filtered
    from structures import intact_molecules
    calc = MLFFCalculator(tmp_path / "m.pt")
    filtered = argparse.Namespace(**vars(args), max_force=30.0, min_distances={"C-C": 2.8})
    kept, rows = shared(builder).labelled_approach(start, i, j, 3.9, calc, 450.0, calc, filtered,
                                                   np.random.default_rng(0), {"pair": "C-C"}, "distance_A",
                                                   intact=intact_molecules)
    assert [r["md_step"] for r in rows] == [15, 20]
    labelled = sys.modules["reference_labels"].labelled
    for (snapshot, _, grade), row in zip(shots, rows):
        assert row["distance_A"] == round(snapshot.get_distance(i, j, mic=True), 4)
        assert row["max_grade"] == round(grade, 3)
        assert row["kept"] == shared(builder).sane(labelled(snapshot, calc), 30.0, {"C-C": 2.8},
                                                   intact=intact_molecules)
    # this tiny fit tears a cation by the last snapshot: the filter has something to do
    assert [r["kept"] for r in rows] == [True, False] and len(kept) == 1
    assert kept[0].info == {"pair": "C-C", "md_step": 15, "distance_A": rows[0]["distance_A"]}
    work = shots[0][0].copy()
    work.calc = calc
    assert np.allclose(kept[0].get_forces(), work.get_forces(), atol=1e-10, rtol=0)
    too_close = argparse.Namespace(**{**vars(filtered), "min_distances": {"C-N": 2.0}})   # the C-N bond
    kept, rows = shared(builder).labelled_approach(start, i, j, 3.9, calc, 450.0, calc, too_close,
                                                   np.random.default_rng(0), {"pair": "C-C"}, "distance_A")
    assert kept == [] and [r["kept"] for r in rows] == [False, False]


def test_bad_arguments_are_refused_by_name(builder, tmp_path, capsys):
    model = tmp_path / "m.pt"
    model.write_bytes(b"x")
    for bad, name in ((["--distances", "3.8,abc"], "--distances"), (["--distances", "1.0"], "--distances"),
                      (["--per-distance", "500"], "--per-distance"), (["--min-distances", "C-C"], "--min-distances")):
        with pytest.raises(SystemExit):
            builder.parse_args(["--out", str(tmp_path / "x.extxyz"), "--model", str(model), *bad])
        assert name in capsys.readouterr().err
    with pytest.raises(SystemExit):
        builder.parse_args(["--out", str(tmp_path / "x.extxyz")])
    assert "--model" in capsys.readouterr().err
    args = builder.parse_args(["--out", str(tmp_path / "x.extxyz"), "--model", str(model), "--pair", "C-Pb"])
    assert args.distances == [3.8, 3.5, 3.2] and args.min_distances["C-Pb"] == 2.5


def test_a_torn_cation_or_a_huge_force_is_left_out(builder, frame):
    """The filter of the snapshots (restrained_approach.sane with structures.intact_molecules)."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from structures import intact_molecules
    labelled = frame.copy()
    labelled.calc = SinglePointCalculator(labelled, forces=np.full((len(frame), 3), 1.0))
    assert shared(builder).sane(labelled, 30.0, {"C-C": 2.8}, intact=intact_molecules)
    for pair in builder.PARTNERS:           # the default limits pass an ordinary frame (no bond among them)
        defaults = builder.parse_args(["--out", "x.extxyz", "--model", __file__, "--pair", pair]).min_distances
        assert shared(builder).sane(labelled, 30.0, defaults, intact=intact_molecules), pair
    assert not shared(builder).sane(labelled, 0.5, {"C-C": 2.8}, intact=intact_molecules)
    torn = labelled.copy()
    bond = torn.get_distance(4, 6, mic=True, vector=True)            # the first cation's C -> its first H
    torn.positions[6] += 0.5 * bond / np.linalg.norm(bond)
    torn.calc = SinglePointCalculator(torn, forces=np.full((len(frame), 3), 1.0))
    assert not intact_molecules(torn) and not shared(builder).sane(torn, 30.0, {"C-C": 2.8}, intact=intact_molecules)
