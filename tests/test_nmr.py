"""pyexport.nmr: principal values, eta, C_Q, the quadrupole-moment table, six-component storage.

The VASP cross-checks read the LEFG tables of two shipped OUTCARs (tests/data/README.md):
pymatgen/OUTCAR (Ca2Al8Si4H4O24, VASP 5.4.1, QUAD_EFG 146.6 mb on Al) and
jarvis-tools/OUTCAR.EFG-JVASP-12148 (CoSe, VASP 5.4.1, Q = 1 mb on every ion). Every expected
number there is one VASP printed.
"""
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from pyexport import nmr

DATA = Path(__file__).parent / "data"
PYMATGEN_OUTCAR = DATA / "pymatgen" / "OUTCAR"
JARVIS_OUTCAR = DATA / "jarvis-tools" / "OUTCAR.EFG-JVASP-12148"

# VASP prints every tensor component and principal value with 3 decimals (rounding error ≤ 5e-4).
# Diagonalising the rounded components moves an eigenvalue by at most the spectral norm of the
# rounding matrix, ≤ its Frobenius norm √9 · 5e-4 = 1.5e-3; plus 5e-4 for the printed value.
PRINTED_EIGENVALUE_TOL = 2.0e-3


def _random_traceless(rng, shape):
    a = rng.normal(size=shape + (3, 3)) * 10.0
    sym = 0.5 * (a + np.swapaxes(a, -1, -2))
    return sym - np.trace(sym, axis1=-2, axis2=-1)[..., None, None] * np.eye(3) / 3.0


def _random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


# --------------------------------------------------------------------------------------------
# Constants and the table
# --------------------------------------------------------------------------------------------
def test_cq_constant_is_derived_from_codata_and_matches_design():
    # pyexport.nmr: C_Q [MHz] = 2.41799e-3 · Q[mb] · V_zz[V/Å²]
    assert nmr.CQ_MHZ_PER_MB_V_PER_A2 == pytest.approx(2.41799e-3, rel=1e-5)


def test_quadrupole_moments_of_design_md_and_issue():
    expected = {"127I": -696.0, "79Br": 313.0, "81Br": 262.0, "133Cs": -3.43, "14N": 20.44,
                "2H": 2.86, "27Al": 146.6, "17O": -25.58, "91Zr": -176.0}
    for isotope, q_mb in expected.items():
        assert nmr.quadrupole_moment_mb(isotope) == q_mb
    for isotope, moment in nmr.QUADRUPOLE_MOMENTS.items():
        assert "Mol. Phys." in moment.source, isotope
        assert nmr.normalize_isotope(isotope) == isotope


@pytest.mark.parametrize("name", ["79Br", "79br", "Br79", "Br-79", "79-Br", " br79 "])
def test_isotope_names_are_normalised(name):
    assert nmr.normalize_isotope(name) == "79Br"
    assert nmr.quadrupole_moment_mb(name) == 313.0


def test_deuterium_alias():
    assert nmr.quadrupole_moment_mb("D") == nmr.quadrupole_moment_mb("2H")


def test_unknown_isotope_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"207Pb.*known: .*79Br"):
        nmr.quadrupole_moment_mb("207Pb")
    with pytest.raises(ValueError, match="expected a name like"):
        nmr.quadrupole_moment_mb("bromine")


def test_default_isotopes():
    assert [nmr.default_isotope(el) for el in ("Br", "I", "Cs", "N", "H", "Cl")] == \
        ["79Br", "127I", "133Cs", "14N", "2H", "35Cl"]
    for element, isotope in nmr.DEFAULT_ISOTOPES.items():
        assert isotope in nmr.QUADRUPOLE_MOMENTS
        assert re.fullmatch(r"\d+" + element, isotope)
    with pytest.raises(ValueError, match="Pb.*no default quadrupolar isotope"):
        nmr.default_isotope("Pb")


def test_isotope_option_grammar_is_element_equals_isotope():
    assert nmr.parse_isotope_options(["Br=81Br", "Cs=Cs-133", "H=D"]) == \
        {"Br": "81Br", "Cs": "133Cs", "H": "2H"}
    assert nmr.parse_isotope_options([]) == {}
    for text, message in [("81Br", r"--isotope '81Br': expected ELEMENT=ISOTOPE, e\.g\. --isotope Br=81Br"),
                          ("Br=79Br,Cs=133Cs", r"--isotope Br=79Br,Cs=133Cs: one ELEMENT=ISOTOPE per --isotope; repeat"),
                          ("Br=127I", r"--isotope Br=127I: 127I is not an isotope of Br"),
                          ("Br=80Br", r"--isotope Br=80Br: isotope '80Br': no quadrupole moment"),
                          ("=79Br", "expected ELEMENT=ISOTOPE")]:
        with pytest.raises(ValueError, match=message):
            nmr.parse_isotope_options([text])
    with pytest.raises(ValueError, match=r"--isotope: Br named twice \(79Br, 81Br\)"):
        nmr.parse_isotope_options(["Br=79Br", "Br=81Br"])


def test_isotopes_resolved_chosen_first_then_defaults():
    assert nmr.resolve_isotopes(["Cs", "Pb", "Br"], {"Br": "81Br"}) == {"Br": "81Br", "Cs": "133Cs"}
    assert list(nmr.resolve_isotopes(["Cs", "Pb", "Br"], {"Br": "81Br"})) == ["Br", "Cs"]
    assert nmr.resolve_isotopes(["Pb", "Br", "Pb"]) == {"Br": "79Br"}
    with pytest.raises(ValueError, match=r"--isotope I=127I: there is no I here \(elements: Cs, Pb, Br\)"):
        nmr.resolve_isotopes(["Cs", "Pb", "Br"], {"I": "127I"})
    with pytest.raises(TypeError, match="expected a mapping"):
        nmr.resolve_isotopes(["Br"], "79Br")


# --------------------------------------------------------------------------------------------
# Principal values, eta
# --------------------------------------------------------------------------------------------
def test_principal_values_are_the_ordered_eigenvalues_vectorised():
    rng = np.random.default_rng(7)
    V = _random_traceless(rng, (4, 5))
    vxx, vyy, vzz = nmr.principal(V)
    assert vxx.shape == vyy.shape == vzz.shape == (4, 5)
    assert np.all(np.abs(vzz) >= np.abs(vyy)) and np.all(np.abs(vyy) >= np.abs(vxx))
    values = np.stack([vxx, vyy, vzz], axis=-1)
    np.testing.assert_allclose(np.sort(values, axis=-1), np.linalg.eigvalsh(V), atol=1e-12)
    for idx in np.ndindex(4, 5):  # the batched call equals one call per tensor
        single = nmr.principal(V[idx])
        np.testing.assert_array_equal(np.array(single), values[idx])
        assert nmr.eta(V[idx]) == nmr.eta(V)[idx]


def test_eta_range_and_definition():
    rng = np.random.default_rng(8)
    V = _random_traceless(rng, (200,))
    vxx, vyy, vzz = nmr.principal(V)
    eta = nmr.eta(V)
    np.testing.assert_allclose(eta, (vxx - vyy) / vzz, rtol=1e-14)
    assert np.all(eta >= -1e-12) and np.all(eta <= 1.0 + 1e-12)
    assert eta.min() < 0.1 and eta.max() > 0.9  # the sample spans the range


def test_invariance_under_rotation_and_antisymmetric_part():
    rng = np.random.default_rng(9)
    V = _random_traceless(rng, (10,))
    R = _random_rotation(rng)
    rotated = R @ V @ R.T
    antisym = rng.normal(size=(10, 3, 3))
    skewed = V + (antisym - np.swapaxes(antisym, 1, 2))
    for other in (rotated, skewed):
        np.testing.assert_allclose(np.array(nmr.principal(other)), np.array(nmr.principal(V)),
                                   atol=1e-12)
        np.testing.assert_allclose(nmr.eta(other), nmr.eta(V), atol=1e-12)


def test_principal_axes():
    rng = np.random.default_rng(10)
    V = _random_traceless(rng, (6,))
    values, axes = nmr.principal_axes(V)
    np.testing.assert_allclose(values, np.stack(nmr.principal(V), axis=-1), atol=1e-12)
    np.testing.assert_allclose(V @ axes, axes * values[:, None, :], atol=1e-11)
    np.testing.assert_allclose(np.swapaxes(axes, 1, 2) @ axes, np.broadcast_to(np.eye(3), V.shape),
                               atol=1e-12)


def test_principal_frame_is_a_right_handed_eigenframe():
    rng = np.random.default_rng(11)
    V = _random_traceless(rng, (50,))
    values, R = nmr.principal_frame(V)
    np.testing.assert_allclose(values, np.stack(nmr.principal(V), axis=-1), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
    np.testing.assert_allclose(R @ (values[:, :, None] * np.swapaxes(R, 1, 2)), V, atol=1e-11)


def test_euler_angles_recover_a_known_orientation():
    """V = R(α, β, γ) diag(V_xx, V_yy, V_zz) R(α, β, γ)ᵀ with angles in the canonical ranges
    (β ≤ π/2, γ < π): euler_zyz gives them back, whichever signs the eigensolver chose; R_z and
    R_y are the active rotations (R_z(π/2) takes x to y)."""
    np.testing.assert_allclose(nmr.rotation_zyz([np.pi / 2, 0, 0]) @ [1, 0, 0], [0, 1, 0], atol=1e-15)
    np.testing.assert_allclose(nmr.rotation_zyz([0, np.pi / 2, 0]) @ [0, 0, 1], [1, 0, 0], atol=1e-15)
    rng = np.random.default_rng(12)
    angles = np.stack([rng.uniform(0, 2 * np.pi, 200), rng.uniform(0.01, np.pi / 2 - 0.01, 200),
                       rng.uniform(0, np.pi, 200)], axis=-1)
    principal_values = np.array([-0.3, -1.2, 1.5]) * 40.0             # |V_zz| > |V_yy| > |V_xx|
    R = nmr.rotation_zyz(angles)
    V = R @ (principal_values[:, None] * np.swapaxes(R, 1, 2))
    values, frame = nmr.principal_frame(V)
    np.testing.assert_allclose(values, np.broadcast_to(principal_values, values.shape), atol=1e-11)
    np.testing.assert_allclose(nmr.euler_zyz(frame), angles, atol=1e-9)
    # the three other sign choices of the axes give the same angles
    for signs in ([-1, -1, 1], [1, -1, -1], [-1, 1, -1]):
        np.testing.assert_allclose(nmr.euler_zyz(frame * np.array(signs)), angles, atol=1e-9)
    # axial about z: only α + γ is defined; β = 0 and α = 0 taken
    assert nmr.euler_zyz(nmr.principal_frame(np.diag([-1.0, -1.0, 2.0]))[1]) == pytest.approx([0, 0, 0], abs=1e-12)
    with pytest.raises(ValueError, match="not a proper rotation"):
        nmr.euler_zyz(-np.eye(3))


def test_orientation_and_haeberlen_order_agree_with_soprano():
    """Soprano's EFG tensors (order NQR, ZYZ, active): the same principal values, axes and Euler
    angles; its Haeberlen order swaps our V_xx and V_yy of a traceless tensor, with the same
    eta (module docstring)."""
    pytest.importorskip("soprano")
    from soprano.nmr.tensor import NMRTensor

    rng = np.random.default_rng(13)
    for V in _random_traceless(rng, (100,)):
        values, frame = nmr.principal_frame(V)
        nqr_order = NMRTensor(V, order="n")
        np.testing.assert_allclose(nqr_order.eigenvalues, values, atol=1e-12)
        np.testing.assert_allclose(nqr_order.eigenvectors @ np.diag(values) @ nqr_order.eigenvectors.T, V,
                                   atol=1e-11)
        np.testing.assert_allclose(np.abs(np.sum(nqr_order.eigenvectors * frame, axis=0)), 1.0, atol=1e-10)
        np.testing.assert_allclose(nqr_order.euler_angles("zyz"), nmr.euler_zyz(frame), atol=1e-8)
        haeberlen = NMRTensor(V, order="h")
        np.testing.assert_allclose(haeberlen.eigenvalues, values[[1, 0, 2]], atol=1e-12)
        assert haeberlen.asymmetry == pytest.approx(nmr.eta(V), abs=1e-12)


def test_efg_atomic_unit_from_codata():
    """1 E_h/(e a0²) in V/Å²: scipy's CODATA 'atomic unit of electric field gradient' to its 11
    printed digits, and CODATA 2018's 9.7173624292e21 V/m² (2022 moved it by 1.4e-9)."""
    from scipy import constants

    au = constants.physical_constants["atomic unit of electric field gradient"][0]
    assert nmr.V_PER_A2_PER_EFG_AU == pytest.approx(au / 1e20, rel=1e-11)
    assert nmr.V_PER_A2_PER_EFG_AU == pytest.approx(97.173624292, rel=2e-9)


@pytest.mark.parametrize("diagonal", [(-1.0, -1.0, 2.0), (2.0, -1.0, -1.0), (-1.0, 2.0, -1.0)])
def test_axial_tensor(diagonal):
    V = np.diag(diagonal)
    assert nmr.principal(V) == pytest.approx((-1.0, -1.0, 2.0))
    assert nmr.eta(V) == 0.0
    values, axes = nmr.principal_axes(V)
    assert abs(axes[:, 2] @ np.eye(3)[int(np.argmax(diagonal))]) == pytest.approx(1.0)


def test_zero_and_degenerate_tensors_without_warnings():
    zero = np.zeros((2, 3, 3))
    one = np.diag([1.0, -1.0, 0.0])  # eta = 1: |V_zz| = |V_yy|
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            assert np.all(nmr.eta(zero) == 0.0)
            assert np.all(np.array(nmr.principal(zero)) == 0.0)
            assert np.all(nmr.cq_mhz(zero, "79Br") == 0.0)
            assert nmr.eta(one) == pytest.approx(1.0, abs=1e-15)
            assert nmr.vzz(one) == 1.0 and nmr.principal(one)[0] == 0.0  # tie: positive


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 3\)"):
        nmr.principal(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"\(\.\.\., 6\)"):
        nmr.from_voigt6(np.zeros((2, 5)))


# --------------------------------------------------------------------------------------------
# C_Q and six-component storage
# --------------------------------------------------------------------------------------------
def test_cq_from_isotope_name_or_moment():
    rng = np.random.default_rng(11)
    V = _random_traceless(rng, (3,))
    vzz = nmr.vzz(V)
    np.testing.assert_allclose(nmr.cq_mhz(V, "127I"), nmr.CQ_MHZ_PER_MB_V_PER_A2 * -696.0 * vzz,
                               rtol=1e-15)
    np.testing.assert_allclose(nmr.cq_mhz(V, 313.0), nmr.cq_mhz(V, "79Br"), rtol=1e-15)
    per_site = nmr.cq_mhz(V, np.array([313.0, 262.0, -696.0]))
    np.testing.assert_allclose(per_site, [nmr.cq_mhz(V[0], "79Br"), nmr.cq_mhz(V[1], "81Br"),
                                          nmr.cq_mhz(V[2], "127I")], rtol=1e-15)


def test_voigt6_order_and_round_trip():
    V = nmr.from_voigt6([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])  # xx yy zz xy xz yz
    np.testing.assert_array_equal(V, [[1.0, 4.0, 5.0], [4.0, 2.0, 6.0], [5.0, 6.0, 3.0]])
    rng = np.random.default_rng(12)
    T = _random_traceless(rng, (2, 4))
    np.testing.assert_array_equal(nmr.from_voigt6(nmr.to_voigt6(T)), T)
    assert nmr.to_voigt6(T).shape == (2, 4, 6)


# --------------------------------------------------------------------------------------------
# Against VASP's own output
# --------------------------------------------------------------------------------------------
def _vasp_table(lines, title, n_rows):
    """The ``n_rows`` rows of the OUTCAR table headed ``title`` (after its " ion ..." column
    header and the dashed line under it), ion number dropped."""
    at = next(i for i, line in enumerate(lines) if title in line)
    at = next(i for i in range(at, len(lines)) if lines[i].split()[:1] == ["ion"]) + 2
    rows = [line.split() for line in lines[at:at + n_rows]]
    assert [int(row[0]) for row in rows] == list(range(1, n_rows + 1))
    return np.array([[float(x) for x in row[1:]] for row in rows])


def _vasp_efg(path, n_ions):
    lines = path.read_text().splitlines()
    raw = _vasp_table(lines, "Electric field gradients (V/A^2)", n_ions)
    diagonal = _vasp_table(lines, "Electric field gradients after diagonalization", n_ions)
    nmr_table = _vasp_table(lines, "NMR quadrupolar parameters", n_ions)
    return lines, raw, diagonal, nmr_table


def test_reproduces_vasp_principal_values_eta_and_cq_alpo4():
    _, raw, diagonal, printed = _vasp_efg(PYMATGEN_OUTCAR, 42)
    V = nmr.from_voigt6(raw)  # OUTCAR columns: V_xx V_yy V_zz V_xy V_xz V_yz
    vxx, vyy, vzz = nmr.principal(V)
    # VASP's V_xx is our V_yy and vice versa (|V_zz| > |V_xx| > |V_yy| there).
    np.testing.assert_allclose(vzz, diagonal[:, 2], atol=PRINTED_EIGENVALUE_TOL)
    np.testing.assert_allclose(vyy, diagonal[:, 0], atol=PRINTED_EIGENVALUE_TOL)
    np.testing.assert_allclose(vxx, diagonal[:, 1], atol=PRINTED_EIGENVALUE_TOL)
    # eta: printed rounding 5e-4 plus eigenvalue errors / |V_zz| ≥ 8.3 V/Å² here.
    np.testing.assert_allclose(nmr.eta(V), printed[:, 1], atol=1e-3)
    np.testing.assert_allclose(diagonal[:, 3], printed[:, 1], atol=0)
    q_mb = printed[:, 2]
    assert set(q_mb) == {0.0, 146.6}  # QUAD_EFG = 0.0 146.6 0.0 0.0 0.0 (Al only)
    # C_Q from the printed principal value: only the two printing roundings, 0.35·5e-4 + 5e-4.
    diag_tensors = np.einsum("ik,kl->ikl", diagonal[:, :3], np.eye(3))
    np.testing.assert_allclose(nmr.cq_mhz(diag_tensors, q_mb), printed[:, 0], atol=1e-3)
    # From the printed tensor components too; the Al ions with the table's 27Al moment.
    np.testing.assert_allclose(nmr.cq_mhz(V, q_mb), printed[:, 0], atol=1e-3)
    al = q_mb == 146.6
    np.testing.assert_allclose(nmr.cq_mhz(V[al], "27Al"), printed[al, 0], atol=1e-3)
    assert np.all(np.abs(printed[al, 0]) > 5.0)  # the check compares real couplings


def test_reproduces_vasp_cq_cose():
    _, raw, diagonal, printed = _vasp_efg(JARVIS_OUTCAR, 4)
    V = nmr.from_voigt6(raw)
    np.testing.assert_allclose(nmr.vzz(V), [9.532, 9.532, -70.461, -70.461], atol=1e-9)
    np.testing.assert_allclose(nmr.eta(V), printed[:, 1], atol=1e-9)
    np.testing.assert_allclose(nmr.cq_mhz(V, printed[:, 2]), printed[:, 0], atol=1e-3)


def test_vasp_sign_convention_hydroxyl_vzz_positive_along_bond():
    """The sign convention documented in efg.pointcharge: VASP's V_zz at each H of AlPO4's
    hydroxyls is positive with its axis along the O–H bond, as in V = ∂∂φ (a deuteron's
    measured C_Q is positive and Q(2H) > 0)."""
    lines, raw, _, _ = _vasp_efg(PYMATGEN_OUTCAR, 42)
    number = r"-?\d+\.\d+"
    lattice_at = next(i for i, line in enumerate(lines) if "direct lattice vectors" in line) + 1
    cell = np.array([[float(x) for x in re.findall(number, lines[lattice_at + k])[:3]]
                     for k in range(3)])
    pos_at = next(i for i, line in enumerate(lines) if "position of ions in cartesian" in line) + 1
    positions = np.array([[float(x) for x in re.findall(number, lines[pos_at + k])]
                          for k in range(42)])
    species = ["Ca"] * 2 + ["Al"] * 8 + ["Si"] * 4 + ["H"] * 4 + ["O"] * 24  # ions per type
    values, axes = nmr.principal_axes(nmr.from_voigt6(raw))
    for h in [i for i, s in enumerate(species) if s == "H"]:
        offset = (positions - positions[h]) @ np.linalg.inv(cell)
        offset -= np.round(offset)
        distance = np.linalg.norm(offset @ cell, axis=1)
        distance[h] = np.inf
        nearest = int(np.argmin(distance))
        assert species[nearest] == "O" and distance[nearest] < 1.1
        bond = (offset @ cell)[nearest] / distance[nearest]
        assert values[h, 2] > 30.0
        assert abs(bond @ axes[h, :, 2]) > 0.99
