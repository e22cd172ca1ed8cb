"""pyexport.data against real VASP runs that other projects' test suites hold (tests/data/README.md):
linear-response (LEPSILON, LCHIMAG) runs, VASP 5.2 output order, van der Waals force tables, more than
10 species, files cut by a killed job, and SCF-unconverged steps.

Reference numbers come from VASP's printed output (a plain scan below) and from ASE's readers where
ASE reads the file.
"""

import gzip
import warnings
from pathlib import Path

import ase.io
import numpy as np
import pytest

from pyexport.data import IncompleteDataWarning, ParseError, UnconvergedSCFWarning, read
from pyexport.data.dataset import EV_PER_A3_PER_KBAR
from test_data_readers import assert_agrees_with_ase

DATA = Path(__file__).parent / "data"
LEPSILON_OUTCAR = DATA / "pymatgen" / "OUTCAR.lepsilon.gz"
LCHIMAG_OUTCAR = DATA / "pymatgen" / "core.diff.chemical.shifts.OUTCAR.gz"


def _lines(path):
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw.decode("latin-1").splitlines(keepends=True)


def _printed_totens(path):
    """Every final 'free  energy   TOTEN' value (VASP's exact spelling), in order."""
    return [float(line.split()[-2]) for line in _lines(path)
            if line.strip().startswith("free  energy   TOTEN")]


def _cut(path, tmp_path, n_lines, extra=""):
    """The first ``n_lines`` lines of ``path`` (plus ``extra``, e.g. half a line) as a plain file:
    what a killed job leaves."""
    dest = tmp_path / path.name.removesuffix(".gz")
    dest.write_text("".join(_lines(path)[:n_lines]) + extra, encoding="latin-1")
    return dest


# -- linear response: 'Iteration' headers after the last ionic step -------------------------------

@pytest.mark.parametrize("path", [LEPSILON_OUTCAR, LCHIMAG_OUTCAR], ids=["lepsilon", "lchimag"])
def test_linear_response_run_is_one_complete_step(path):
    frames = read(path)
    assert len(frames) == 1 == len(_printed_totens(path))
    assert frames[0].get_potential_energy() == _printed_totens(path)[0]
    assert_agrees_with_ase(frames, path)


KILLED_LEPSILON_OUTCAR = DATA / "custodian" / "OUTCAR.lrf_comm.gz"


def test_killed_linear_response_run_names_the_response_part(tmp_path):
    # cut inside the LEPSILON loops, whose first 'Iteration 1(1)' (line 18586) follows step 1's energy
    path = _cut(LEPSILON_OUTCAR, tmp_path, 30000)
    with pytest.raises(ParseError, match=r"linear-response part of the run \(begun at line 18586, "
                                         r"LEPSILON = T\) after ionic step 1") as err:
        read(path)
    assert err.value.line == 18586
    with pytest.warns(IncompleteDataWarning):
        frames = read(path, incomplete="warn")
    assert [a.get_potential_energy() for a in frames] == [241.55228287]


def test_real_killed_linear_response_run_keeps_its_ionic_step():
    # custodian's LRF_COMM case: VASP 5.4.1 died in the LEPSILON loops (from line 32568)
    with pytest.raises(ParseError, match="linear-response part") as err:
        read(KILLED_LEPSILON_OUTCAR)
    assert err.value.line == 32568
    with pytest.warns(IncompleteDataWarning):
        frames = read(KILLED_LEPSILON_OUTCAR, incomplete="warn")
    assert [a.get_potential_energy() for a in frames] == _printed_totens(KILLED_LEPSILON_OUTCAR)
    assert_agrees_with_ase(frames, KILLED_LEPSILON_OUTCAR)


# -- VASP 5.2 prints a step's energy before its stress and forces ----------------------------------

VASP52_OUTCAR = DATA / "pymatgen" / "OUTCAR.Al"


def test_vasp52_energy_before_forces_is_one_complete_step():
    (atoms,) = read(VASP52_OUTCAR)
    lines = _lines(VASP52_OUTCAR)
    assert lines[0].split()[0] == "vasp.5.2.2"
    # line 6086 'free  energy   TOTEN  =  -3.743359 eV', printed before the stress (6112) and forces (6137)
    assert atoms.get_potential_energy() == -3.743359
    assert atoms.info["energy_sigma0"] == -3.743359
    assert atoms.info["source"]["line"] == 6086
    np.testing.assert_allclose(atoms.get_stress(), -EV_PER_A3_PER_KBAR * np.array(
        [0.90594, 0.90594, 0.90594, 0.0, 0.0, 0.0]), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(atoms.cell[:], [[0.0, 2.016319, 2.016319],
                                                  [2.016319, 0.0, 2.016319],
                                                  [2.016319, 2.016319, 0.0]])
    np.testing.assert_array_equal(atoms.positions, [[0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(atoms.get_forces(), [[0.0, 0.0, 0.0]])
    assert atoms.get_chemical_symbols() == ["Al"]


# -- van der Waals: 9-column force table, 'w/o vdW' energies ------------------------------------------

GE_VDW_OUTCAR = DATA / "dpdata" / "OUTCAR.Ge.vdw"
GE_VDW_VASPRUN = DATA / "dpdata" / "vasprun.Ge.vdw.xml"


def test_vdw_outcar_reads_total_forces_and_equals_its_vasprun():
    (atoms,) = read(GE_VDW_OUTCAR)
    (xml,) = read(GE_VDW_VASPRUN)
    # line 1560: ion 6's FORCE-w/o vdW has a NaN; its TOTAL-FORCE does not
    np.testing.assert_array_equal(atoms.get_forces()[5], [0.002113, 0.004117, -0.044511])
    # line 1573: 'TOTEN = -33.36815582 eV    w/o vdW = -33.36815582 eV'
    assert atoms.get_potential_energy() == -33.36815582
    assert atoms.info["energy_sigma0"] == -33.36836054
    assert atoms.get_chemical_symbols() == xml.get_chemical_symbols()
    assert atoms.get_potential_energy() == pytest.approx(xml.get_potential_energy(), abs=1e-8)
    np.testing.assert_allclose(atoms.get_forces(), xml.get_forces(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(atoms.cell[:], xml.cell[:], rtol=0, atol=1e-8)
    np.testing.assert_allclose(atoms.positions, xml.positions, rtol=0, atol=6e-6)
    np.testing.assert_allclose(atoms.get_stress(), xml.get_stress(), rtol=0, atol=1e-5 * EV_PER_A3_PER_KBAR)


# -- more than 10 species: VASP prints 10 'ions per type' counts ------------------------------------

LONG_TYPES_OUTCAR = DATA / "dpdata" / "OUTCAR.longit.gz"


def test_ions_per_type_cut_at_10_types_is_a_clear_error():
    # 16 POTCARs, 'ions per type' (line 1710) lists 10 counts summing to 36, NIONS = 48 (line 1703)
    with pytest.raises(ParseError) as err:
        read(LONG_TYPES_OUTCAR)
    assert err.value.line == 1710
    message = str(err.value)
    assert "counts 36 ions in 10 types, but NIONS = 48" in message
    assert "first 10 of 16 POTCAR types" in message and "ions 37-48" in message
    assert "Mo, Rh, Pd, W, Ir, Pt" in message and "vasprun.xml" in message


# -- a file cut in the middle of a line (a killed job) ---------------------------------------------

H2O_OUTCAR = DATA / "dpdata" / "OUTCAR.h2o.md.10"
H2O_VASPRUN = DATA / "dpdata" / "vasprun.h2o.md.10.xml"


@pytest.mark.parametrize("n_lines, half_line, steps", [
    (2817, 7, [1, 2]),     # line 2818, ion 3's row of step 3's force table
    (2831, 0, [1, 2]),     # at the start of step 3's TOTEN line (2832): a cut at a line boundary
    (2831, 30, [1, 2]),    # in step 3's TOTEN line, before the number
    (2833, 60, [1, 2]),    # in step 3's energy(sigma->0) line (2834), before the number
], ids=["force-row", "boundary", "toten", "sigma0"])
def test_outcar_cut_in_the_middle_of_a_line_keeps_the_complete_steps(tmp_path, n_lines, half_line, steps):
    lines = _lines(H2O_OUTCAR)
    path = _cut(H2O_OUTCAR, tmp_path, n_lines, extra=lines[n_lines][:half_line])
    with pytest.raises(ParseError) as err:
        read(path)
    assert str(path) in str(err.value)
    with pytest.warns(IncompleteDataWarning):
        frames = read(path, incomplete="warn")
    assert [a.info["source"]["step"] for a in frames] == steps
    full = read(H2O_OUTCAR)
    for a in frames:
        b = full[a.info["source"]["step"] - 1]
        assert a.get_potential_energy() == b.get_potential_energy()
        np.testing.assert_array_equal(a.get_forces(), b.get_forces())


def test_outcar_cut_inside_a_force_row_names_that_line(tmp_path):
    lines = _lines(H2O_OUTCAR)
    path = _cut(H2O_OUTCAR, tmp_path, 2817, extra=lines[2817][:20])   # line 2818, ion 3
    with pytest.raises(ParseError, match="in the middle of line 2818") as err:
        read(path)
    assert err.value.line == 2818


def test_vasprun_cut_in_the_middle_of_a_line_keeps_the_complete_steps(tmp_path):
    lines = _lines(H2O_VASPRUN)
    dest = tmp_path / "vasprun.xml"
    dest.write_text("".join(lines[:1000]) + lines[1000][:9], encoding="latin-1")
    with pytest.raises(ParseError, match="ionic step 3"):
        read(dest)
    with pytest.warns(IncompleteDataWarning):
        frames = read(dest, incomplete="warn")
    assert [a.info["source"]["step"] for a in frames] == [1, 2]


def test_compressed_outcar_cut_short_keeps_the_complete_steps(tmp_path):
    # the first half of the gzip stream: ends inside the LEPSILON loops, after the ionic step
    path = tmp_path / "OUTCAR.gz"
    raw = LEPSILON_OUTCAR.read_bytes()
    path.write_bytes(raw[:len(raw) // 2])
    with pytest.raises(ParseError, match="linear-response part"):
        read(path)
    with pytest.warns(IncompleteDataWarning):
        assert [a.get_potential_energy() for a in read(path, incomplete="warn")] == [241.55228287]


# -- SCF-unconverged steps: the electronic loop ran all NELM steps ----------------------------------

CH4_UNCONVERGED_OUTCAR = DATA / "dpdata" / "OUTCAR.ch4.unconverged"
UNCONVERGED_VASPRUN = DATA / "pymatgen" / "vasprun.xml.unconverged.gz"
CHEMICAL_SHIFT_VASPRUN = DATA / "pymatgen" / "vasprun.xml.chemical_shift.scstep.gz"


def _electronic_steps(path):
    """{ionic step: number of 'Iteration N(M)' headers} as printed (NELM = 15 in this file)."""
    counts = {}
    for line in _lines(path):
        if line.strip().startswith("-") and "Iteration" in line:
            step = int(line.split("Iteration")[1].split("(")[0])
            counts[step] = counts.get(step, 0) + 1
    return counts


def test_unconverged_outcar_steps_are_flagged_and_counted():
    assert _electronic_steps(CH4_UNCONVERGED_OUTCAR) == {1: 15, 2: 15, 3: 12}
    with pytest.warns(UnconvergedSCFWarning, match=r"2 of 3 ionic steps \(1-2\).*NELM = 15.*kept"):
        frames = read(CH4_UNCONVERGED_OUTCAR)
    assert [a.info["scf_converged"] for a in frames] == [False, False, True]
    assert_agrees_with_ase(frames, CH4_UNCONVERGED_OUTCAR)


def test_unconverged_outcar_steps_dropped_on_request():
    with pytest.warns(UnconvergedSCFWarning, match=r"2 of 3 .* left out"):
        frames = read(CH4_UNCONVERGED_OUTCAR, unconverged="drop")
    assert [a.info["source"]["step"] for a in frames] == [3]
    assert frames[0].get_potential_energy() == _printed_totens(CH4_UNCONVERGED_OUTCAR)[2]


def test_unconverged_vasprun_steps_are_flagged_and_dropping_all_is_an_error():
    # every <calculation> has 100 <scstep>s, NELM = 100
    with pytest.warns(UnconvergedSCFWarning, match=r"5 of 5 ionic steps \(1-5\).*NELM = 100"):
        frames = read(UNCONVERGED_VASPRUN)
    assert [a.info["scf_converged"] for a in frames] == [False] * 5
    with pytest.raises(ParseError, match="no converged step is left"):
        read(UNCONVERGED_VASPRUN, unconverged="drop")


def test_linear_response_scsteps_do_not_count_as_electronic_steps():
    # LCHIMAG: 22 SCF <scstep>s (NELM = 60), then 246 of the chemical-shift loops
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (atoms,) = read(CHEMICAL_SHIFT_VASPRUN)
    assert atoms.info["scf_converged"] is True
    assert atoms.get_potential_energy() == -71.88028239


def test_unknown_unconverged_choice_is_an_error():
    with pytest.raises(ValueError, match="unconverged must be one of"):
        read(CH4_UNCONVERGED_OUTCAR, unconverged="keep")


# -- vasprun.xml with a cut element name ('X' for Xe) ---------------------------------------------

XE_VASPRUN = DATA / "pymatgen" / "vasprun.xml.xe.gz"


def test_vasprun_cut_element_name_comes_from_the_pseudopotential():
    # <atominfo> names the ion 'X ', its type's pseudopotential 'PAW_PBE Xe 07Sep2000'
    frames = read(XE_VASPRUN)
    theirs = ase.io.read(XE_VASPRUN, index=":", format="vasp-xml")
    assert len(frames) == len(theirs) == 7
    for a, b in zip(frames, theirs):
        assert a.get_chemical_symbols() == ["Xe"]
        np.testing.assert_allclose(a.cell[:], b.cell[:], rtol=0, atol=1e-12)
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(a.get_stress(), b.get_stress(), rtol=0, atol=1e-12)
        assert a.get_potential_energy() == pytest.approx(
            b.get_potential_energy(force_consistent=True), abs=1e-9)


VASP52_RELAX_OUTCAR = DATA / "atomate" / "OUTCAR.relax1.gz"
VASP52_RELAX_VASPRUN = DATA / "atomate" / "vasprun.xml.relax1.gz"


def test_vasp52_cell_relaxation_steps_equal_the_vasprun_steps():
    # VASP 5.2.2, Si, ISIF = 3: each step's cell ('VOLUME and BASIS-vectors are now') and force
    # table follow its energy; all three steps are complete and match the run's vasprun.xml
    ours, xml = read(VASP52_RELAX_OUTCAR), read(VASP52_RELAX_VASPRUN)
    assert [a.info["source"]["step"] for a in ours] == [1, 2, 3] == [a.info["source"]["step"] for a in xml]
    assert [a.get_potential_energy() for a in ours] == _printed_totens(VASP52_RELAX_OUTCAR)
    assert len({round(a.get_volume(), 3) for a in ours}) == 3     # the cell changes every step
    for a, b in zip(ours, xml):
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-6)
        np.testing.assert_allclose(a.cell[:], b.cell[:], rtol=0, atol=1e-8)
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(a.get_stress(), b.get_stress(), rtol=0, atol=1e-5 * EV_PER_A3_PER_KBAR)


def test_garbled_total_force_in_a_vdw_table_is_an_error(tmp_path):
    lines = _lines(GE_VDW_OUTCAR)
    assert lines[1556].split()[5] == "0.071051"        # line 1557: ion 3
    lines[1556] = lines[1556].replace("0.071051", "0.07I051", 1)
    path = tmp_path / "OUTCAR"
    path.write_text("".join(lines), encoding="latin-1")
    with pytest.raises(ParseError, match="ion 3") as err:
        read(path)
    assert err.value.line == 1557


def test_compressed_vasprun_cut_short_keeps_the_complete_steps(tmp_path):
    path = tmp_path / "vasprun.xml.gz"
    raw = UNCONVERGED_VASPRUN.read_bytes()
    path.write_bytes(raw[:len(raw) // 2])
    with pytest.raises(ParseError, match="file ends inside ionic step"):
        read(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnconvergedSCFWarning)
        with pytest.warns(IncompleteDataWarning):
            frames = read(path, incomplete="warn")
        full = read(UNCONVERGED_VASPRUN)
    assert 0 < len(frames) < len(full)
    for a, b in zip(frames, full):
        assert a.get_potential_energy() == b.get_potential_energy()
