"""pyexport.lammps.dump, the streaming LAMMPS text dump reader, against LAMMPS itself and ASE's reader.

Reference values come from LAMMPS (the coordinates, box and velocities it holds, through its
Python module) and from ASE's ``lammps-dump-text`` reader on the same files; nothing is
hard-coded. ASE returns scaled coordinates as ``s @ cell`` without the box origin, ours are
``origin + s @ cell`` (LAMMPS's own x); comparisons with ASE add the origin back for those.
"""
import bz2
import gzip
import io
import lzma
import re
import warnings
from pathlib import Path

import ase.io
import numpy as np
import pytest

from pyexport.lammps.dump import (BATCH_BYTES, DumpFormatError, TruncatedDumpError,
                                  TruncatedDumpWarning, count_frames, iread, read_frames,
                                  read_type_map)
from lammps_helpers import lammps_instance

DATA = Path(__file__).parent / "data"
SYMBOLS = ["Cs", "Pb", "Br"]
MASSES = {"Cs": 132.905, "Pb": 207.2, "Br": 79.904}
HIGH_PRECISION = "format float %20.15g"
STYLES = {"x": "x y z", "xs": "xs ys zs", "xu": "xu yu zu", "xsu": "xsu ysu zsu"}
# region (lattice units, fcc a = 4 Å) and boundary of each box shape; origins are off zero
BOXES = {  # the last one also gets the extra dumps and the MD run
    "orthogonal": ("block -0.5 2.5 0.25 3.25 1 4", "p p s"),
    "triclinic_negative": ("prism 0.3 3.3 -2 1 0 3 -0.6 -0.4 -0.3", "p p p"),
    "triclinic": ("prism -1 2 0.5 3.5 -0.25 2.75 0.5 -0.3 0.2", "p p p"),
}
TRAJ_TIMESTEPS = list(range(0, 31, 5))
SORTS = {"x": "", "xs": "sort -1", "xu": "sort id", "xsu": ""}   # file order: as is, reversed, sorted


def ase_frames(path, symbols, index=":"):
    """ASE's reader on a (possibly compressed) dump, type t -> symbols[t-1]."""
    opener = {".bz2": bz2.open, ".gz": gzip.open, ".xz": lzma.open}.get(Path(path).suffix)
    if opener is None:
        return list(ase.io.iread(path, format="lammps-dump-text", index=index, specorder=symbols))
    with io.TextIOWrapper(opener(path)) as text:
        return list(ase.io.iread(text, format="lammps-dump-text", index=index,
                                 specorder=symbols))


def assert_matches_ase(ours, theirs, scaled: bool):
    """Same frame per ASE: symbols, cell and origin to 1e-6, positions to 1e-6 Å (ASE's scaled
    positions shifted by the origin, see the module docstring), pbc, timestep."""
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.get_chemical_symbols() == b.get_chemical_symbols()
        np.testing.assert_allclose(a.cell[:], b.cell[:], rtol=0, atol=1e-6)
        np.testing.assert_allclose(a.get_celldisp(), b.get_celldisp(), rtol=0, atol=1e-6)
        shift = a.get_celldisp().ravel() if scaled else 0.0
        np.testing.assert_allclose(a.positions, b.positions + shift, rtol=0, atol=1e-6)
        assert list(a.pbc) == list(b.pbc)
        assert a.info["timestep"] == b.info["timestep"]
        np.testing.assert_array_equal(a.arrays["type"], b.arrays["type"])


# ---------------------------------------------------------------------------------------------
# the fixture dumps of tests/data

FIXTURES = {  # file: (symbols for its types, coordinates scaled?)
    "mdanalysis/albite_triclinic.dump": (["O"], True),
    "mdanalysis/wat.lammpstrj.bz2": (["H", "O"], True),
    "mdanalysis/image_vf.lammpstrj": (["H", "O"], False),
    "dpdata/traj.dump": (["Fe", "Ni"], False),
}


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_dumps_equal_ase(name):
    symbols, scaled = FIXTURES[name]
    path = DATA / name
    ours = read_frames(path, types=symbols)
    theirs = ase_frames(path, symbols)
    assert len(ours) == count_frames(path) >= 1
    assert_matches_ase(ours, theirs, scaled)
    for a, b in zip(ours, theirs):
        for key in b.arrays:
            if key.startswith("c_"):
                np.testing.assert_array_equal(a.arrays[key], b.arrays[key])


def test_fixture_unsorted_ids_sorted_with_their_columns():
    """image_vf.lammpstrj lists ids out of order: every column moves with its atom."""
    path = DATA / "mdanalysis/image_vf.lammpstrj"
    rows = [line.split() for line in path.read_text().splitlines()[9:16]]
    file_ids = [int(r[0]) for r in rows]
    assert file_ids != sorted(file_ids)
    atoms = read_frames(path, types=["H", "O"], index=0)[0]
    np.testing.assert_array_equal(atoms.arrays["id"], sorted(file_ids))
    by_id = {int(r[0]): r for r in rows}
    names = "id mol type q x y z ix iy iz vx vy vz fx fy fz".split()
    for name in ("q", "ix", "vx", "vz", "fx", "fz"):
        expected = [float(by_id[i][names.index(name)]) for i in sorted(file_ids)]
        np.testing.assert_array_equal(atoms.arrays[name], expected)
    assert atoms.arrays["ix"].dtype == np.int64 and atoms.arrays["vx"].dtype == np.float64
    theirs = ase_frames(path, ["H", "O"], index="0:1")[0]
    np.testing.assert_allclose(np.column_stack([atoms.arrays[f"f{c}"] for c in "xyz"]),
                               theirs.get_forces(), rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# dumps written by LAMMPS


def _image_flags(lmp, image):
    bits, bits2 = lmp.extract_setting("IMGBITS"), lmp.extract_setting("IMG2BITS")
    mask, offset = lmp.extract_setting("IMGMASK"), lmp.extract_setting("IMGMAX")
    return np.column_stack([(image & mask) - offset, ((image >> bits) & mask) - offset,
                            (image >> bits2) - offset])


@pytest.fixture(scope="module")
def lammps_run(tmp_path_factory):
    """One LAMMPS session: for each box shape, a displaced fcc crystal with three types written
    in every coordinate style (and file order), with LAMMPS's own coordinates, box, image flags
    and velocities as reference; then a short MD with a deforming box dumped every 5 steps."""
    root = tmp_path_factory.mktemp("dumps")
    lmp = lammps_instance()
    reference = {}
    for box, (region, boundary) in BOXES.items():
        lmp.commands_string(f"""
            clear
            units metal
            atom_style atomic
            boundary {boundary}
            lattice fcc 4.0
            region box {region}
            create_box 3 box
            create_atoms 1 box
            mass 1 {MASSES['Cs']}
            mass 2 {MASSES['Pb']}
            mass 3 {MASSES['Br']}
            set type 1 type/fraction 2 0.3 11
            set type 1 type/fraction 3 0.4 12
            displace_atoms all random 1.5 1.5 1.5 4321 units box
            velocity all create 300 7
            reset_timestep 1234
        """)
        for style, columns in STYLES.items():
            extra = " vx vy vz ix iy iz" if style == "x" else ""
            lmp.command(f"write_dump all custom {root}/{box}_{style}.dump id type {columns}{extra}"
                        f" modify {HIGH_PRECISION} {SORTS[style]}")
        lmp.command(f"write_dump all custom {root}/{box}_default.dump id type x y z")
        lo, hi, xy, yz, xz, periodic, _ = lmp.extract_box()
        ids = lmp.numpy.extract_atom("id").copy()
        order = np.argsort(ids)
        x = lmp.numpy.extract_atom("x")[order].copy()
        cell = np.array([[hi[0] - lo[0], 0, 0], [xy, hi[1] - lo[1], 0], [xz, yz, hi[2] - lo[2]]])
        images = _image_flags(lmp, lmp.numpy.extract_atom("image")[order])
        reference[box] = dict(ids=ids[order], x=x, cell=cell, origin=np.array(lo),
                              pbc=[bool(p) for p in periodic], images=images,
                              unwrapped=x + images @ cell,
                              types=lmp.numpy.extract_atom("type")[order].copy(),
                              v=lmp.numpy.extract_atom("v")[order].copy())
    # extras on the last (triclinic) system: element column, type labels, data file, units/time
    assert box == "triclinic"
    lmp.commands_string(f"""
        write_dump all custom {root}/element.dump id type element x y z modify element Cs Pb Br
        labelmap atom 1 Cs 2 Pb 3 Br
        write_dump all custom {root}/typelabel.dump id typelabel x y z
        write_dump all custom {root}/units.dump id type x y z modify units yes time yes
        write_data {root}/system.data
        reset_timestep 0
        pair_style zero 4.0
        pair_coeff * *
        compute ke all ke/atom
        fix md all nve
        fix box all deform 1 x scale 1.05 xy final 0.9 remap x
        dump traj all custom 5 {root}/traj.dump id type x y z vx vy vz c_ke
        dump traj_scaled all custom 5 {root}/traj_scaled.dump id type xs ys zs
        run 30
    """)
    lmp.close()
    return root, reference


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("box", BOXES)
def test_lammps_dumps_give_lammps_coordinates(lammps_run, box, style):
    root, reference = lammps_run
    ref = reference[box]
    path = root / f"{box}_{style}.dump"
    atoms, = read_frames(path, types=SYMBOLS)
    file_ids = [int(line.split()[0]) for line in path.read_text().splitlines()[9:]]
    if style == "xs":
        assert file_ids == sorted(file_ids, reverse=True)   # sorting really happens here
    np.testing.assert_array_equal(atoms.arrays["id"], ref["ids"])
    np.testing.assert_array_equal(atoms.arrays["type"], ref["types"])
    assert atoms.get_chemical_symbols() == [SYMBOLS[t - 1] for t in ref["types"]]
    np.testing.assert_allclose(atoms.cell[:], ref["cell"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(atoms.get_celldisp().ravel(), ref["origin"], rtol=0, atol=1e-9)
    assert list(atoms.pbc) == ref["pbc"]
    assert atoms.info["timestep"] == 1234
    expected = ref["unwrapped"] if style in ("xu", "xsu") else ref["x"]
    np.testing.assert_allclose(atoms.positions, expected, rtol=0, atol=1e-6)
    if style == "x":
        np.testing.assert_allclose(np.column_stack([atoms.arrays[f"v{c}"] for c in "xyz"]),
                                   ref["v"], rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(
            np.column_stack([atoms.arrays[f"i{c}"] for c in "xyz"]), ref["images"])
    assert_matches_ase([atoms], ase_frames(path, SYMBOLS), scaled=style in ("xs", "xsu"))


@pytest.mark.parametrize("box", BOXES)
def test_lammps_dump_unwrapped_crosses_boundaries(lammps_run, box):
    """The displacement moved atoms across periodic faces, so wrapped and unwrapped differ."""
    root, reference = lammps_run
    assert np.abs(reference[box]["images"]).max() >= 1
    wrapped = read_frames(root / f"{box}_x.dump", types=SYMBOLS)[0].positions
    unwrapped = read_frames(root / f"{box}_xu.dump", types=SYMBOLS)[0].positions
    assert np.abs(unwrapped - wrapped).max() > 1.0


@pytest.mark.parametrize("box", BOXES)
def test_lammps_default_format_equals_ase(lammps_run, box):
    root, _ = lammps_run
    path = root / f"{box}_default.dump"
    assert_matches_ase(read_frames(path, types=SYMBOLS), ase_frames(path, SYMBOLS), scaled=False)


def test_general_triclinic_box(tmp_path):
    """'ITEM: BOX BOUNDS abc origin' (dump_modify triclinic/general yes): the same crystal as the
    restricted-triclinic dump, rotated: equal cell parameters and fractional coordinates."""
    lmp = lammps_instance()
    lmp.commands_string(f"""
        units metal
        atom_style atomic
        lattice custom 4.0 triclinic/general a1 1.0 0.1 0.2 a2 0.3 1.1 0.0 a3 -0.2 0.4 0.9 &
            basis 0 0 0 basis 0.5 0.5 0.5
        create_box 1 NULL 0 2 0 2 0 2
        create_atoms 1 box
        mass * 1.0
        displace_atoms all random 0.2 0.2 0.2 99 units box
        write_dump all custom {tmp_path}/general.dump id type x y z modify triclinic/general yes {HIGH_PRECISION}
        write_dump all custom {tmp_path}/general_s.dump id type xs ys zs modify triclinic/general yes {HIGH_PRECISION}
        write_dump all custom {tmp_path}/restricted.dump id type x y z modify {HIGH_PRECISION}
    """)
    lmp.close()
    assert "BOX BOUNDS abc origin" in (tmp_path / "general.dump").read_text()
    general, = read_frames(tmp_path / "general.dump", types=["Cs"])
    general_s, = read_frames(tmp_path / "general_s.dump", types=["Cs"])
    restricted, = read_frames(tmp_path / "restricted.dump", types=["Cs"])
    np.testing.assert_allclose(general.cell.cellpar(), restricted.cell.cellpar(), atol=1e-9)
    assert not np.allclose(general.cell[:], restricted.cell[:])     # really rotated
    np.testing.assert_allclose(general_s.positions, general.positions, rtol=0, atol=1e-9)

    def fractional(atoms):
        return atoms.cell.scaled_positions(atoms.positions - atoms.get_celldisp().ravel())
    np.testing.assert_allclose(fractional(general), fractional(restricted), rtol=0, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# trajectories: selection, compression, counting


def test_trajectory_equals_ase_and_changes_box(lammps_run):
    root, _ = lammps_run
    path = root / "traj.dump"
    ours = read_frames(path, types=SYMBOLS)
    assert_matches_ase(ours, ase_frames(path, SYMBOLS), scaled=False)
    assert [a.info["timestep"] for a in ours] == TRAJ_TIMESTEPS
    assert ours[-1].cell[0, 0] > ours[0].cell[0, 0] * 1.04          # fix deform acted
    theirs = ase_frames(path, SYMBOLS)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a.arrays["c_ke"], b.arrays["c_ke"])


def test_scaled_trajectory_follows_the_changing_box(lammps_run):
    """xs ys zs of the deforming box: each frame's scaled coordinates go with its own box (the
    frames are converted together), as ASE and the x y z dump of the same run have them."""
    root, _ = lammps_run
    scaled = read_frames(root / "traj_scaled.dump", types=SYMBOLS)
    assert_matches_ase(scaled, ase_frames(root / "traj_scaled.dump", SYMBOLS), scaled=True)
    cartesian = read_frames(root / "traj.dump", types=SYMBOLS)
    assert len(scaled) == len(cartesian) == 7
    for a, b in zip(scaled, cartesian):
        np.testing.assert_allclose(a.cell[:], b.cell[:], rtol=0, atol=1e-9)
        np.testing.assert_allclose(a.positions, b.positions, rtol=0, atol=1e-4)  # %g: 6 digits


def test_frames_with_other_columns_in_one_file(lammps_run, tmp_path):
    """Two dumps of different columns one after the other (as `cat` makes): every frame as
    read from its own file."""
    root, _ = lammps_run
    parts = [root / "triclinic_x.dump", root / "triclinic_default.dump", root / "traj.dump"]
    joined = tmp_path / "joined.dump"
    joined.write_bytes(b"".join(part.read_bytes() for part in parts))
    frames = read_frames(joined, types=SYMBOLS)
    alone = [atoms for part in parts for atoms in read_frames(part, types=SYMBOLS)]
    assert len(frames) == len(alone) == 9
    for a, b in zip(frames, alone):
        assert sorted(a.arrays) == sorted(b.arrays)
        for name in a.arrays:
            np.testing.assert_array_equal(a.arrays[name], b.arrays[name])


def test_frame_without_atoms_between_frames(tmp_path):
    """A frame of 0 atoms (an empty dump group) between two others, ids out of order."""
    path = tmp_path / "empty.dump"
    header = ("ITEM: TIMESTEP\n{}\nITEM: NUMBER OF ATOMS\n{}\nITEM: BOX BOUNDS pp pp pp\n0 10\n"
              "0 10\n0 10\nITEM: ATOMS id type x y z\n")
    path.write_text(header.format(0, 3) + "3 1 3 3 3\n1 2 1 1 1\n2 1 2 2 2\n"
                    + header.format(5, 0) + header.format(10, 2) + "7 2 7 7 7\n5 1 5 5 5\n")
    frames = read_frames(path, types=["Cs", "Pb"])
    assert [len(a) for a in frames] == [3, 0, 2]
    assert [a.info["timestep"] for a in frames] == [0, 5, 10]
    assert frames[0].arrays["id"].tolist() == [1, 2, 3] and frames[2].arrays["id"].tolist() == [5, 7]
    assert frames[0].get_chemical_symbols() == ["Pb", "Cs", "Cs"]
    np.testing.assert_array_equal(frames[2].positions, [[5, 5, 5], [7, 7, 7]])


def test_batches_of_other_spacing_and_nan(tmp_path):
    """A dump longer than one batch of rows (BATCH_BYTES) whose later frames have padded columns
    (%20.15g) and a nan: every value is Python's float of its token, in every frame."""
    rng = np.random.default_rng(2)
    frames, n_atoms = 40, 2500
    values = rng.normal(size=(frames, n_atoms)) * 10.0 ** rng.integers(-8, 8, (frames, n_atoms))
    formats = ["%.10g"] * 25 + ["%20.15g"] * 15
    text = []
    for k in range(frames):
        tokens = [formats[k] % v for v in values[k]]
        if k == 30:
            tokens[7] = "nan"
        rows = "".join(f"{i + 1} 1 0.5 0.5 0.5 {t}\n" for i, t in enumerate(tokens))
        text.append(f"ITEM: TIMESTEP\n{k}\nITEM: NUMBER OF ATOMS\n{n_atoms}\nITEM: BOX BOUNDS pp pp pp\n"
                    f"0 1\n0 1\n0 1\nITEM: ATOMS id type x y z c_junk\n{rows}")
        values[k] = [float(t) for t in tokens]
    path = tmp_path / "batches.dump"
    path.write_text("".join(text))
    assert path.stat().st_size > 2 * BATCH_BYTES
    got = np.array([atoms.arrays["c_junk"] for atoms in iread(path, types=["Cs"])])
    np.testing.assert_array_equal(got, values)        # (nan == nan for assert_array_equal)
    assert np.isnan(got[30, 7]) and np.isnan(got).sum() == 1


@pytest.mark.parametrize("index, ase_index", [
    (":", ":"), ("1::2", "1::2"), ("2:5", "2:5"), ("-3:", "-3:"), (":-2", ":-2"), ("-1", "-1:"),
    ("0", "0:1"), ("3", "3:4"), (-2, slice(-2, -1)), (slice(1, None, 3), slice(1, None, 3)),
    (4, slice(4, 5))])
def test_index_selects_like_ase(lammps_run, index, ase_index):
    root, _ = lammps_run
    path = root / "traj.dump"
    ours = read_frames(path, types=SYMBOLS, index=index)
    theirs = ase_frames(path, SYMBOLS, index=ase_index)
    assert len(ours) >= 1
    assert [a.info["timestep"] for a in ours] == [b.info["timestep"] for b in theirs]
    assert_matches_ase(ours, theirs, scaled=False)


def test_index_errors(lammps_run):
    root, _ = lammps_run
    path = root / "traj.dump"
    with pytest.raises(ValueError, match="step must be positive"):
        iread(path, types=SYMBOLS, index="::-1")
    with pytest.raises(IndexError, match="no complete frame 7"):
        read_frames(path, types=SYMBOLS, index=7)
    with pytest.raises(IndexError):
        read_frames(path, types=SYMBOLS, index=-8)
    with pytest.raises(ValueError, match="start:stop:step"):
        iread(path, types=SYMBOLS, index="1:x")


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress])
def test_compressed_dumps_read_the_same(lammps_run, tmp_path, compress):
    root, _ = lammps_run
    plain = (root / "traj.dump").read_bytes()
    packed = tmp_path / "traj.dump.packed"      # recognised by content, not by name
    packed.write_bytes(compress(plain))
    a_frames, b_frames = read_frames(root / "traj.dump", SYMBOLS), read_frames(packed, SYMBOLS)
    assert count_frames(packed) == len(a_frames) == 7
    for a, b in zip(a_frames, b_frames):
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.arrays["vx"], b.arrays["vx"])


def test_units_and_time_items(lammps_run):
    root, _ = lammps_run
    atoms, = read_frames(root / "units.dump", types=SYMBOLS)
    assert atoms.info["units"] == "metal" and atoms.info["timestep"] == 1234
    assert atoms.info["time"] == pytest.approx(1234 * 0.001)   # metal's default dt, 1 fs


# ---------------------------------------------------------------------------------------------
# truncated and corrupted files


def _frame_starts(text: bytes):
    return [m.start() for m in re.finditer(rb"ITEM: TIMESTEP", text)]


@pytest.mark.parametrize("where", ["mid_row", "row_boundary", "mid_header", "after_timestep_item"])
def test_truncated_last_frame_warns_and_keeps_complete_frames(lammps_run, tmp_path, where):
    root, _ = lammps_run
    text = (root / "traj.dump").read_bytes()
    full = read_frames(root / "traj.dump", types=SYMBOLS)
    last = _frame_starts(text)[-1]
    atoms_item = text.index(b"ITEM: ATOMS", last)
    first_row = text.index(b"\n", atoms_item) + 1
    third_row_end = text.index(b"\n", text.index(b"\n", text.index(b"\n", first_row) + 1) + 1) + 1
    cut = {"mid_row": third_row_end + 5,                 # inside the 4th row, mid token list
           "row_boundary": third_row_end,                # 3 complete rows of many
           "mid_header": text.index(b"ITEM: BOX", last) + 10,
           "after_timestep_item": last + len(b"ITEM: TIMESTEP\n")}[where]
    path = tmp_path / "cut.dump"
    path.write_bytes(text[:cut])
    with pytest.warns(TruncatedDumpWarning, match=r"cut\.dump: the file ends inside frame 6"):
        frames = read_frames(path, types=SYMBOLS)
    assert len(frames) == 6
    for a, b in zip(frames, full):
        np.testing.assert_array_equal(a.positions, b.positions)
    with pytest.warns(TruncatedDumpWarning):
        assert count_frames(path) == 6


def test_cut_at_frame_boundary_is_no_truncation(lammps_run, tmp_path):
    root, _ = lammps_run
    text = (root / "traj.dump").read_bytes()
    path = tmp_path / "five.dump"
    path.write_bytes(text[:_frame_starts(text)[5]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_frames(path, types=SYMBOLS)) == 5 == count_frames(path)


def test_truncated_gzip_keeps_complete_frames(lammps_run, tmp_path):
    root, _ = lammps_run
    text = (root / "traj.dump").read_bytes()
    packed = gzip.compress(text * 20)          # 140 frames, about 1.5 MB of text
    path = tmp_path / "cut.dump.gz"
    path.write_bytes(packed[: len(packed) * 3 // 4])
    with pytest.warns(TruncatedDumpWarning, match="Compressed file ended"):
        frames = read_frames(path, types=SYMBOLS)
    assert 90 <= len(frames) < 140
    full = read_frames(root / "traj.dump", types=SYMBOLS)
    for k, atoms in enumerate(frames):
        np.testing.assert_array_equal(atoms.positions, full[k % 7].positions)


def _corrupt(text: bytes, frame: int, row: int, transform) -> tuple:
    """text with atom row `row` of frame `frame` replaced by b" ".join(transform(words)), words
    the row's tokens; returns the new text and the 1-based line number of that row."""
    start = _frame_starts(text)[frame]
    line_start = text.index(b"\n", text.index(b"ITEM: ATOMS", start)) + 1
    for _ in range(row):
        line_start = text.index(b"\n", line_start) + 1
    line_end = text.index(b"\n", line_start)
    line_number = text[:line_start].count(b"\n") + 1
    words = text[line_start:line_end].split()
    new = text[:line_start] + b" ".join(transform(words)) + text[line_end:]
    return new, line_number


@pytest.mark.parametrize("damage, message", [
    (lambda w: w[:1] + [b"1.2x3"] + w[2:], r"column 'type': '1\.2x3' is not a number"),
    (lambda w: w[:-1], r"expected 9 columns .* found 8"),
    (lambda w: w + [b"0.5"], r"expected 9 columns .* found 10"),
    (lambda w: w[:2] + [b"nan("] + w[3:], r"column 'x': 'nan\(' is not a number"),
    (lambda w: w[:3] + [b"\x00\x00"] + w[4:], r"column 'y'"),
    (lambda w: [], r"expected 9 columns .* found 0"),
])
def test_corruption_mid_file_names_line_and_frame(lammps_run, tmp_path, damage, message):
    root, _ = lammps_run
    text, line = _corrupt((root / "traj.dump").read_bytes(), frame=3, row=17, transform=damage)
    path = tmp_path / "bad.dump"
    path.write_bytes(text)
    frames = iread(path, types=SYMBOLS)
    assert [next(frames).info["timestep"] for _ in range(3)] == TRAJ_TIMESTEPS[:3]
    with pytest.raises(DumpFormatError, match=rf"bad\.dump, line {line} \(frame 3, timestep "
                                              rf"15\): {message}"):
        next(frames)


def test_missing_row_mid_file_is_an_error(lammps_run, tmp_path):
    """A lost row makes the frame swallow the next frame's first line."""
    root, _ = lammps_run
    text, line = _corrupt((root / "traj.dump").read_bytes(), 2, 5, lambda words: [])
    text = text.replace(b"\n\n", b"\n", 1)
    path = tmp_path / "lost.dump"
    path.write_bytes(text)
    with pytest.raises(DumpFormatError, match=r"frame 2, .*expected 9 columns .*'ITEM: TIMESTEP'"):
        read_frames(path, types=SYMBOLS)


def test_bad_header_is_an_error(lammps_run, tmp_path):
    root, _ = lammps_run
    text = (root / "traj.dump").read_bytes()
    start = _frame_starts(text)[4]
    bad = text[:start] + text[start:].replace(b"ITEM: NUMBER OF ATOMS", b"ITEM: NUMBER OF ENTRIES", 1)
    path = tmp_path / "header.dump"
    path.write_bytes(bad)
    line = text[:start].count(b"\n") + 3
    with pytest.raises(DumpFormatError, match=rf"line {line} \(frame 4, timestep 20\): unknown "
                                              rf"item 'ITEM: NUMBER OF ENTRIES'"):
        read_frames(path, types=SYMBOLS)


# ---------------------------------------------------------------------------------------------
# numbers


def _one_column_dump(path, tokens, column="c_junk"):
    rows = [f"{k + 1} 1 0.5 0.5 0.5 {t}" for k, t in enumerate(tokens)]
    path.write_text("ITEM: TIMESTEP\n0\nITEM: NUMBER OF ATOMS\n"
                    f"{len(rows)}\nITEM: BOX BOUNDS pp pp pp\n0 1\n0 1\n0 1\n"
                    f"ITEM: ATOMS id type x y z {column}\n" + "\n".join(rows) + "\n")
    return path


def test_numbers_are_exactly_pythons_floats(tmp_path):
    """Every printf style LAMMPS users pick, plus junk values, read bit for bit as float()."""
    rng = np.random.default_rng(5)
    values = np.concatenate([rng.normal(size=400) * 10.0 ** rng.integers(-14, 14, 400),
                             rng.integers(-10 ** 7, 10 ** 7, 50),
                             [0.0, -0.0, 6.9e-310, 4.9e-324, 1e300, -2.5e-308]])
    tokens = [fmt % v for v in values for fmt in
              ("%g", "%.8g", "%.15g", "%.17g", "%20.15g", "%e", "%.16e", "%E", "%.3f", "%.10f")]
    tokens += ["%d" % v for v in values[400:450]]
    tokens += ["nan", "-nan", "NaN", "inf", "-inf", "Infinity", "+1", "1.", ".5", "-.5e-3",
               "1e5", "1E+05", "007", "0e0", "-0", "5e-324", "1e-400", "1e400"]
    tokens = [t.strip() for t in tokens]
    atoms, = read_frames(_one_column_dump(tmp_path / "numbers.dump", tokens), types=["Cs"])
    expected = np.array([float(t) for t in tokens])
    got = atoms.arrays["c_junk"]
    same_bits = got.view(np.int64) == expected.view(np.int64)
    both_nan = np.isnan(got) & np.isnan(expected)
    assert np.all(same_bits | both_nan), [tokens[k] for k in np.flatnonzero(~(same_bits | both_nan))[:5]]
    theirs = ase_frames(tmp_path / "numbers.dump", ["Cs"])[0]
    np.testing.assert_array_equal(got, theirs.arrays["c_junk"])


@pytest.mark.parametrize("token", ["1.2.3", "abc", "1e", "-", "1e5e5", "1-2", "..", "e5", "0x10",
                                   "1_0", ".", "1e+", "+-1", "1e5.", "--1", "1e-5-", "1,5"])
def test_non_numbers_in_any_column_are_errors(tmp_path, token):
    path = _one_column_dump(tmp_path / "junk.dump", ["1.5", "2.5", token, "3.5"])
    with pytest.raises(DumpFormatError, match=rf"line 12 \(frame 0, timestep 0\): column "
                                              rf"'c_junk': '{re.escape(token)}' is not a number"):
        read_frames(path, types=["Cs"])


def test_non_integer_in_integer_column_is_an_error(tmp_path):
    path = _one_column_dump(tmp_path / "int.dump", ["1", "2", "2.5"], column="ix")
    with pytest.raises(DumpFormatError, match=r"line 12 .*column 'ix' holds 2\.5"):
        read_frames(path, types=["Cs"])


def test_repeated_id_is_an_error(tmp_path):
    path = _one_column_dump(tmp_path / "ids.dump", ["1", "2", "3"])
    path.write_text(path.read_text().replace("\n3 1 ", "\n2 1 "))
    with pytest.raises(DumpFormatError, match=r"line 12 .*atom id 2 appears twice"):
        read_frames(path, types=["Cs"])


# ---------------------------------------------------------------------------------------------
# atom types -> elements


def test_type_maps_of_every_form_agree(lammps_run, tmp_path):
    root, reference = lammps_run
    path = root / "triclinic_x.dump"
    expected = [SYMBOLS[t - 1] for t in reference["triclinic"]["types"]]
    script = tmp_path / "in.lammps"
    script.write_text("units metal\nread_data system.data\npair_style mlff\n"
                      "pair_coeff * * potential.pt Cs Pb Br  # the model's elements\n")
    masses = tmp_path / "in.masses"
    masses.write_text("mass 1 132.905\nmass 2 207.2 # Pb\nmass 3 79.904\n")
    labels = tmp_path / "in.labels"
    labels.write_text("labelmap atom 3 Br 1 Cs 2 Pb\n")
    commented = tmp_path / "commented.data"
    commented.write_text("title\n\n3 atom types\n\nMasses\n\n1 1.0 # Cs\n2 2.0 # Pb\n"
                         "3 3.0 # Br\n\nAtoms # atomic\n\n")
    via_read_data = tmp_path / "in.read_data"
    (tmp_path / "system.data").write_bytes((root / "system.data").read_bytes())
    via_read_data.write_text("read_data system.data\n")
    for types in (SYMBOLS, {1: "Cs", 2: "Pb", 3: "Br"}, "Cs,Pb,Br", root / "system.data",
                  str(script), masses, labels, commented, via_read_data):
        atoms, = read_frames(path, types=types)
        assert atoms.get_chemical_symbols() == expected, types
    assert read_type_map(root / "system.data") == {1: "Cs", 2: "Pb", 3: "Br"}


def test_lammps_data_file_masses_without_labels(lammps_run, tmp_path):
    """write_data without labels: elements matched by mass."""
    root, _ = lammps_run
    text = (root / "system.data").read_text()
    no_labels = re.sub(r"Atom Type Labels\n\n(\d+ \w+\n)+", "", text)
    assert "Atom Type Labels" not in no_labels and "Masses" in no_labels
    path = tmp_path / "masses.data"
    path.write_text(no_labels)
    assert read_type_map(path) == {1: "Cs", 2: "Pb", 3: "Br"}


def test_ambiguous_mass_is_an_error(tmp_path):
    path = tmp_path / "in.lammps"
    path.write_text("mass 1 40.0\n")        # Ar 39.95 and Ca 40.08 both within 0.1 u
    with pytest.raises(ValueError, match=r"in\.lammps, line 1: mass 40\.0 u matches 2 elements"):
        read_type_map(path)


def test_element_and_typelabel_columns_need_no_map(lammps_run):
    root, reference = lammps_run
    expected = [SYMBOLS[t - 1] for t in reference["triclinic"]["types"]]
    assert read_frames(root / "element.dump")[0].get_chemical_symbols() == expected
    atoms, = read_frames(root / "typelabel.dump")
    assert atoms.get_chemical_symbols() == expected
    assert list(atoms.arrays["typelabel"]) == expected


def test_element_column_contradicting_map_is_an_error(lammps_run):
    root, _ = lammps_run
    with pytest.raises(DumpFormatError, match=r"element (Cs|Pb) of type [12] contradicts the type map"):
        read_frames(root / "element.dump", types=["Pb", "Cs", "Br"])


def test_unknown_type_names_type_line_and_frame(lammps_run):
    root, reference = lammps_run
    path = root / "triclinic_x.dump"
    lines = path.read_text().splitlines()
    first = next(k for k, line in enumerate(lines[9:]) if line.split()[1] == "3")
    with pytest.raises(DumpFormatError, match=rf"line {first + 10} \(frame 0, timestep 1234\): "
                                              rf"atom type 3 is not in the type map"):
        read_frames(path, types=["Cs", "Pb"])


def test_no_map_says_how_to_give_one(lammps_run):
    root, _ = lammps_run
    with pytest.raises(ValueError, match=r"--types Cs,Pb,Br"):
        read_frames(root / "triclinic_x.dump")


def test_bad_types_argument(lammps_run):
    root, _ = lammps_run
    with pytest.raises(ValueError, match="neither an existing file nor a comma-separated list"):
        iread(root / "triclinic_x.dump", types="no_such_file.data")
    with pytest.raises(ValueError, match="'Xx' is not a chemical element symbol"):
        iread(root / "triclinic_x.dump", types=["Cs", "Xx"])


# ---------------------------------------------------------------------------------------------
# the plain-decimal fast path, id order and the read buffer


def _plain_decimal_tokens(rng):
    """[sign]digits[.digits] with 1..18 digits and the point at every place (and none): the
    tokens pyexport.lammps.dump converts eight bytes at a time, and the lengths on either side of its
    16-byte limit and of the 2**53 mantissa limit."""
    tokens = []
    for n_digits in range(1, 19):
        for _ in range(3):
            digits = "".join(rng.choice(list("0123456789"), n_digits))
            for point in range(n_digits + 1):
                sign = rng.choice(["", "-", "+"])
                tokens.append(sign + digits[:point] + "." + digits[point:])
            tokens.append(rng.choice(["", "-"]) + digits)
    tokens += ["0", "-0", "+0", "0.", "-0.", ".0", "-.0", "00000000", "99999999", "9999999.9",
               "9007199254740993", "9007199254740992", "900719925474099.3", "1234567.12345678"]
    return tokens


def test_plain_decimals_are_exactly_pythons_floats(tmp_path):
    tokens = _plain_decimal_tokens(np.random.default_rng(11))
    atoms, = read_frames(_one_column_dump(tmp_path / "plain.dump", tokens), types=["Cs"])
    expected = np.array([float(t) for t in tokens])
    got = atoms.arrays["c_junk"]
    wrong = np.flatnonzero(got.view(np.int64) != expected.view(np.int64))
    assert len(wrong) == 0, [(tokens[k], got[k], expected[k]) for k in wrong[:5]]


@pytest.mark.parametrize("token", ["1..", "1.2.", "-", "+", "-.", "1.-2", "12345678.9.1",
                                   "123456789-1", "12-3.5"])
def test_plain_looking_non_numbers_are_errors(tmp_path, token):
    """Tokens made only of digits, signs and points that are still not numbers, among enough
    good ones that every conversion path runs."""
    good = [f"{v:.6g}" for v in np.random.default_rng(3).normal(size=300)]
    path = _one_column_dump(tmp_path / "junk.dump", good[:150] + [token] + good[150:])
    with pytest.raises(DumpFormatError, match=rf"line 160 \(frame 0, timestep 0\): column "
                                              rf"'c_junk': '{re.escape(token)}' is not a number"):
        read_frames(path, types=["Cs"])


def _shuffled_dump(path, ids, types, rng):
    """One frame, rows in the order given, positions and a velocity column tied to the id."""
    rows = [f"{i} {t} {0.01 * i:.6g} {0.5:g} {-0.02 * i:.6g} {rng.normal():.8g}"
            for i, t in zip(ids, types)]
    path.write_text("ITEM: TIMESTEP\n7\nITEM: NUMBER OF ATOMS\n"
                    f"{len(rows)}\nITEM: BOX BOUNDS pp pp pp\n0 50\n0 50\n0 50\n"
                    "ITEM: ATOMS id type x y z vx\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("spacing", [1, 3, 1000])    # dense ids, gaps, ids far apart
def test_rows_sorted_by_id_carry_their_columns(tmp_path, spacing):
    rng = np.random.default_rng(spacing)
    ids = (np.arange(1, 501) * spacing)[rng.permutation(500)]
    types = rng.integers(1, 3, 500)
    path = _shuffled_dump(tmp_path / "shuffled.dump", ids, types, rng)
    atoms, = read_frames(path, types=["Cs", "Pb"])
    order = np.argsort(ids)
    np.testing.assert_array_equal(atoms.arrays["id"], ids[order])
    np.testing.assert_array_equal(atoms.numbers, np.where(types[order] == 1, 55, 82))
    np.testing.assert_array_equal(atoms.positions[:, 0], [float(f"{0.01 * i:.6g}") for i in ids[order]])
    file_vx = [float(line.split()[5]) for line in path.read_text().splitlines()[9:]]
    np.testing.assert_array_equal(atoms.arrays["vx"], np.array(file_vx)[order])


def test_errors_in_a_shuffled_frame_name_the_file_line(tmp_path):
    """Rows are sorted by id after reading: the line named is still the line in the file."""
    rng = np.random.default_rng(4)
    ids = rng.permutation(200) + 1
    types = np.ones(200, int)
    types[37] = 3
    path = _shuffled_dump(tmp_path / "shuffled.dump", ids, types, rng)
    with pytest.raises(DumpFormatError, match=r"line 47 \(frame 0, timestep 7\): atom type 3 "
                                              r"is not in the type map"):
        read_frames(path, types=["Cs", "Pb"])
    repeated = ids.copy()
    repeated[120] = repeated[30]
    path = _shuffled_dump(tmp_path / "repeated.dump", repeated, np.ones(200, int), rng)
    with pytest.raises(DumpFormatError, match=rf"line 130 .*atom id {repeated[30]} appears twice"):
        read_frames(path, types=["Cs", "Pb"])


def test_frames_larger_than_the_read_block(tmp_path):
    """A 5 MB frame (more than the 4 MiB read block) between small ones: the buffer grows and
    every frame reads as ASE reads it."""
    rng = np.random.default_rng(8)
    path = tmp_path / "big.dump"
    with open(path, "w") as out:
        for step, n in enumerate((10, 120_000, 10)):
            out.write(f"ITEM: TIMESTEP\n{step}\nITEM: NUMBER OF ATOMS\n{n}\nITEM: BOX BOUNDS pp pp pp\n"
                      "0 100\n0 100\n0 100\nITEM: ATOMS id type x y z\n")
            xyz = rng.random((n, 3)) * 100
            out.write("".join(f"{k + 1} 1 {x:.10g} {y:.10g} {z:.10g}\n"
                              for k, (x, y, z) in enumerate(xyz)))
    assert path.stat().st_size > 5e6
    ours = read_frames(path, types=["Cs"])
    theirs = ase_frames(path, ["Cs"])
    assert [len(a) for a in ours] == [10, 120_000, 10]
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a.positions, b.positions)


# ---------------------------------------------------------------------------------------------
# cut compressed streams and corrupt coordinates / boxes in real dumps

REAL_DUMP = DATA / "dpdata" / "traj.dump"          # 2 frames (timesteps 0, 10), 17 atoms, Fe Ni


@pytest.mark.parametrize("compress, kind", [(gzip.compress, "gzip"), (lzma.compress, "xz")])
@pytest.mark.parametrize("cut", [1, 8])                # inside the trailer: every frame decodes
def test_cut_compressed_trailer_warns_and_keeps_frames(tmp_path, compress, kind, cut):
    """A stream cut after the last frame's text (only the CRC/size trailer lost) still holds
    every frame, but the file is damaged and frames after the cut may be missing: say so."""
    packed = compress(REAL_DUMP.read_bytes())
    path = tmp_path / f"cut.dump.{kind}"
    path.write_bytes(packed[:-cut])
    with pytest.warns(TruncatedDumpWarning, match=rf"cut\.dump\.{kind}: the file ends after frame 1 "
                                                   rf".*truncated {kind} stream.*kept the 2 complete"):
        frames = read_frames(path, types=["Fe", "Ni"])
    full = read_frames(REAL_DUMP, types=["Fe", "Ni"])
    assert len(frames) == 2
    for a, b in zip(frames, full):
        np.testing.assert_array_equal(a.positions, b.positions)


def test_cut_gzip_member_inside_a_frame_keeps_complete_frames(tmp_path):
    """Multi-member gzip (one member per frame, as `cat a.gz b.gz` makes), the last one cut."""
    text = REAL_DUMP.read_bytes()
    second = _frame_starts(text)[1]
    packed = gzip.compress(text[:second]) + gzip.compress(text[second:])
    path = tmp_path / "members.dump.gz"
    path.write_bytes(packed[:-40])
    with pytest.warns(TruncatedDumpWarning, match=r"members\.dump\.gz: the file ends inside frame 1 "
                                                   r"\(timestep 10\).*truncated gzip stream.*kept the 1"):
        frames = read_frames(path, types=["Fe", "Ni"])
    assert len(frames) == 1


def test_cut_bzip2_of_real_dump(tmp_path):
    """wat.lammpstrj.bz2 (one bzip2 block): cut in its trailer all 3 frames decode and the cut is
    reported; cut mid-block nothing decodes and the error gives the reason, not "no frames"."""
    packed = (DATA / "mdanalysis" / "wat.lammpstrj.bz2").read_bytes()
    path = tmp_path / "wat.lammpstrj.bz2"
    path.write_bytes(packed[:-1])
    with pytest.warns(TruncatedDumpWarning, match=r"truncated bzip2 stream.*kept the 3 complete"):
        assert len(read_frames(path, types=["H", "O"])) == 3
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(TruncatedDumpError, match=r"wat\.lammpstrj\.bz2: the file ends before its first "
                                                 r"frame \(truncated bzip2 stream: .*\); it holds no "
                                                 r"complete frame"):
        read_frames(path, types=["H", "O"])
    with pytest.raises(TruncatedDumpError):
        count_frames(path)


def test_plain_file_cut_inside_its_first_frame_is_an_error(tmp_path):
    text = REAL_DUMP.read_bytes()
    path = tmp_path / "first.dump"
    path.write_bytes(text[: text.index(b"ITEM: ATOMS") + 200])
    with pytest.raises(TruncatedDumpError, match=r"first\.dump: the file ends inside frame 0 "
                                                 r"\(timestep 0\) after line \d+; it holds no complete"):
        read_frames(path, types=["Fe", "Ni"])


def _with_row_value(text: bytes, frame: int, row: int, column: int, value: bytes) -> bytes:
    new, _ = _corrupt(text, frame, row, lambda w: w[:column] + [value] + w[column + 1:])
    return new


@pytest.mark.parametrize("value", [b"nan", b"inf", b"-inf", b"1e300", b"-6000"])
def test_non_finite_or_absurd_coordinate_is_an_error(tmp_path, value):
    """A coordinate that is not finite or lies more than 1000 box lengths (5.7 Å each) away
    from the box: an error naming file, line, frame and timestep, not an MSD of 1e26 Å²."""
    path = tmp_path / "bad.dump"
    new = _with_row_value(REAL_DUMP.read_bytes(), 1, 4, 3, value)       # frame 1, 5th row, y
    path.write_bytes(new)
    line = new[: new.index(b" " + value + b" ")].count(b"\n") + 1
    with pytest.raises(DumpFormatError, match=rf"bad\.dump, line {line} \(frame 1, timestep 10\): "
                                              r"coordinate .*(not finite|more than 1000 box lengths)"):
        read_frames(path, types=["Fe", "Ni"])
    with pytest.raises(DumpFormatError):
        read_frames(path, types=["Fe", "Ni"], index="1")


def test_unwrapped_coordinates_a_few_boxes_away_are_kept(tmp_path):
    path = tmp_path / "far.dump"
    path.write_bytes(_with_row_value(REAL_DUMP.read_bytes(), 1, 4, 3, b"-570.0"))   # 100 boxes
    assert read_frames(path, types=["Fe", "Ni"])[1].positions[4, 1] == -570.0


@pytest.mark.parametrize("bounds", [b"5.7 -0.04", b"nan 5.7", b"0 inf", b"0 10 0.5"])
def test_inverted_or_non_finite_box_is_an_error(tmp_path, bounds):
    """Box bounds with xlo > xhi (or not numbers a box can have, or a tilt on one line of an
    orthogonal box), in the second frame."""
    text = (DATA / "mdanalysis" / "image_vf.lammpstrj").read_bytes()
    start = _frame_starts(text)[1]
    box = text.index(b"ITEM: BOX BOUNDS", start)
    first = text.index(b"\n", box) + 1
    end = text.index(b"\n", first)
    new = text[:first] + bounds + text[end:]
    path = tmp_path / "box.lammpstrj"
    path.write_bytes(new)
    line = new[:first].count(b"\n") + 3
    timestep = int(text[start:].split(b"\n")[1])
    with pytest.raises(DumpFormatError, match=rf"box\.lammpstrj, line {line} \(frame 1, timestep "
                                              rf"{timestep}\): (inverted or empty box: xlo .* >= xhi|"
                                              r"box bounds must be finite|"
                                              r"orthogonal box needs 2 numbers per line)"):
        read_frames(path, types=["H", "O"])
