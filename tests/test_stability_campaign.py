"""The stability campaign of the examples (examples/stability_campaign.py, issue #20): what makes a
run count as survived, the MAPbI3 cation check against the reference set's bond ranges, and one
real guarded LAMMPS run through the plugin with a potential fitted here."""
import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def campaign():
    sys.path.insert(0, str(EXAMPLES))
    return _load("stability_campaign", EXAMPLES / "stability_campaign.py")


@pytest.fixture(scope="module")
def mapbi3():
    sys.path.insert(0, str(EXAMPLES / "mapbi3"))
    return _load("mapbi3_stability", EXAMPLES / "mapbi3" / "stability.py")


def test_temperature_runs_parse_and_reject(campaign):
    assert campaign.temperature_runs("300:2, 800", 3) == [(300, 2), (800, 3)]
    with pytest.raises(SystemExit, match="'3x0' is not T or T:k"):
        campaign.temperature_runs("300,3x0", 1)
    with pytest.raises(SystemExit, match="'300:0' asks for no runs"):
        campaign.temperature_runs("300:0", 1)


GOOD = {"guard": None, "steps_run": 1000, "steps_planned": 1000, "volume_change": 0.05,
        "gbreak": 10.0, "max_grade": 3.0}


@pytest.mark.parametrize("change", [{}, {"gbreak": None, "max_grade": 50.0}, {"dump_check": {"ok": True}}])
def test_a_run_that_reached_its_end_inside_the_limits_survived(campaign, change):
    assert campaign.run_survived(GOOD | change, 0.2)


@pytest.mark.parametrize("change", [{"guard": "halted during production at step 500"}, {"steps_run": 999},
                                    {"volume_change": -0.21}, {"max_grade": 10.0},
                                    {"volume_change": float("nan")}, {"dump_check": {"ok": False}}])
def test_any_failed_criterion_means_not_survived(campaign, change):
    assert not campaign.run_survived(GOOD | change, 0.2)


def test_cation_bonds_are_the_minimum_image_distances(mapbi3):
    """Across the cell boundary and in a sheared cell: the bonds equal ASE's minimum-image
    distances between the atoms that structures.py says are bonded."""
    from structures import ATOMS_PER_CELL, cation_bond_lengths

    cell = mapbi3.tetragonal_supercell(2).copy()
    cell.set_cell(cell.cell[:] @ np.array([[1, 0.04, 0], [0, 1, 0], [0, 0, 1]]), scale_atoms=True)
    cell.positions += 6.0                        # everything across a boundary, then wrapped
    cell.wrap()
    bonds = cation_bond_lengths(cell)
    for k, start in enumerate(range(0, len(cell), ATOMS_PER_CELL)):
        c, n = start + 4, start + 5
        assert bonds["C-N"][k] == pytest.approx(cell.get_distance(c, n, mic=True), abs=1e-12)
        assert bonds["C-H"][k] == pytest.approx(cell.get_distances(c, [start + 6, start + 7, start + 8], mic=True), abs=1e-12)
        assert bonds["N-H"][k] == pytest.approx(cell.get_distances(n, [start + 9, start + 10, start + 11], mic=True), abs=1e-12)
    with pytest.raises(ValueError, match="95 atoms: not whole pseudocubic cells"):
        cation_bond_lengths(cell[:-1])


def test_large_start_cells_keep_every_cation_whole(mapbi3):
    """The relaxed 96-atom cell has cations across its boundary; repeated as it is, the 768-atom
    start would pair each C with the N of another copy (C–N ~12 Å). Made whole first, every bond
    of every cation is the relaxed one and the crystal is the same, atom for atom."""
    from structures import ATOMS_PER_CELL, cation_bond_lengths, whole_cations

    ground = next(a for a in mapbi3.reference_frames()
                  if a.info.get("config_type") == "phase_min" and a.info.get("phase") == "tetragonal")
    c, n = np.arange(4, len(ground), ATOMS_PER_CELL), np.arange(5, len(ground), ATOMS_PER_CELL)
    assert np.linalg.norm(ground.positions[n] - ground.positions[c], axis=1).max() > 5.0   # straddling
    whole = whole_cations(ground)
    shift = whole.cell.scaled_positions(whole.positions - ground.positions)
    np.testing.assert_allclose(shift, np.round(shift), atol=1e-9)        # moved by lattice vectors only
    assert np.linalg.norm(whole.positions[n] - whole.positions[c], axis=1).max() < 1.6
    relaxed = cation_bond_lengths(ground)
    big = mapbi3.tetragonal_supercell(4)
    assert len(big) == 768
    for bond, lengths in cation_bond_lengths(big).items():
        np.testing.assert_allclose(lengths, np.concatenate([relaxed[bond]] * 8), atol=1e-9)


def test_bond_ranges_hold_the_reference_bonds(mapbi3):
    ranges = mapbi3.bond_ranges()
    # the relaxed bonds lie inside, and the set's distorted cations widen the ranges well beyond
    assert ranges["C-N"][0] < 1.40 < 1.49 < 1.60 < ranges["C-N"][1] < 2.0
    assert 0.6 < ranges["C-H"][0] < 1.0 and 1.2 < ranges["C-H"][1] < 1.5
    assert 0.6 < ranges["N-H"][0] < 0.95 and 1.15 < ranges["N-H"][1] < 1.5


@pytest.fixture(scope="module")
def guarded_run(tmp_path_factory, mapbi3, campaign):
    """A `cluster` potential fitted here to 48 cells of the MAPbI3 set (tiny basis, the example's
    pair cutoffs, core and active set), then the campaign: one 96-atom run of 200 steps at 250 K
    through LAMMPS and the plugin, dump kept. The grade guard is set out of reach (G = 10⁶; γ is
    still computed): a potential of 48 cells leaves its data within ~100 steps."""
    import ase.io
    from model_settings import FIT_OPTIONS
    from pyexport.cli import main as pyexport

    root = tmp_path_factory.mktemp("mapbi3_stability")
    frames = [a for a in mapbi3.reference_frames()
              if a.info.get("config_type") in ("phase_min", "md", "strain", "strain_rattle")][:48]
    ase.io.write(root / "data.extxyz", frames, format="extxyz")
    assert pyexport(["fit", str(root / "data.extxyz"), "--model", "cluster", "--basis", "tiny", "--cutoff", "6.0",
                     "--lambdas", "1e-6:1e-2:3", *FIT_OPTIONS, "--no-progress", "-o", str(root / "m.ckpt")]) == 0
    assert pyexport(["export", str(root / "m.ckpt"), "-o", str(root / "m.pt")]) == 0
    out = root / "stability"
    rc = campaign.main(mapbi3.CAMPAIGN, "test", ["--model", str(root / "m.pt"), "--temperatures", "250:1",
                                                 "--ps", "0.1", "--every", "20", "--jobs", "1", "--keep-dumps",
                                                 "--gbreak", "1e6",
                                                 "-o", str(out)])
    assert rc == 0
    return out


def test_a_real_run_is_recorded_with_its_cation_check(guarded_run, mapbi3):
    record = json.loads((guarded_run / "runs" / "250K_n2_s11.json").read_text())
    summary = json.loads((guarded_run / "stability.json").read_text())
    assert record["atoms"] == 96 and record["steps_planned"] == 200 and record["gbreak"] == 1e6
    assert record["max_grade"] > 0.0                       # γ computed every check all the same
    check = record["dump_check"]
    assert check["frames"] == 200 // 20 + 1               # production from step 0: every step is dumped
    assert check["bond_range_data_A"] == {b: [round(lo, 4), round(hi, 4)] for b, (lo, hi) in mapbi3.bond_ranges().items()}
    for bond, (lo, hi) in check["bond_range_run_A"].items():
        assert 0.5 < lo <= hi < 2.5
        assert check["ok"] is False or check["bond_range_data_A"][bond][0] <= lo <= hi <= check["bond_range_data_A"][bond][1]
    assert summary["runs"] == 1 and summary["records"][0]["name"] == "250K_n2_s11"
    assert summary["per_temperature"]["250"]["atoms"] == [96]
    assert (guarded_run / "stability.png").stat().st_size > 0


def test_a_broken_cation_is_found_at_its_frame(guarded_run, mapbi3, tmp_path):
    """The same dump with one N–H hydrogen of the third frame moved 1.0 Å further out along its
    bond: the check names that timestep and the N–H bond, and fails."""
    dump = guarded_run / "runs" / "250K_n2_s11" / "md_250K.dump"
    text = dump.read_text().split("ITEM: TIMESTEP\n")
    frame = text[3].splitlines()
    timestep = int(frame[0])
    header = next(k for k, line in enumerate(frame) if line.startswith("ITEM: ATOMS"))
    columns = frame[header].split()[2:]
    ix, iy, iz, iid = (columns.index(c) for c in ("x", "y", "z", "id"))
    rows = [line.split() for line in frame[header + 1:]]
    by_id = {int(r[iid]): r for r in rows}
    h_row = by_id[10]                  # cation 1: N is atom 6, its first H atom 10 (1-based ids)
    from pyexport.lammps.dump import iread
    atoms = [a for a in iread(dump, types=mapbi3.ELEMENTS) if a.info["timestep"] == timestep][0]
    bond = atoms.get_distance(5, 9, mic=True, vector=True)        # N -> H, whichever image
    h_pos = np.array([float(h_row[k]) for k in (ix, iy, iz)])
    for k, x in zip((ix, iy, iz), h_pos + 1.0 * bond / np.linalg.norm(bond)):
        h_row[k] = f"{x:.10g}"
    frame[header + 1:] = [" ".join(r) for r in rows]
    text[3] = "\n".join(frame) + "\n"
    broken = tmp_path / "broken.dump"
    broken.write_text("ITEM: TIMESTEP\n".join(text))
    check = mapbi3.check_cations(broken)
    assert check["ok"] is False
    assert check["first_outside"]["timestep"] == timestep and check["first_outside"]["bond"] == "N-H"
    assert check["first_outside"]["length_A"] > mapbi3.bond_ranges()["N-H"][1]


def test_the_campaign_resumes_without_repeating_a_run(guarded_run, campaign, mapbi3):
    record_path = guarded_run / "runs" / "250K_n2_s11.json"
    before = record_path.read_text()
    model = re.search(r'"model": "([^"]+)"', (guarded_run / "stability.json").read_text()).group(1)
    assert campaign.main(mapbi3.CAMPAIGN, "test", ["--model", model, "--temperatures", "250:1", "--ps", "0.1",
                                                   "--every", "20", "--jobs", "1", "--gbreak", "1e6",
                                                   "-o", str(guarded_run)]) == 0
    assert record_path.read_text() == before


def test_a_run_on_two_mpi_ranks_is_recorded_like_a_serial_one(guarded_run, campaign, mapbi3, tmp_path):
    """--ranks 2: LAMMPS under mpirun -np 2 (the way to run one large cell on both cores); the dump is
    sorted by id, so the cation check reads it as it reads a serial run's."""
    model = re.search(r'"model": "([^"]+)"', (guarded_run / "stability.json").read_text()).group(1)
    assert campaign.main(mapbi3.CAMPAIGN, "test", ["--model", model, "--temperatures", "250:1", "--ps", "0.1",
                                                   "--every", "20", "--jobs", "1", "--ranks", "2", "--gbreak", "1e6",
                                                   "-o", str(tmp_path)]) == 0
    serial = json.loads((guarded_run / "runs" / "250K_n2_s11.json").read_text())
    parallel = json.loads((tmp_path / "runs" / "250K_n2_s11.json").read_text())
    assert serial["mpi_ranks"] == 1 and parallel["mpi_ranks"] == 2
    assert parallel["guard"] is None and parallel["steps_run"] == serial["steps_run"] == 200
    assert parallel["dump_check"]["frames"] == serial["dump_check"]["frames"] == 11
    # the same trajectory up to the rank count's different summation order: bonds agree closely
    for bond, (lo, hi) in serial["dump_check"]["bond_range_run_A"].items():
        assert parallel["dump_check"]["bond_range_run_A"][bond] == pytest.approx([lo, hi], abs=1e-3)


def test_active_learning_reads_the_grades_lammps_printed(guarded_run, campaign, mapbi3):
    """The active-learning loop picks frames by the max γ that the thermo printed at each dumped
    step (examples/active_learning_loop.printed_grades) instead of evaluating the model again:
    they are the grades the Python calculator gives those frames, to the thermo's 8 digits."""
    from pyexport.lammps.dump import iread
    from pyexport.select import frame_score

    loop = _load("active_learning_loop", EXAMPLES / "active_learning_loop.py")
    folder = guarded_run / "runs" / "250K_n2_s11"
    printed = loop.printed_grades(folder / "log.lammps")
    model = re.search(r'"model": "([^"]+)"', (guarded_run / "stability.json").read_text()).group(1)
    score = frame_score(grade=model)
    frames = list(iread(folder / "md_250K.dump", types=mapbi3.ELEMENTS))
    assert len(frames) == 11 and set(printed) >= {a.info["timestep"] for a in frames}
    for k, atoms in enumerate(frames):
        assert printed[atoms.info["timestep"]] == pytest.approx(score.of_frame(atoms, "dump", k), rel=1e-7)
    assert loop.printed_grades(folder / "no_such.log") == {}


def test_a_large_cell_starts_from_a_small_runs_last_frame(guarded_run, campaign, mapbi3, tmp_path):
    """--start-from: the last frame of the 96-atom run, cations made whole, repeated to 768 atoms
    (--supercell 4) and run through LAMMPS; the run is named after the dump's run and records the
    frame, and its start holds that frame's cations (the same bonds, eight times)."""
    from pyexport.lammps.dump import iread
    from structures import cation_bond_lengths

    model = re.search(r'"model": "([^"]+)"', (guarded_run / "stability.json").read_text()).group(1)
    dump = guarded_run / "runs" / "250K_n2_s11" / "md_250K.dump"
    args = ["--model", model, "--temperatures", "250:1", "--ps", "0.005", "--every", "10", "--jobs", "1",
            "--gbreak", "1e6", "--start-from", str(dump), "-o", str(tmp_path)]
    assert campaign.main(mapbi3.CAMPAIGN, "test", ["--supercell", "4", *args]) == 0
    record = json.loads((tmp_path / "runs" / "250K_n4_s11_from_250K_n2_s11.json").read_text())
    last = list(iread(dump, types=mapbi3.ELEMENTS))[-1]
    assert record["start_from"] == {"dump": str(dump), "timestep": 200, "atoms": 96} == {
        "dump": str(dump), "timestep": last.info["timestep"], "atoms": len(last)}
    assert record["atoms"] == 768 and record["steps_run"] == 10 and record["dump_check"]["frames"] == 2
    import ase.io
    start = ase.io.read(tmp_path / "start_4_from_250K_n2_s11.data", format="lammps-data", atom_style="atomic")
    bonds_start, bonds_frame = cation_bond_lengths(start), cation_bond_lengths(last)
    for bond in bonds_frame:
        assert bonds_start[bond] == pytest.approx(np.concatenate([bonds_frame[bond]] * 8), abs=1e-8)
    with pytest.raises(SystemExit, match="does not repeat to --supercell 3"):
        campaign.main(mapbi3.CAMPAIGN, "test", ["--supercell", "3", *args])


def test_active_learning_can_start_from_a_dump_frame(guarded_run, campaign, mapbi3):
    """The loop's --start-from (examples/active_learning_loop.py) goes through the campaign's
    start_from_dump with the MAPbI3 example's repeat: the 96-atom run's last frame as a 768-atom
    start; an example without a repeat refuses by name."""
    loop = _load("active_learning_loop", EXAMPLES / "active_learning_loop.py")
    example = _load("mapbi3_active_learning", EXAMPLES / "mapbi3" / "active_learning.py").EXAMPLE
    dump = guarded_run / "runs" / "250K_n2_s11" / "md_250K.dump"
    args = loop.parse_args(example, "test", ["--start-from", str(dump), "--supercell", "4"])
    start, tag, origin = campaign.start_from_dump(args.start_from, args.start_frame, example.elements,
                                                  example.start_from_frame, args.supercell)
    assert len(start) == 768 and tag == "from_250K_n2_s11" and origin["timestep"] == 200
    with pytest.raises(SystemExit, match="cannot repeat a dump frame"):
        campaign.start_from_dump(args.start_from, -1, example.elements, None, 4)
