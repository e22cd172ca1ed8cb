"""pyexport.data readers against the real VASP / ML_AB fixtures in tests/data.

Reference numbers come from three places only: VASP's own printed output,
extracted here by a deliberately plain scan of the files (``_printed_*``),
ASE's readers where ASE can read the file, and the matching vasprun.xml /
OUTCAR of the same run. Tolerances follow the number of decimals VASP prints.
"""

import gzip
import shutil
import warnings
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.neighborlist import neighbor_list

from pyexport.data import (
    FORMATS,
    IncompleteDataWarning,
    ParseError,
    read,
    read_mlab_with_header,
    sniff_format,
)
from pyexport.data.dataset import EV_PER_A3_PER_KBAR

DATA = Path(__file__).parent / "data"
H2O_OUTCAR = DATA / "dpdata" / "OUTCAR.h2o.md.10"
H2O_VASPRUN = DATA / "dpdata" / "vasprun.h2o.md.10.xml"
TRIBOX_VASPRUN = DATA / "dpdata" / "vasprun.h2o.md.tribox.xml"
TI_OUTCAR = DATA / "dpdata" / "Ti-aimd-nwrite0" / "OUTCAR"
TI_VASPRUN = DATA / "dpdata" / "Ti-aimd-nwrite0" / "vasprun.xml"
CH4_ML_OUTCAR = DATA / "dpdata" / "OUTCAR.ch4.ml"
ALPO_OUTCAR = DATA / "pymatgen" / "OUTCAR"
COSE_OUTCAR = DATA / "jarvis-tools" / "OUTCAR.EFG-JVASP-12148"
ML_AB_GZ = DATA / "mlab2ase" / "ML_AB.gz"

# OUTCAR prints forces with 6 decimals (rounding <= 5e-7 eV/Å; exact ties
# occur, so the test allows one printed digit) and positions with 5 decimals
# (<= 5e-6 Å, plus 1e-7 Å from vasprun's 8-decimal fractions of a 10 Å cell).
FORCE_PRINT = 1e-6           # eV/Å
POSITION_PRINT = 6e-6        # Å
# vasprun.xml's 3x3 stress is itself asymmetric by up to ~1e-5 kB and OUTCAR's
# 'in kB' line matches neither triangle better than that (largest seen: 1.3e-5 kB).
STRESS_XML_VS_OUTCAR = 2e-5 * EV_PER_A3_PER_KBAR


# -- VASP's printed numbers, by a plain scan independent of the readers ------

def _printed_totens(path):
    """Every final 'free  energy   TOTEN' value (VASP's exact spelling), in order."""
    return [float(line.split()[-2]) for line in path.read_text().splitlines()
            if line.strip().startswith("free  energy   TOTEN")]


def _printed_force_tables(path, machine_learned=False):
    """(positions, forces) of every POSITION/TOTAL-FORCE table, ab-initio ones
    (or the '(ML)' ones), as printed."""
    lines = path.read_text().splitlines()
    tables = []
    for i, line in enumerate(lines):
        if line.strip().startswith("POSITION") and "TOTAL-FORCE" in line \
                and ("(ML)" in line) == machine_learned:
            rows = []
            for row in lines[i + 2:]:
                if row.strip().startswith("---"):
                    break
                rows.append([float(x) for x in row.split()])
            rows = np.array(rows)
            tables.append((rows[:, :3], rows[:, 3:]))
    return tables


def _printed_kb_stresses(path):
    """Every ab-initio 'in kB' line (XX YY ZZ XY YZ ZX), as printed."""
    out, machine_learned = [], False
    for line in path.read_text().splitlines():
        if "FORCE on cell =-STRESS" in line:
            machine_learned = line.strip().startswith("ML")
        elif line.strip().startswith("in kB") and not machine_learned:
            out.append([float(x) for x in line.split()[2:]])
    return np.array(out)


def _kb_to_ase(kb):
    xx, yy, zz, xy, yz, zx = kb
    return -EV_PER_A3_PER_KBAR * np.array([xx, yy, zz, yz, zx, xy])


def _read_quiet(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IncompleteDataWarning)
        return read(path, **kw)


def _minimum_image_distance(a, b, cell):
    frac = np.linalg.solve(cell.T, (a - b).T).T
    frac -= np.round(frac)
    return np.abs(frac @ cell).max()


# -- OUTCAR against VASP's printed numbers ----------------------------------

@pytest.mark.parametrize("path", [H2O_OUTCAR, CH4_ML_OUTCAR, ALPO_OUTCAR, COSE_OUTCAR],
                         ids=lambda p: p.name)
def test_outcar_reproduces_printed_energies_forces_stress(path):
    frames = read(path)
    tables = _printed_force_tables(path)
    totens = _printed_totens(path)
    stresses = _printed_kb_stresses(path)
    assert len(frames) == len(tables) == len(totens) == len(stresses)
    for atoms, (positions, forces), toten, kb in zip(frames, tables, totens, stresses):
        assert atoms.get_potential_energy() == pytest.approx(toten, abs=1e-6)
        np.testing.assert_allclose(atoms.get_forces(), forces, rtol=0, atol=1e-6)
        np.testing.assert_allclose(atoms.positions, positions, rtol=0, atol=1e-6)
        np.testing.assert_allclose(atoms.get_stress(), _kb_to_ase(kb), rtol=0, atol=1e-12)


def test_mlff_outcar_keeps_only_the_ab_initio_steps():
    frames = read(CH4_ML_OUTCAR)
    ml_tables = _printed_force_tables(CH4_ML_OUTCAR, machine_learned=True)
    # 14 force tables in the file: 4 ab-initio, 10 machine-learned.
    assert len(ml_tables) == 10 and len(frames) == 4
    # VASP's ionic step numbers ('Iteration N(') of the ab-initio steps.
    assert [a.info["source"]["step"] for a in frames] == [1, 2, 3, 6]
    assert all(a.get_chemical_symbols() == ["H"] * 4 + ["C"] for a in frames)
    # The ML prediction for step 3 (ML TOTEN -24.12738815) is not what we keep.
    assert frames[2].get_potential_energy() == pytest.approx(-24.12737148, abs=1e-8)
    for atoms in frames:
        for _, ml_forces in ml_tables:
            assert np.abs(atoms.get_forces() - ml_forces).max() > 1e-3


def test_outcar_cell_with_fused_fixed_width_fields():
    # pymatgen/OUTCAR prints '-0.176296253  0.000000000-19.396266833'.
    atoms = read(ALPO_OUTCAR)[0]
    np.testing.assert_array_equal(atoms.cell[2], [-0.176296253, 0.0, -19.396266833])
    assert atoms.get_volume() == pytest.approx(443.45, abs=0.005)  # 'volume of cell : 443.45'
    # POTCARs Ca_pv Al Si H O, 'ions per type = 2 8 4 4 24'
    assert atoms.get_chemical_symbols() == (["Ca"] * 2 + ["Al"] * 8 + ["Si"] * 4
                                            + ["H"] * 4 + ["O"] * 24)


# -- agreement with ASE where ASE reads the file ------------------------------

@pytest.mark.parametrize("path, ase_format", [
    (H2O_OUTCAR, "vasp-out"), (ALPO_OUTCAR, "vasp-out"), (COSE_OUTCAR, "vasp-out"),
    (H2O_VASPRUN, "vasp-xml"), (TRIBOX_VASPRUN, "vasp-xml"), (TI_VASPRUN, "vasp-xml"),
], ids=lambda p: getattr(p, "name", p))
def test_agrees_with_ase(path, ase_format):
    ours = read(path)
    theirs = assert_agrees_with_ase(ours, path, ase_format)
    for a, b in zip(ours, theirs):
        # ASE's energy is energy(sigma->0), its free_energy the force-consistent one.
        assert a.info["energy_sigma0"] == pytest.approx(b.get_potential_energy(), abs=1e-9)


def assert_agrees_with_ase(ours, path, ase_format="vasp-out"):
    """Our frames of ``path`` against ASE's reading of it (``ase_format``): symbols, cells,
    positions, forces, stresses to 1e-12 and the force-consistent energy to 1e-9 eV. Returns
    ASE's frames."""
    theirs = ase.io.read(path, index=":", format=ase_format)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.get_chemical_symbols() == b.get_chemical_symbols()
        np.testing.assert_allclose(a.cell[:], b.cell[:], rtol=0, atol=1e-12)
        np.testing.assert_allclose(a.positions, b.positions, rtol=0, atol=1e-12)
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(a.get_stress(), b.get_stress(), rtol=0, atol=1e-12)
        assert a.get_potential_energy() == pytest.approx(
            b.get_potential_energy(force_consistent=True), abs=1e-9)
    return theirs


def test_smeared_metal_keeps_free_energy_and_sigma0_apart():
    # Ti (smeared metal): the two energies differ by ~0.02 eV in every step.
    frames = read(TI_VASPRUN)
    gaps = [a.get_potential_energy() - a.info["energy_sigma0"] for a in frames]
    assert min(abs(g) for g in gaps) > 1e-3


# -- vasprun.xml against the OUTCAR of the same run ---------------------------

def test_vasprun_reproduces_every_printed_totens_and_stress():
    # NWRITE=0 OUTCAR still prints TOTEN and 'in kB' for all 10 steps.
    frames = read(TI_VASPRUN)
    assert [a.info["source"]["step"] for a in frames] == list(range(1, 11))
    np.testing.assert_allclose([a.get_potential_energy() for a in frames],
                               _printed_totens(TI_OUTCAR), rtol=0, atol=1e-6)
    np.testing.assert_allclose([a.get_stress() for a in frames],
                               [_kb_to_ase(kb) for kb in _printed_kb_stresses(TI_OUTCAR)],
                               rtol=0, atol=STRESS_XML_VS_OUTCAR)


@pytest.mark.parametrize("outcar, vasprun", [(H2O_OUTCAR, H2O_VASPRUN),
                                             (TI_OUTCAR, TI_VASPRUN)],
                         ids=["h2o", "ti-nwrite0"])
def test_outcar_steps_equal_the_vasprun_steps(outcar, vasprun):
    by_step = {a.info["source"]["step"]: a for a in read(vasprun)}
    from_outcar = _read_quiet(outcar, incomplete="warn")
    assert from_outcar
    for a in from_outcar:
        b = by_step[a.info["source"]["step"]]
        assert a.get_chemical_symbols() == b.get_chemical_symbols()
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-6)
        assert a.info["energy_sigma0"] == pytest.approx(b.info["energy_sigma0"], abs=1e-6)
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), rtol=0, atol=FORCE_PRINT)
        np.testing.assert_allclose(a.get_stress(), b.get_stress(), rtol=0,
                                   atol=STRESS_XML_VS_OUTCAR)
        np.testing.assert_allclose(a.cell[:], b.cell[:], rtol=0, atol=1e-8)
        assert _minimum_image_distance(a.positions, b.positions, b.cell[:]) <= POSITION_PRINT


# -- NWRITE=0: energy-only steps are never dropped silently -------------------

def test_nwrite0_outcar_refuses_energy_only_steps_by_default():
    with pytest.raises(ParseError) as err:
        read(TI_OUTCAR)
    # Step 2's TOTEN line, the first step printed without forces.
    assert err.value.line == 2122
    assert str(TI_OUTCAR) in str(err.value) and ":2122:" in str(err.value)
    assert "2-9" in str(err.value) and "NWRITE = 0" in str(err.value)


def test_nwrite0_outcar_warn_returns_the_complete_steps():
    with pytest.warns(IncompleteDataWarning, match="2-9"):
        frames = read(TI_OUTCAR, incomplete="warn")
    assert [a.info["source"]["step"] for a in frames] == [1, 10]
    tables = _printed_force_tables(TI_OUTCAR)
    assert len(tables) == 2
    for atoms, (_, forces) in zip(frames, tables):
        np.testing.assert_allclose(atoms.get_forces(), forces, rtol=0, atol=1e-6)


# -- ML_AB ------------------------------------------------------------------

@pytest.fixture(scope="module")
def mlab():
    return read_mlab_with_header(ML_AB_GZ)


def test_mlab_every_configuration_matches_the_header(mlab):
    header, frames = mlab
    assert header.n_configurations == len(frames) == 82
    assert header.atom_types == ("H", "O")
    assert [a.info["source"]["step"] for a in frames] == list(range(1, 83))
    assert max(len(a) for a in frames) == header.max_atoms_per_system == 375
    per_type = [max(a.get_chemical_symbols().count(s) for s in header.atom_types)
                for a in frames]
    assert max(per_type) == header.max_atoms_per_type == 250
    assert all(a.get_chemical_formula() == "H250O125" for a in frames)
    assert all(a.get_stress().shape == (6,) for a in frames)


def test_mlab_first_configuration_as_printed(mlab):
    atoms = mlab[1][0]
    # ML_AB.gz lines 1950, 1954, 2334 and 2338 (configuration 1).
    assert atoms.get_potential_energy() == -1880.84303649208
    np.testing.assert_array_equal(atoms.get_forces()[0],
                                  [-6.108266209574512e-02, 0.174753525252893, -0.167981675760288])
    np.testing.assert_allclose(atoms.get_stress(), -EV_PER_A3_PER_KBAR * np.array(
        [-7.27237870278518, -7.37579876397852, -8.71589713035773,
         1.15647418839803, -0.426966889611495, -0.698538831211937]), rtol=1e-15)
    np.testing.assert_array_equal(atoms.cell[:], np.eye(3) * 15.5)
    assert atoms.info["system_name"] == "Water molecule in a cubic box"


def test_mlab_configurations_are_physical_water(mlab):
    for atoms in mlab[1]:
        frac = atoms.get_scaled_positions(wrap=False)
        assert frac.min() >= 0 and frac.max() < 1     # VASP stores wrapped positions
        # every O has exactly two H within 1.2 Å: species, positions and cell agree
        i, j = neighbor_list("ij", atoms, 1.2)
        symbols = np.array(atoms.get_chemical_symbols())
        oh = (symbols[i] == "O") & (symbols[j] == "H")
        assert np.array_equal(np.bincount(i[oh], minlength=len(atoms))[symbols == "O"],
                              np.full(125, 2))
        # DFT forces sum to the small drift, far below a random sum of 375 forces
        forces = atoms.get_forces()
        assert np.abs(forces.sum(axis=0)).max() < 0.01 * np.sqrt(len(atoms)) * forces.std()


def test_mlab_plain_and_gzip_read_the_same(tmp_path, mlab):
    plain = tmp_path / "ML_AB"
    plain.write_bytes(gzip.decompress(ML_AB_GZ.read_bytes()))
    frames = read(plain)
    assert len(frames) == len(mlab[1])
    for a, b in zip(frames, mlab[1]):
        assert a.get_potential_energy() == b.get_potential_energy()
        np.testing.assert_array_equal(a.get_forces(), b.get_forces())
        np.testing.assert_array_equal(a.positions, b.positions)


# -- extxyz -------------------------------------------------------------------

def test_extxyz_round_trip_keeps_results_and_provenance(tmp_path):
    frames = read(TRIBOX_VASPRUN)
    path = tmp_path / "h2o.extxyz"
    ase.io.write(path, frames, format="extxyz")
    back = read(path)
    assert len(back) == len(frames)
    for number, (a, b) in enumerate(zip(back, frames), 1):
        assert a.get_potential_energy() == b.get_potential_energy()
        assert a.info["energy_sigma0"] == b.info["energy_sigma0"]
        np.testing.assert_array_equal(a.get_forces(), b.get_forces())
        np.testing.assert_allclose(a.get_stress(), b.get_stress(), rtol=1e-15, atol=0)
        assert a.info["source"]["step"] == number
        assert a.info["source"]["origin"] == b.info["source"]


def test_extxyz_efg_column_becomes_tensors(tmp_path):
    atoms = read(H2O_VASPRUN)[0]
    efg = np.arange(len(atoms) * 9, dtype=float).reshape(len(atoms), 9)
    atoms.arrays["efg"] = efg
    path = tmp_path / "efg.xyz"
    ase.io.write(path, atoms, format="extxyz")
    back = read(path)[0]
    np.testing.assert_array_equal(back.arrays["efg"], efg.reshape(-1, 3, 3))


def test_extxyz_without_forces_is_an_error(tmp_path):
    atoms = read(H2O_VASPRUN)[0]
    bare = atoms.copy()  # no calculator: no energy, no forces
    path = tmp_path / "bare.extxyz"
    ase.io.write(path, [atoms, bare], format="extxyz")
    with pytest.raises(ParseError, match="frame 2 has no energy") as err:
        read(path)
    assert err.value.line == len(atoms) + 3   # the second frame's atom-count line


# -- malformed and truncated files -------------------------------------------

def _truncated(src, tmp_path, n_lines, name=None):
    text = src.read_bytes()
    if text[:2] == b"\x1f\x8b":
        text = gzip.decompress(text)
    lines = text.decode("latin-1").splitlines(keepends=True)
    dest = tmp_path / (name or src.name)
    dest.write_text("".join(lines[:n_lines]), encoding="latin-1")
    return dest


def test_truncated_vasprun_names_file_and_line(tmp_path):
    path = _truncated(H2O_VASPRUN, tmp_path, 1000)
    with pytest.raises(ParseError) as err:
        read(path)
    assert str(path) in str(err.value) and err.value.line == 1001
    assert "ionic step 3" in str(err.value)
    with pytest.warns(IncompleteDataWarning, match="ionic step 3"):
        frames = read(path, incomplete="warn")
    assert [a.info["source"]["step"] for a in frames] == [1, 2]


def test_malformed_vasprun_xml_is_an_error_even_when_warned(tmp_path):
    text = H2O_VASPRUN.read_text(encoding="latin-1").splitlines(keepends=True)
    text[999] = "<broken\n"
    path = tmp_path / "vasprun.xml"
    path.write_text("".join(text), encoding="latin-1")
    with pytest.raises(ParseError, match="malformed XML") as err:
        read(path, incomplete="warn")
    assert err.value.line == 1001


def test_vasprun_overflowed_forces_name_the_step(tmp_path):
    text = H2O_VASPRUN.read_text(encoding="latin-1")
    first = text.index('<varray name="forces" >')
    row = text.index("<v>", first)
    text = text[:row] + "<v> ************ 0.1 0.2 </v>" + text[text.index("</v>", row) + 4:]
    path = tmp_path / "vasprun.xml"
    path.write_text(text, encoding="latin-1")
    with pytest.raises(ParseError, match="ionic step 1: non-numeric forces") as err:
        read(path)
    assert err.value.line == 442   # '<calculation>' of step 1


def test_truncated_outcar_names_file_and_line(tmp_path):
    # cut during the electronic iterations of ionic step 2 (begun at line 1647)
    path = _truncated(H2O_OUTCAR, tmp_path, 2000)
    with pytest.raises(ParseError) as err:
        read(path)
    assert str(path) in str(err.value) and err.value.line == 1647
    with pytest.warns(IncompleteDataWarning):
        assert len(read(path, incomplete="warn")) == 1
    # cut inside the POSITION/TOTAL-FORCE table of step 1
    path = _truncated(H2O_OUTCAR, tmp_path, 1596, name="OUTCAR.cut")
    with pytest.raises(ParseError, match="table at line 1596") as err:
        read(path)
    assert err.value.line == 1596


def test_garbled_outcar_force_row_is_an_error(tmp_path):
    lines = H2O_OUTCAR.read_text().splitlines(keepends=True)
    lines[1594] = lines[1594].replace("2.30878", "2.3O878")   # letter O, line 1595
    path = tmp_path / "OUTCAR"
    path.write_text("".join(lines))
    with pytest.raises(ParseError, match="ion 2") as err:
        read(path)
    assert err.value.line == 1595


def test_outcar_force_table_shorter_than_nions_is_an_error(tmp_path):
    lines = H2O_OUTCAR.read_text().splitlines(keepends=True)
    del lines[1598]   # 5 of the 6 ions of step 1
    path = tmp_path / "OUTCAR"
    path.write_text("".join(lines))
    with pytest.raises(ParseError, match="ion 6") as err:
        read(path)
    assert err.value.line == 1599


def test_truncated_mlab_names_file_and_line(tmp_path):
    path = _truncated(ML_AB_GZ, tmp_path, 2000, name="ML_AB")
    with pytest.raises(ParseError, match="Forces") as err:
        read(path)
    assert str(path) in str(err.value) and err.value.line == 1952


def test_mlab_with_fewer_configurations_than_announced(tmp_path):
    # keep configurations 1 and 2: configuration 3 starts at line 3138
    path = _truncated(ML_AB_GZ, tmp_path, 3137, name="ML_AB")
    with pytest.raises(ParseError, match="announces 82 configurations, the file holds 2"):
        read(path)


def test_truncated_extxyz_names_file_and_line(tmp_path):
    full = tmp_path / "full.extxyz"
    ase.io.write(full, read(TRIBOX_VASPRUN), format="extxyz")
    path = _truncated(full, tmp_path, 2 * 8 + 5, name="cut.extxyz")
    with pytest.raises(ParseError, match="frame 3 declares 6 atoms") as err:
        read(path)
    assert err.value.line == 17


# -- format recognition ---------------------------------------------------------

def test_format_from_name_and_content(tmp_path):
    assert sniff_format(H2O_VASPRUN) == "vasprun"
    assert sniff_format(TI_OUTCAR) == "outcar"
    assert sniff_format(ML_AB_GZ) == "mlab"
    renamed = tmp_path / "run1.log"
    shutil.copy(H2O_OUTCAR, renamed)
    assert sniff_format(renamed) == "outcar"
    renamed = tmp_path / "data.out"
    shutil.copy(H2O_VASPRUN, renamed)
    assert sniff_format(renamed) == "vasprun"
    gz = tmp_path / "training_set.gz"
    shutil.copy(ML_AB_GZ, gz)
    assert sniff_format(gz) == "mlab"
    assert len(read(renamed)) == 10
    assert len(read(H2O_VASPRUN, format="vasp-xml")) == 10


def test_unknown_format_lists_the_accepted_ones():
    dump = DATA / "dpdata" / "traj.dump"
    with pytest.raises(ValueError) as err:
        read(dump)
    assert all(name in str(err.value) for name in FORMATS)
    with pytest.raises(ValueError, match="accepted"):
        read(H2O_VASPRUN, format="poscar")


def test_provenance_of_every_entry():
    for atoms in read(H2O_OUTCAR):
        source = atoms.info["source"]
        assert source["file"] == str(H2O_OUTCAR) and source["format"] == "outcar"
        # 'line' is the step's TOTEN line
        line = H2O_OUTCAR.read_text().splitlines()[source["line"] - 1]
        assert line.strip().startswith("free  energy   TOTEN")
        assert float(line.split()[-2]) == atoms.get_potential_energy()
