"""EFG tables of VASP OUTCARs (LEFG = .TRUE.) read into per-atom tensors.

Fixtures: pymatgen/OUTCAR (Ca2Al8Si4H4O24, 42 ions, VASP 5.4.1, INCAR
QUAD_EFG = 0.0 146.6 0.0 0.0 0.0) and jarvis-tools/OUTCAR.EFG-JVASP-12148
(CoSe, 4 ions). VASP prints every EFG number with 3 decimals.
"""

from pathlib import Path

import numpy as np
import pytest

from pyexport.data import ParseError, read

DATA = Path(__file__).parent / "data"
ALPO_OUTCAR = DATA / "pymatgen" / "OUTCAR"
ALPO_INCAR = DATA / "pymatgen" / "INCAR"
COSE_OUTCAR = DATA / "jarvis-tools" / "OUTCAR.EFG-JVASP-12148"

PRINT = 5e-4   # V/Å², half the last printed digit
# Eigenvalues of the raw tensor vs VASP's printed principal values: each of
# the 9 components is rounded by <= PRINT, which moves an eigenvalue by at most
# the spectral norm of the rounding matrix, <= 3 * PRINT (row-sum bound), and
# the printed principal value is itself rounded by PRINT. Largest difference
# seen on these fixtures: 1.03e-3 V/Å² (pymatgen, one ion).
EIGEN_TOL = 3 * PRINT + PRINT


@pytest.fixture(scope="module")
def alpo():
    return read(ALPO_OUTCAR)[-1]


@pytest.fixture(scope="module")
def cose():
    return read(COSE_OUTCAR)[-1]


def test_efg_arrays_have_documented_shapes(alpo, cose):
    for atoms in (alpo, cose):
        n = len(atoms)
        assert atoms.arrays["efg"].shape == (n, 3, 3)
        assert atoms.arrays["efg_principal_vasp"].shape == (n, 3)
        for name in ("cq_vasp_mhz", "eta_vasp", "quad_moment_mb"):
            assert atoms.arrays[name].shape == (n,)
    assert len(alpo) == 42 and len(cose) == 4


def test_raw_tensor_is_symmetric_and_traceless(alpo, cose):
    for atoms in (alpo, cose):
        efg = atoms.arrays["efg"]
        np.testing.assert_array_equal(efg, np.transpose(efg, (0, 2, 1)))
        # traceless up to the rounding of the three printed diagonal entries
        assert np.abs(np.trace(efg, axis1=1, axis2=2)).max() <= 3 * PRINT + 1e-12


def test_eigenvalues_reproduce_vasp_diagonalized_table(alpo, cose):
    # VASP orders |V_zz| > |V_xx| > |V_yy| (pyexport.nmr, conventions):
    # compare sorted sets.
    for atoms in (alpo, cose):
        eigen = np.linalg.eigvalsh(atoms.arrays["efg"])
        printed = np.sort(atoms.arrays["efg_principal_vasp"], axis=1)
        np.testing.assert_allclose(eigen, printed, rtol=0, atol=EIGEN_TOL)


def test_eigenvalue_check_detects_swapped_off_diagonal_columns(alpo):
    # The raw table's column order is V_xy V_xz V_yz; reading V_xz and V_yz
    # the other way round must fail the comparison above for this structure.
    efg = alpo.arrays["efg"].copy()
    xz, yz = efg[:, 0, 2].copy(), efg[:, 1, 2].copy()
    efg[:, 0, 2] = efg[:, 2, 0] = yz
    efg[:, 1, 2] = efg[:, 2, 1] = xz
    printed = np.sort(alpo.arrays["efg_principal_vasp"], axis=1)
    assert np.abs(np.linalg.eigvalsh(efg) - printed).max() > 10 * EIGEN_TOL


def test_printed_principal_values_follow_vasp_ordering(alpo, cose):
    for atoms in (alpo, cose):
        vxx, vyy, vzz = np.abs(atoms.arrays["efg_principal_vasp"]).T
        assert np.all(vzz >= vxx) and np.all(vxx >= vyy)


def test_quadrupole_moments_follow_incar_quad_efg(alpo):
    # INCAR: QUAD_EFG = 0.0 146.6 0.0 0.0 0.0 for the types Ca Al Si H O.
    line = next(l for l in ALPO_INCAR.read_text().splitlines() if "QUAD_EFG" in l)
    per_type = dict(zip(["Ca", "Al", "Si", "H", "O"],
                        map(float, line.split("=")[1].split())))
    expected = [per_type[s] for s in alpo.get_chemical_symbols()]
    np.testing.assert_array_equal(alpo.arrays["quad_moment_mb"], expected)
    no_moment = alpo.arrays["quad_moment_mb"] == 0
    assert np.all(alpo.arrays["cq_vasp_mhz"][no_moment] == 0)
    assert np.all(alpo.arrays["cq_vasp_mhz"][~no_moment] != 0)


def test_alpo_ion3_as_printed(alpo):
    # pymatgen/OUTCAR lines 6804, 6854 and 7164 (ion 3, an Al).
    assert alpo.get_chemical_symbols()[2] == "Al"
    np.testing.assert_array_equal(alpo.arrays["efg"][2], [[11.110, 1.371, 2.652],
                                                          [1.371, 3.635, -3.572],
                                                          [2.652, -3.572, -14.746]])
    np.testing.assert_array_equal(alpo.arrays["efg_principal_vasp"][2],
                                  [11.516, 4.205, -15.721])
    assert alpo.arrays["cq_vasp_mhz"][2] == -5.573
    assert alpo.arrays["eta_vasp"][2] == 0.465
    assert alpo.arrays["quad_moment_mb"][2] == 146.6


def test_cose_axial_tensors_as_printed(cose):
    # jarvis OUTCAR: V_zz 9.532 (Co), -70.461 (Se), eta 0, Q = 1 mb for every ion.
    assert cose.get_chemical_symbols() == ["Co", "Co", "Se", "Se"]
    np.testing.assert_array_equal(cose.arrays["efg"][0], np.diag([-4.766, -4.766, 9.532]))
    np.testing.assert_array_equal(cose.arrays["efg"][3], np.diag([35.231, 35.231, -70.461]))
    np.testing.assert_array_equal(cose.arrays["efg_principal_vasp"][:, 2],
                                  [9.532, 9.532, -70.461, -70.461])
    np.testing.assert_array_equal(cose.arrays["eta_vasp"], 0.0)
    np.testing.assert_array_equal(cose.arrays["quad_moment_mb"], 1.0)
    np.testing.assert_array_equal(cose.arrays["cq_vasp_mhz"], [0.023, 0.023, -0.170, -0.170])


def test_efg_belongs_to_the_step_it_follows(alpo, cose):
    assert alpo.info["source"]["step"] == 1 and cose.info["source"]["step"] == 1
    assert cose.get_potential_energy() == -13.47451434   # TOTEN just above the tables


def _edited(tmp_path, edit):
    lines = ALPO_OUTCAR.read_text().splitlines(keepends=True)
    edit(lines)
    path = tmp_path / "OUTCAR"
    path.write_text("".join(lines))
    return path


def test_garbled_efg_row_names_file_and_line(tmp_path):
    def garble(lines):
        lines[6803] = lines[6803].replace("11.110", "11.1l0")   # line 6804, ion 3
    path = _edited(tmp_path, garble)
    with pytest.raises(ParseError, match="ion 3") as err:
        read(path)
    assert err.value.line == 6804 and str(path) in str(err.value)


def test_efg_table_missing_an_ion_names_file_and_line(tmp_path):
    def drop(lines):
        del lines[6842]    # ion 42 of the raw table (line 6843)
    path = _edited(tmp_path, drop)
    with pytest.raises(ParseError, match="ion 42") as err:
        read(path)
    assert err.value.line == 6843


def test_truncated_efg_table_is_reported(tmp_path):
    def cut(lines):
        del lines[6820:]   # inside the raw table
    path = _edited(tmp_path, cut)
    with pytest.raises(ParseError, match="table at line 6820") as err:
        read(path)
    assert err.value.line == 6820
