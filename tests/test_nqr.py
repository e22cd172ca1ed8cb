"""pyexport.nqr: pure-NQR transition frequencies from C_Q and eta, by exact diagonalisation of
the quadrupole Hamiltonian, against closed forms, the eta = 0 ladders, the I = 5/2 secular
equation and its small-eta series."""
import numpy as np
import pytest

from pyexport import nmr, nqr

ETAS = np.linspace(0.0, 1.0, 41)


def test_spin_3_2_is_the_closed_form():
    """I = 3/2: one line, ν = |C_Q|/2 · sqrt(1 + eta²/3), for either sign of C_Q."""
    cq = np.array([-7.3, 0.02, 91.6])[:, None]
    lines = nqr.nqr_frequencies_mhz(cq, ETAS[None, :], 1.5)
    assert lines.shape == (3, len(ETAS), 1)
    expected = 0.5 * np.abs(cq) * np.sqrt(1.0 + ETAS ** 2 / 3.0)
    np.testing.assert_allclose(lines[..., 0], expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("spin, ladder", [(2.5, [3 / 20, 3 / 10]),
                                          (3.5, [1 / 14, 2 / 14, 3 / 14]),
                                          (4.5, [1 / 24, 2 / 24, 3 / 24, 4 / 24])])
def test_axial_ladders(spin, ladder):
    """eta = 0: ν(m → m+1) = 3 |C_Q| (2m + 1) / (4 I (2I − 1)), m = 1/2, 3/2, ..."""
    lines = nqr.nqr_frequencies_mhz(-2.0, 0.0, spin)
    np.testing.assert_allclose(lines, 2.0 * np.array(ladder), rtol=1e-13, atol=0)
    assert nqr.n_lines(spin) == len(ladder) == len(nqr.transition_labels(spin))


def test_spin_5_2_solves_the_secular_equation():
    """I = 5/2: the doublet energies x (units e²qQ/20 = C_Q/20) are the roots of
    x³ − 7(3 + eta²) x − 20(1 − eta²) = 0 (Cohen & Reif, Solid State Phys. 5, 321 (1957);
    the characteristic polynomial of the 3x3 block), solved here in closed form (Viète)."""
    p, q = 7.0 * (3.0 + ETAS ** 2), 20.0 * (1.0 - ETAS ** 2)
    phase = np.arccos(np.clip(1.5 * q / p * np.sqrt(3.0 / p), -1, 1)) / 3.0
    roots = np.sort(np.stack([2.0 * np.sqrt(p / 3.0) * np.cos(phase - 2.0 * np.pi * k / 3.0)
                              for k in range(3)], axis=-1), axis=-1)
    cq = 311.0
    expected = cq / 20.0 * np.diff(roots, axis=-1)
    np.testing.assert_allclose(nqr.nqr_frequencies_mhz(cq, ETAS, 2.5), expected, rtol=1e-11, atol=0)
    np.testing.assert_allclose(nqr.level_energies(ETAS, 2.5), roots / 20.0, rtol=0, atol=1e-13)


def test_spin_5_2_small_eta_series():
    """ν1 = 3|C_Q|/20 (1 + 1.0926 η² − 0.6340 η⁴), ν2 = 3|C_Q|/10 (1 − 0.2037 η² + 0.1622 η⁴)
    (T. P. Das and E. L. Hahn, Nuclear Quadrupole Resonance Spectroscopy, Solid State Phys.
    Suppl. 1 (1958)). The η² coefficients are 59/54 and −11/54 by second-order perturbation
    theory (matrix elements <m±2| I±² |m>, energies −8, −2, 10 in units C_Q/40); the printed
    4-digit coefficients leave a residual below 1e-4 η⁴ + the η⁶ term."""
    cq = 696.0 * nmr.CQ_MHZ_PER_MB_V_PER_A2 * 100.0          # ¹²⁷I at V_zz = 100 V/Å²: ~168 MHz
    eta = np.array([0.01, 0.03, 0.05, 0.1, 0.15])
    nu1, nu2 = nqr.nqr_frequencies_mhz(cq, eta, 2.5).T
    second1, second2 = 1 + 59 / 54 * eta ** 2, 1 - 11 / 54 * eta ** 2
    # the second-order series is off by the η⁴ term, of the printed size
    np.testing.assert_allclose((nu1 / (0.15 * cq) - second1) / eta ** 4, -0.6340, atol=0.02)
    np.testing.assert_allclose((nu2 / (0.30 * cq) - second2) / eta ** 4, 0.1622, atol=0.01)
    fourth1 = 1 + 1.0926 * eta ** 2 - 0.6340 * eta ** 4
    fourth2 = 1 - 0.2037 * eta ** 2 + 0.1622 * eta ** 4
    assert np.all(np.abs(nu1 / (0.15 * cq) - fourth1) <= 1e-4 * eta ** 2 + 0.5 * eta ** 6)
    assert np.all(np.abs(nu2 / (0.30 * cq) - fourth2) <= 1e-4 * eta ** 2 + 0.5 * eta ** 6)


def test_spin_1_lines():
    """I = 1 (¹⁴N, ²H): ν± = 3|C_Q|/4 (1 ± eta/3), ν0 = |C_Q| eta/2; in the order ν0, ν−, ν+."""
    cq = -4.1
    lines = nqr.nqr_frequencies_mhz(cq, ETAS, 1.0)
    expected = np.stack([abs(cq) * ETAS / 2, 0.75 * abs(cq) * (1 - ETAS / 3),
                         0.75 * abs(cq) * (1 + ETAS / 3)], axis=-1)
    np.testing.assert_allclose(lines, expected, rtol=1e-12, atol=1e-14)
    assert nqr.transition_labels(1) == ("ν0", "ν−", "ν+")


def test_lines_are_ordered_by_transition_not_by_value():
    """Ascending for I ≤ 5/2 over 0 ≤ eta ≤ 1; for I = 7/2 the ±1/2↔±3/2 line overtakes the
    ±3/2↔±5/2 line near eta = 0.585 (module docstring), and the labels stay with transitions."""
    for spin in (1.0, 1.5, 2.5):
        lines = nqr.nqr_frequencies_mhz(1.0, ETAS, spin)
        assert np.all(np.diff(lines, axis=-1) >= -1e-12)
    below, above = nqr.nqr_frequencies_mhz(1.0, [0.58, 0.59], 3.5)
    assert below[0] < below[1] and above[0] > above[1]
    assert nqr.transition_labels(3.5) == ("±1/2↔±3/2", "±3/2↔±5/2", "±5/2↔±7/2")
    # the lines move continuously with eta: no jump from relabelling
    fine = nqr.nqr_frequencies_mhz(1.0, np.linspace(0, 1, 2001), 3.5)
    assert np.abs(np.diff(fine, axis=0)).max() < 1e-3


def test_vectorised_over_sites_and_frames():
    rng = np.random.default_rng(2)
    cq = rng.normal(size=(4, 5)) * 50
    eta = rng.uniform(0, 1, size=5)
    lines = nqr.nqr_frequencies_mhz(cq, eta, 2.5)
    assert lines.shape == (4, 5, 2)
    for f in range(4):
        for s in range(5):
            np.testing.assert_allclose(lines[f, s], nqr.nqr_frequencies_mhz(cq[f, s], eta[s], 2.5),
                                       rtol=1e-14)
    assert nqr.nqr_frequencies_mhz(3.0, 0.2, 1.5).shape == (1,)


def test_bad_spins_and_values_are_refused():
    for spin in (0.5, 0.0, 2.0, 1.25):
        with pytest.raises(ValueError, match=f"spin {float(spin)}"):
            nqr.nqr_frequencies_mhz(1.0, 0.0, spin)
    with pytest.raises(ValueError, match="cq_mhz: not finite"):
        nqr.nqr_frequencies_mhz(np.nan, 0.0, 1.5)
    with pytest.raises(ValueError, match="eta: not finite"):
        nqr.nqr_frequencies_mhz(1.0, np.inf, 1.5)


def test_every_isotope_has_a_spin_and_lines():
    assert set(nmr.NUCLEAR_SPINS) == set(nmr.QUADRUPOLE_MOMENTS)
    assert nmr.nuclear_spin("Br-79") == 1.5 and nmr.nuclear_spin("127I") == 2.5
    assert nmr.nuclear_spin("133Cs") == 3.5 and nmr.nuclear_spin("D") == 1.0
    for isotope, spin in nmr.NUCLEAR_SPINS.items():
        assert nqr.nqr_frequencies_mhz(1.0, 0.3, spin).shape == (nqr.n_lines(spin),)
    with pytest.raises(ValueError, match="no nuclear spin in the table"):
        nmr.nuclear_spin("207Pb")


def test_spins_and_moments_agree_with_soprano():
    """Soprano's isotope table (its own source) gives the same I and Q for every isotope here."""
    pytest.importorskip("soprano")
    from soprano.data.nmr import _get_nmr_data

    data = _get_nmr_data()
    for isotope, spin in nmr.NUCLEAR_SPINS.items():
        element, mass = nmr.isotope_element(isotope), isotope[:-len(nmr.isotope_element(isotope))]
        entry = data[element][mass]
        assert entry["I"] == spin, isotope
        assert entry["Q"] == pytest.approx(nmr.quadrupole_moment_mb(isotope), rel=1e-12), isotope


def test_spin_3_2_and_axial_lines_agree_with_soprano():
    """Soprano's EFGNQR uses 3A(2m+1) sqrt(1 + eta²/3): exact for I = 3/2 and at eta = 0 (for
    I ≥ 5/2 at eta > 0 it is an approximation; ours is exact, see the secular-equation test).
    Soprano gives the lines the sign of C_Q; a frequency is |ν|."""
    pytest.importorskip("soprano")
    from ase import Atoms
    from soprano.properties.nmr import EFGNQR

    rng = np.random.default_rng(4)
    a = rng.normal(size=(3, 3, 3)) * 0.4
    tensors_au = a + np.swapaxes(a, 1, 2)
    tensors_au -= np.trace(tensors_au, axis1=1, axis2=2)[:, None, None] * np.eye(3) / 3
    tensors_au[2] = np.diag([-0.2, -0.2, 0.4])                       # axial ¹²⁷I
    atoms = Atoms("BrClI", positions=np.eye(3) * 2.0)
    atoms.new_array("efg", tensors_au)
    soprano_lines = EFGNQR.get(atoms, isotopes={"Br": 79, "Cl": 35, "I": 127})
    tensors = tensors_au * nmr.V_PER_A2_PER_EFG_AU
    for k, isotope in enumerate(("79Br", "35Cl", "127I")):
        ours = nqr.nqr_frequencies_mhz(nmr.cq_mhz(tensors[k], isotope), nmr.eta(tensors[k]),
                                       nmr.nuclear_spin(isotope))
        theirs = np.array(list(soprano_lines[k].values())) / 1e6
        np.testing.assert_allclose(ours, np.abs(theirs), rtol=1e-9)
        assert np.all(np.sign(theirs) == np.sign(nmr.cq_mhz(tensors[k], isotope)))
