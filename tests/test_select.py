"""Frame selection for DFT labelling: the descriptor, farthest-point sampling, ``pyexport select``."""
import argparse
import json
import os

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms

from contract_models import many_body_module
from pyexport.lammps.dump import read_frames
from pyexport.committee import ClusterCommittee, CommitteeEvaluator, write_committee
from pyexport.contract import export_model
from pyexport.models.cluster_basis import ClusterBasis
from pyexport.cli.select import add_select_parser
from pyexport.select import (FRAMES_FILE, SELECTION_FILE, RDFDescriptor, farthest_point_sampling, frame_descriptors,
                             select_frames)

DATA = os.path.join(os.path.dirname(__file__), "data")
WATER_DUMP = os.path.join(DATA, "mdanalysis", "wat.lammpstrj.bz2")   # 3 frames, 24 atoms, types H O


def perovskite(rattle=0.0, seed=0, reps=(1, 1, 1)):
    atoms = Atoms("CsPbBr3", scaled_positions=[[.5, .5, .5], [0, 0, 0], [.5, 0, 0], [0, .5, 0], [0, 0, .5]],
                  cell=[[5.9, 0, 0], [0.2, 5.8, 0], [-0.1, 0.3, 6.0]], pbc=True).repeat(reps)
    if rattle:
        atoms.rattle(rattle, seed=seed)
    return atoms


DESCRIPTOR = RDFDescriptor(("Cs", "Pb", "Br"), cutoff=6.0, n_bins=40)


# --------------------------------------------------------------------------------------------
# Descriptor
# --------------------------------------------------------------------------------------------
def test_descriptor_is_invariant_under_rigid_motion_relabelling_and_supercells():
    atoms = perovskite(rattle=0.15, seed=1, reps=(2, 1, 1))
    reference = DESCRIPTOR(atoms)
    assert reference.shape == (6 * 40,) and reference.max() > 0.1

    moved = atoms.copy()
    moved.rotate(37.0, (1, 2, 3), rotate_cell=True)
    moved.translate([0.3, -1.2, 4.0])
    moved = moved[np.random.default_rng(0).permutation(len(moved))]
    assert np.allclose(DESCRIPTOR(moved), reference, rtol=0, atol=1e-12)
    # per-atom normalisation: a supercell of the same structure has the same descriptor
    assert np.allclose(DESCRIPTOR(atoms.repeat((1, 2, 2))), reference, rtol=0, atol=1e-12)
    # and it does see the displacements
    assert np.abs(DESCRIPTOR(perovskite(reps=(2, 1, 1))) - reference).max() > 0.05


def test_descriptor_counts_pairs_per_atom():
    """Integrated over r, each pair block holds (number of pairs within reach)/N, times the
    Gaussian's integral √(2π)·σ per unit grid spacing."""
    from ase.neighborlist import neighbor_list

    atoms = perovskite(rattle=0.1, seed=4)
    d = RDFDescriptor(("Cs", "Pb", "Br"), cutoff=6.0, n_bins=600)   # fine grid: the sum is an integral
    blocks = d(atoms).reshape(6, 600)
    i, j, dist = neighbor_list("ijd", atoms, d.cutoff - 5 * d.sigma)   # pairs whose Gaussians lie inside
    symbols = np.array(atoms.get_chemical_symbols())
    k = d.pairs.index(("Pb", "Br"))
    n_pairs = np.sum((symbols[i] == "Pb") & (symbols[j] == "Br"))        # each Pb-Br pair once
    grid = d.cutoff / d.n_bins
    integral = blocks[k].sum() * grid / (np.sqrt(2 * np.pi) * d.sigma)
    # pairs between cutoff-5σ and the grid's end contribute partly; there are none for Pb-Br here
    assert n_pairs == 6
    assert integral == pytest.approx(n_pairs / len(atoms), rel=1e-6)


def test_descriptor_rejects_unknown_elements():
    with pytest.raises(ValueError, match=r"\['I'\]"):
        DESCRIPTOR(Atoms("CsPbI3", positions=np.eye(5, 3) * 2, cell=np.eye(3) * 6, pbc=True))


# --------------------------------------------------------------------------------------------
# Farthest-point sampling and selection
# --------------------------------------------------------------------------------------------
def test_farthest_point_sampling_is_the_greedy_maximin_order():
    points = np.random.default_rng(3).normal(size=(60, 4))
    order, distance = farthest_point_sampling(points, 12, first=5)
    assert order[0] == 5 and np.isinf(distance[0]) and len(set(order.tolist())) == 12
    full = np.linalg.norm(points[:, None] - points[None], axis=2)
    for k in range(1, 12):
        rest = np.setdiff1d(np.arange(60), order[:k])
        nearest = full[np.ix_(rest, order[:k])].min(axis=1)       # brute force
        assert distance[k] == pytest.approx(nearest.max(), rel=1e-12)
        assert order[k] == rest[np.argmax(nearest)]
    assert np.all(np.diff(distance[1:]) <= 1e-12)


def test_select_takes_each_distinct_structure_once_before_any_duplicate():
    distinct = [perovskite(rattle=0.2, seed=s) for s in range(5)]
    frames = [distinct[k % 5].copy() for k in range(20)]          # every structure four times
    picked = select_frames(frames, 5, descriptor=DESCRIPTOR)
    assert sorted(k % 5 for k in picked) == [0, 1, 2, 3, 4]
    assert picked[0] == 0
    # a sixth pick has to be a duplicate: its distance to the picked set is zero
    descriptors = frame_descriptors(frames, DESCRIPTOR)
    order, distance = farthest_point_sampling(descriptors, 6)
    assert distance[5] == 0.0 and distance[4] > 0.05


def test_uncertainty_picks_the_most_uncertain_first_and_stays_in_the_candidates():
    frames = [perovskite(rattle=0.2, seed=s) for s in range(12)]
    uncertainty = np.random.default_rng(7).random(12)
    descriptors = frame_descriptors(frames, DESCRIPTOR)
    picked = select_frames(None, 4, uncertainty=uncertainty, descriptors=descriptors, candidates=6)
    top6 = np.argsort(-uncertainty)[:6]
    assert picked[0] == np.argmax(uncertainty)
    assert set(picked.tolist()) <= set(top6.tolist()) and len(set(picked.tolist())) == 4
    # candidates = n: exactly the n most uncertain
    picked = select_frames(frames, 3, uncertainty=uncertainty, candidates=3, descriptor=DESCRIPTOR)
    assert set(picked.tolist()) == set(np.argsort(-uncertainty)[:3].tolist())


def test_select_argument_errors():
    frames = [perovskite(rattle=0.1, seed=s) for s in range(3)]
    with pytest.raises(ValueError, match="asked for 4 frames, but there are 3"):
        select_frames(frames, 4, descriptor=DESCRIPTOR)
    with pytest.raises(ValueError, match="NaN"):
        select_frames(frames, 2, uncertainty=[0.1, np.nan, 0.3], descriptor=DESCRIPTOR)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        select_frames(frames, 2, uncertainty=[0.1, 0.3], descriptor=DESCRIPTOR)


# --------------------------------------------------------------------------------------------
# pyexport select
# --------------------------------------------------------------------------------------------
def run_cli(argv):
    parser = argparse.ArgumentParser()
    add_select_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_select_command_writes_the_picked_dump_frames(tmp_path, capsys):
    out = tmp_path / "selected"
    assert run_cli(["select", "--dump", WATER_DUMP, "--types", "H,O", "-n", "2", "-o", str(out)]) == 0
    record = json.loads((out / SELECTION_FILE).read_text())
    frames = ase.io.read(out / FRAMES_FILE, index=":", format="extxyz")
    dump = read_frames(WATER_DUMP, types="H,O")
    assert record["frames_considered"] == 3 and len(frames) == 2
    positions = [s["position"] for s in record["selected"]]
    assert positions[0] == 0 and len(set(positions)) == 2
    for frame, position, entry in zip(frames, positions, record["selected"]):
        source = dump[position]
        assert frame.info["timestep"] == source.info["timestep"] == entry["timestep"]
        assert frame.get_chemical_symbols() == source.get_chemical_symbols()
        assert np.allclose(frame.positions, source.positions, rtol=0, atol=1e-8)
        assert np.allclose(frame.cell.array, source.cell.array, rtol=0, atol=1e-8)
        assert np.array_equal(frame.arrays["id"], source.arrays["id"])
    # the second pick is the frame farther (in descriptor space) from frame 0
    d = frame_descriptors(dump, RDFDescriptor(("H", "O")))
    farther = 1 + int(np.argmax(np.linalg.norm(d[1:] - d[0], axis=1)))
    assert positions[1] == farther
    assert "2 of 3 frames" in capsys.readouterr().out

    with pytest.raises(FileExistsError, match="--overwrite"):
        run_cli(["select", "--dump", WATER_DUMP, "--types", "H,O", "-n", "2", "-o", str(out)])
    with pytest.raises(ValueError, match="-n 4"):
        run_cli(["select", "--dump", WATER_DUMP, "--types", "H,O", "-n", "4", "-o", str(out), "--overwrite"])


# --------------------------------------------------------------------------------------------
# pyexport select --committee
# --------------------------------------------------------------------------------------------
def write_orthogonal_dump(path, frames, types):
    """A LAMMPS text dump (id type x y z, %.17g) of frames with orthogonal cells."""
    lines = []
    for step, atoms in enumerate(frames):
        lengths = np.diag(atoms.cell.array)
        lines += ["ITEM: TIMESTEP", str(100 * step), "ITEM: NUMBER OF ATOMS", str(len(atoms)),
                  "ITEM: BOX BOUNDS pp pp pp"] + [f"0.0 {x:.17g}" for x in lengths] + ["ITEM: ATOMS id type x y z"]
        lines += [f"{i + 1} {types.index(s) + 1} {x:.17g} {y:.17g} {z:.17g}"
                  for i, (s, (x, y, z)) in enumerate(zip(atoms.get_chemical_symbols(), atoms.positions))]
    path.write_text("\n".join(lines) + "\n")


def cubic_perovskite(reps):
    """Ideal cubic CsPbBr3 (a = 5.9 Å) repeated ``reps``."""
    return Atoms("CsPbBr3", scaled_positions=[[.5, .5, .5], [0, 0, 0], [.5, 0, 0], [0, .5, 0], [0, 0, .5]],
                 cell=np.eye(3) * 5.9, pbc=True).repeat(reps)


def rattled_cubic_dump(path, reps, amplitudes):
    """A dump of ``cubic_perovskite(reps)`` rattled by each amplitude (Å) in turn, seeds 0, 1, ..."""
    frames = []
    for seed, amplitude in enumerate(amplitudes):
        atoms = cubic_perovskite(reps)
        atoms.rattle(amplitude, seed=seed)
        frames.append(atoms)
    write_orthogonal_dump(path, frames, ["Cs", "Pb", "Br"])
    return path


@pytest.fixture(scope="module")
def random_committee(tmp_path_factory):
    """A 3-member committee of tiny cluster models with random coefficients (no fit needed:
    only the members' disagreement matters here)."""
    torch.manual_seed(3)
    committee = ClusterCommittee(3, ClusterBasis.preset("tiny", cutoff=5.0), 3)
    with torch.no_grad():
        committee.coef.normal_(0.0, 1e-2)
    path = tmp_path_factory.mktemp("committee") / "committee.pt"
    write_committee(committee, ["Cs", "Pb", "Br"], path)
    return str(path)


def test_select_with_committee_picks_the_most_uncertain_frames(tmp_path, random_committee):
    dump = rattled_cubic_dump(tmp_path / "md.lammpstrj", (2, 1, 1), [0.05, 0.3, 0.02, 0.15, 0.1, 0.25, 0.03, 0.2])
    evaluator = CommitteeEvaluator(random_committee)
    expected = np.array([evaluator.max_force_uncertainty(a) for a in read_frames(str(dump), types="Cs,Pb,Br")])
    assert len(set(np.round(expected, 12))) == 8           # distinct, so the ranking is unambiguous

    out = tmp_path / "selected"
    assert run_cli(["select", "--dump", str(dump), "--types", "Cs,Pb,Br", "--committee", random_committee,
                    "-n", "2", "--candidates", "3", "-o", str(out)]) == 0
    record = json.loads((out / SELECTION_FILE).read_text())
    picked = [entry["position"] for entry in record["selected"]]
    top3 = np.argsort(-expected)[:3]
    assert picked[0] == int(np.argmax(expected)) and set(picked) <= set(top3.tolist()) and len(set(picked)) == 2
    for entry in record["selected"]:
        assert entry["uncertainty_eV_per_A"] == pytest.approx(expected[entry["position"]], rel=0, abs=1e-12)
    assert record["committee"]["committee_size"] == 3
    # the second pick is the top-3 frame farthest from the first in descriptor space
    d = frame_descriptors(read_frames(str(dump), types="Cs,Pb,Br"), RDFDescriptor(("Cs", "Pb", "Br")))
    rest = [k for k in top3 if k != picked[0]]
    assert picked[1] == rest[int(np.argmax([np.linalg.norm(d[k] - d[picked[0]]) for k in rest]))]
    assert record["selected"][1]["distance"] == pytest.approx(np.linalg.norm(d[picked[1]] - d[picked[0]]), rel=1e-12)

    with pytest.raises(ValueError, match="--candidates needs --committee"):
        run_cli(["select", "--dump", str(dump), "--types", "Cs,Pb,Br", "-n", "2", "--candidates", "3",
                 "-o", str(out), "--overwrite"])
    single = tmp_path / "single.pt"
    export_model(many_body_module(), single)
    with pytest.raises(ValueError, match="not a committee model"):
        run_cli(["select", "--dump", str(dump), "--types", "Cs,Pb,Br", "--committee", str(single), "-n", "2",
                 "-o", str(out), "--overwrite"])


# --------------------------------------------------------------------------------------------
# pyexport select --grade
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def graded_potential(tmp_path_factory):
    """A tiny cluster model (random coefficients) with the active set of gently rattled cubic
    CsPbBr3: frames rattled harder lie further outside it."""
    from pyexport.contract import GradedPotentialModule
    from pyexport.training.data import Structure, prepare
    from pyexport.training.extrapolation import species_features
    from pyexport.models.cluster import ClusterLinear
    from pyexport.models.grade import ExtrapolationGrade, build_active_set

    elements = ["Cs", "Pb", "Br"]
    torch.manual_seed(4)
    model = ClusterLinear(3, ClusterBasis.preset("tiny", cutoff=5.0), elements)
    with torch.no_grad():
        model.coef.normal_(0.0, 1e-2)
    cubic = cubic_perovskite((3, 3, 3))
    training = []
    for seed in range(8):
        atoms = cubic.copy()
        atoms.rattle(0.04, seed=100 + seed)
        training.append(Structure(atoms=atoms, energy=0.0, forces=np.zeros((len(atoms), 3)), stress=None, source=""))
    features = species_features(model.descriptor, prepare(training, elements, 5.0))
    module = GradedPotentialModule(model, ExtrapolationGrade(build_active_set(features, elements)), elements, 5.0)
    path = tmp_path_factory.mktemp("graded") / "graded.pt"
    export_model(module, path)
    return str(path)


def test_select_with_grade_picks_the_frames_furthest_outside_the_data(tmp_path, graded_potential):
    from pyexport.calculator import MLFFCalculator

    dump = rattled_cubic_dump(tmp_path / "md.lammpstrj", (2, 2, 2), [0.03, 0.4, 0.02, 0.15, 0.1, 0.3, 0.04, 0.2])
    calc = MLFFCalculator(graded_potential)
    expected = []
    for atoms in read_frames(str(dump), types="Cs,Pb,Br"):
        atoms.calc = calc
        expected.append(calc.get_property("extrapolation_grade", atoms).max())
    expected = np.array(expected)
    assert expected[1] == expected.max() and expected[1] > 2.0     # the hardest rattle is furthest out

    out = tmp_path / "selected"
    assert run_cli(["select", "--dump", str(dump), "--types", "Cs,Pb,Br", "--grade", graded_potential,
                    "-n", "2", "--candidates", "3", "-o", str(out)]) == 0
    record = json.loads((out / SELECTION_FILE).read_text())
    picked = [entry["position"] for entry in record["selected"]]
    assert picked[0] == 1 and set(picked) <= set(np.argsort(-expected)[:3].tolist())
    for entry in record["selected"]:
        assert entry["extrapolation_grade"] == pytest.approx(expected[entry["position"]], rel=0, abs=1e-12)
    assert record["grade"]["active_set_size"] > 0

    single = tmp_path / "single.pt"
    export_model(many_body_module(), single)
    with pytest.raises(ValueError, match="single.pt: this potential has no extrapolation grade"):
        run_cli(["select", "--dump", str(dump), "--types", "Cs,Pb,Br", "--grade", str(single), "-n", "2",
                 "-o", str(out), "--overwrite"])
    with pytest.raises(SystemExit):        # one score at a time
        run_cli(["select", "--dump", str(dump), "--types", "Cs,Pb,Br", "--grade", graded_potential,
                 "--committee", graded_potential, "-n", "2", "-o", str(out), "--overwrite"])
