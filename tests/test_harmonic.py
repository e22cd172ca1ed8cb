"""efg harmonic: phonopy force constants, modes, sampling and EFG averages from an exported
potential, checked against closed forms, finite differences, phonopy's own routines and LAMMPS MD.

Models (all exported through the contract and read back through MLFFCalculator):
- fcc springs: monatomic fcc (Ar mass) with nearest-neighbour central springs k, r0 = the nn
  distance, so the lattice is in equilibrium and the phonons are known in closed form:
  D(q) = (k/m) Σ_δ (1 - cos q·δ) δ̂ δ̂ᵀ over the 12 nn vectors δ.
- perovskite springs: cubic CsPbBr3 with Pb-Br, Br-Br and Cs-Br springs at their lattice
  lengths: dynamically stable, for the EFG averages.
- the smooth many-body model of tests/contract_models.py on cubic CsPbBr3: unstable (imaginary
  modes at Γ, X, M, R), for the listing of imaginary modes and the double well.
"""
import argparse
import json
import lzma
from pathlib import Path

import numpy as np
import phonopy
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.io import read, write
from scipy import constants

from contract_models import export, many_body_module, point_charge_efg_module
from lammps_run import run_lammps
from efg import harmonic
from efg.cli import harmonic as harmonic_cli
from efg.harmonic.relax import relax_structure
from pyexport.lammps.dump import iread
from pyexport.nmr import cq_mhz, eta, to_voigt6
from pyexport.calculator import MLFFCalculator
from pyexport.contract import PotentialModule, export_model, load_model
from pyexport.efg_eval import predict_efg
from pyexport.lammps.data_file import write_lammps_data
from pyexport.models.pair import HarmonicSprings, symmetric_table

pytestmark = pytest.mark.usefixtures("one_thread")

A_FCC = 5.26                       # Å, conventional fcc lattice parameter
R0_FCC = A_FCC / np.sqrt(2.0)      # nearest-neighbour distance
K_FCC = 1.0                        # eV/Å²
A_PEROVSKITE = 5.9                 # Å


def thz_per_sqrt_ev_a2_amu():
    """f (THz) = sqrt(λ [eV/(Å² amu)]) × this, from CODATA constants (not phonopy's)."""
    omega = np.sqrt(constants.e / (constants.angstrom ** 2 * constants.atomic_mass))   # rad/s
    return omega / (2.0 * np.pi) / 1e12


def fcc_nn_vectors(a):
    return np.array([s * np.array(v) * a / 2 for v in ((1, 1, 0), (1, -1, 0), (1, 0, 1), (1, 0, -1),
                                                        (0, 1, 1), (0, 1, -1)) for s in (1, -1)])


def fcc_analytic_frequencies(qpoints_frac, primitive_cell, k, mass):
    """Closed-form nn central-spring frequencies (THz, ascending) at fractional q-points of the
    primitive reciprocal lattice."""
    recip = 2.0 * np.pi * np.linalg.inv(primitive_cell).T
    deltas = fcc_nn_vectors(A_FCC)
    unit = deltas / np.linalg.norm(deltas, axis=1)[:, None]
    out = []
    for q in np.reshape(qpoints_frac, (-1, 3)):
        phase = 1.0 - np.cos(deltas @ (q @ recip))
        d = (k / mass) * np.einsum("n,ni,nj->ij", phase, unit, unit)
        lam = np.clip(np.linalg.eigvalsh(d), 0.0, None)
        out.append(np.sqrt(lam) * thz_per_sqrt_ev_a2_amu())
    return np.array(out)


def cubic_perovskite(a0=A_PEROVSKITE):
    return Atoms("CsPbBr3", scaled_positions=[[0, 0, 0], [.5, .5, .5], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]],
                 cell=np.eye(3) * a0, pbc=True)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    fcc = PotentialModule(HarmonicSprings([[K_FCC]], [[R0_FCC]]), ["Ar"], cutoff=0.5 * (R0_FCC + A_FCC))
    elements = ["Cs", "Pb", "Br"]
    a = A_PEROVSKITE
    k = symmetric_table({("Pb", "Br"): 2.0, ("Br", "Br"): 0.3, ("Cs", "Br"): 0.3}, elements)
    r0 = symmetric_table({("Pb", "Br"): a / 2, ("Br", "Br"): a / np.sqrt(2), ("Cs", "Br"): a / np.sqrt(2)},
                         elements, default=1.0)
    perovskite = PotentialModule(HarmonicSprings(k, r0), elements, cutoff=4.6)   # Cs-Pb (5.1 Å) out
    paths = {"fcc": d / "fcc_springs.pt", "perovskite": d / "perovskite_springs.pt"}
    export_model(fcc, paths["fcc"])
    export_model(perovskite, paths["perovskite"])
    paths["many_body"] = export(many_body_module(), d / "many_body.pt")
    paths["efg"] = export(point_charge_efg_module(), d / "point_charge_efg.pt")
    return {key: str(value) for key, value in paths.items()}


@pytest.fixture(scope="module")
def fcc_phonon(models):
    """4x4x4 supercell of the fcc primitive cell (64 atoms). A 1e-3 Å displacement: the central
    springs' geometric anharmonicity puts an O(d²) error of 1e-5 THz into the frequencies at
    phonopy's default 0.01 Å, 1e-7 THz at 1e-3 Å."""
    phonon = harmonic.build_phonopy(bulk("Ar", "fcc", a=A_FCC), np.diag([4, 4, 4]))
    info = harmonic.compute_force_constants(phonon, MLFFCalculator(models["fcc"]), displacement=1e-3)
    assert info["max_residual_force_eV_per_A"] < 1e-12      # r0 = nn distance: equilibrium
    return phonon


@pytest.fixture(scope="module")
def many_body_phonon(models):
    phonon = harmonic.build_phonopy(cubic_perovskite(), np.diag([2, 2, 2]))
    harmonic.compute_force_constants(phonon, MLFFCalculator(models["many_body"]), displacement=1e-3)
    return phonon


# --------------------------------------------------------------------------------------------
# Exact harmonic answer: fcc springs
# --------------------------------------------------------------------------------------------
def test_analytic_dispersion_has_the_textbook_values():
    """The closed form used below, at X and L: ω_T² = 4k/m, ω_L² = 8k/m at X; 2k/m, 8k/m at L."""
    prim = bulk("Ar", "fcc", a=A_FCC)
    m = prim.get_masses()[0]
    f = fcc_analytic_frequencies([[0.5, 0.0, 0.5], [0.5, 0.5, 0.5]], prim.cell.array, K_FCC, m)
    c = thz_per_sqrt_ev_a2_amu()
    np.testing.assert_allclose(f[0], c * np.sqrt(np.array([4, 4, 8]) * K_FCC / m), rtol=1e-12)
    np.testing.assert_allclose(f[1], c * np.sqrt(np.array([2, 2, 8]) * K_FCC / m), rtol=1e-12)


def test_fcc_spring_frequencies_equal_analytic_on_band_path_and_supercell_qpoints(fcc_phonon):
    bands = harmonic.band_structure(fcc_phonon, npoints=21)
    assert bands["path"][0][:3] == ["Γ", "X", "W"]           # ASE's standard fcc path
    q = np.concatenate([s["qpoints"] for s in bands["segments"]]
                       + [harmonic.commensurate_qpoints(fcc_phonon)])
    f_phonopy, _ = harmonic.phonons_at(fcc_phonon, q)
    m = fcc_phonon.primitive.masses[0]
    f_exact = fcc_analytic_frequencies(q, fcc_phonon.primitive.cell, K_FCC, m)
    assert len(q) > 150 and f_exact.max() > 6.5                # a real path, THz-scale modes
    assert np.abs(f_phonopy - f_exact).max() <= 1e-6


def test_classical_mode_sum_equals_pseudo_inverse_of_force_constants(fcc_phonon):
    """Classically ⟨u uᵀ⟩ = kT Φ⁺ (translations projected out): the mode sum over the supercell's
    q-points must equal it, whatever the eigenvectors' phase conventions."""
    t = 300.0
    msd = harmonic.phonopy_msd(fcc_phonon, harmonic.commensurate_qpoints(fcc_phonon), [t],
                               "classical", 0.01)[0, 0]
    n = len(fcc_phonon.supercell)
    phi = fcc_phonon.force_constants.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n)
    translations = np.kron(np.ones((n, 1)), np.eye(3)) / np.sqrt(n)
    project = np.eye(3 * n) - translations @ translations.T
    cov = constants.k / constants.e * t * np.linalg.pinv(project @ phi @ project, rcond=1e-10, hermitian=True)
    blocks = np.array([cov[3 * i:3 * i + 3, 3 * i:3 * i + 3] for i in range(n)])
    # 1e-6: ASE (CODATA 2014), phonopy and scipy (CODATA 2018) constants differ at 1e-7
    np.testing.assert_allclose(msd, blocks.mean(axis=0), rtol=1e-6, atol=1e-14)
    np.testing.assert_allclose(msd, np.eye(3) * msd[0, 0], atol=1e-12)     # cubic site
    assert msd[0, 0] > 1e-3


def test_quantum_mode_sum_equals_phonopy_thermal_displacement_matrices(fcc_phonon):
    temps = [20.0, 300.0]
    mine = harmonic.phonopy_msd(fcc_phonon, harmonic.full_mesh_qpoints([8, 8, 8]), temps, "quantum", 0.01)
    fcc_phonon.run_mesh([8, 8, 8], is_gamma_center=True, is_mesh_symmetry=False, with_eigenvectors=True)
    fcc_phonon.run_thermal_displacement_matrices(temperatures=temps, freq_min=0.01)
    theirs = np.array(fcc_phonon.thermal_displacement_matrices.thermal_displacement_matrices)
    np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=1e-15)
    # zero-point motion: at 20 K the quantum MSD is several times the classical one
    classical = harmonic.phonopy_msd(fcc_phonon, harmonic.full_mesh_qpoints([8, 8, 8]), temps, "classical", 0.01)
    assert mine[0, 0, 0, 0] > 3 * classical[0, 0, 0, 0]


def test_sampled_msd_equals_phonopy_within_three_standard_errors(fcc_phonon):
    sites = harmonic.SiteMap.of(fcc_phonon)
    comm = harmonic.commensurate_qpoints(fcc_phonon)
    for stat, t in (("classical", 300.0), ("quantum", 20.0)):
        sampler = harmonic.HarmonicSampler(fcc_phonon, stat)
        summary = sampler.summary()
        assert summary["excluded_by_reason"] == {"acoustic at Gamma": 3}
        u = sampler.sample(t, 400, seed=11)
        assert u.shape == (400, 64, 3)
        mean, se = harmonic.sample_msd(u, sites)
        expected = harmonic.phonopy_msd(fcc_phonon, comm, [t], stat, 0.01)[0][sites.primitive_of_unit]
        # the isotropic MSD within 3 standard errors; each of the 9 components within 4 (with
        # 9 comparisons at 3 each, about 1 seed in 40 fails by chance)
        per_sample_iso = np.einsum("kni,kni->k", u, u) / (3 * u.shape[1])
        iso_se = per_sample_iso.std(ddof=1) / np.sqrt(len(u))
        assert abs(np.trace(mean[0]) / 3 - np.trace(expected[0]) / 3) <= 3 * iso_se
        assert np.all(np.abs(mean - expected) <= 4 * se)
        assert np.all(se[0].diagonal() < 0.05 * expected[0].diagonal())   # a sharp test
    # and the two statistics differ by far more than the error bars at 20 K
    q_mean, q_se = harmonic.sample_msd(harmonic.HarmonicSampler(fcc_phonon, "quantum").sample(20.0, 100, seed=1), sites)
    c_mean, _ = harmonic.sample_msd(harmonic.HarmonicSampler(fcc_phonon, "classical").sample(20.0, 100, seed=1), sites)
    assert q_mean[0, 0, 0] - c_mean[0, 0, 0] > 20 * q_se[0, 0, 0]


def test_mode_energy_curve_follows_the_harmonic_parabola_for_springs(models):
    """From Python, no phonopy object given: the longitudinal mode at X, ω² = 8k/m."""
    prim = bulk("Ar", "fcc", a=A_FCC)
    calc = MLFFCalculator(models["fcc"])
    curve = harmonic.mode_energy_curve(calc, prim, [2, 2, 2], [0.5, 0.0, 0.5], 2,
                                       np.linspace(-0.05, 0.05, 5), displacement=1e-3)
    m = prim.get_masses()[0]
    assert curve.eigenvalue_eV_per_A2_amu == pytest.approx(8 * K_FCC / m, rel=1e-6)
    assert curve.degenerate_bands == [2]
    nonzero = curve.amplitudes_Q != 0
    np.testing.assert_allclose(curve.energy_eV[nonzero], curve.harmonic_eV[nonzero], rtol=1e-4)
    assert curve.well is None and curve.n_atoms_supercell == 8
    with pytest.raises(ValueError, match="not commensurate"):
        harmonic.mode_energy_curve(calc, prim, [2, 2, 2], [0.25, 0.0, 0.25], 0, [0.1])


# --------------------------------------------------------------------------------------------
# Force constants against a finite-difference Hessian (many-body model)
# --------------------------------------------------------------------------------------------
def test_force_constants_match_finite_difference_hessian(models, many_body_phonon):
    """phonopy (symmetry: 3 displaced atoms for 40) against -∂F_i/∂x_j by central differences
    with a different step, for every atom of the unit cell displaced (Cs, Pb, three Br)."""
    calc = MLFFCalculator(models["many_body"])
    fc = many_body_phonon.force_constants
    supercell = harmonic.to_ase_atoms(many_body_phonon.supercell)
    h = 2e-4
    worst = 0.0
    for j in many_body_phonon.supercell.u2s_map:
        for a in range(3):
            f = []
            for sign in (1.0, -1.0):
                displaced = supercell.copy()
                displaced.positions[j, a] += sign * h
                displaced.calc = calc
                f.append(displaced.get_forces())
            column = -(f[0] - f[1]) / (2 * h)                     # ∂²E/∂x_i∂x_ja, (N, 3)
            worst = max(worst, np.abs(fc[:, j, :, a] - column).max())
    assert worst <= 1e-5
    assert np.abs(fc).max() > 0.5


# --------------------------------------------------------------------------------------------
# Unstable model: imaginary modes listed, excluded, double well
# --------------------------------------------------------------------------------------------
def test_double_well_along_the_r_point_mode(models, many_body_phonon):
    calc = MLFFCalculator(models["many_body"])
    freqs, _ = harmonic.phonons_at(many_body_phonon, [0.5, 0.5, 0.5])
    assert freqs[0, 0] < -1.0                                    # THz: unstable at R
    small = harmonic.mode_energy_curve(calc, None, None, [0.5, 0.5, 0.5], 0, [-0.01, 0.0, 0.01],
                                       phonon=many_body_phonon)
    curvature = (small.energy_eV[0] + small.energy_eV[2]) / 0.01 ** 2
    assert small.eigenvalue_eV_per_A2_amu < 0
    assert curvature == pytest.approx(small.eigenvalue_eV_per_A2_amu, rel=1e-3)
    amps = harmonic.amplitude_grid(many_body_phonon, [0.5, 0.5, 0.5], 0, 1.2, 13)
    curve = harmonic.mode_energy_curve(calc, None, None, [0.5, 0.5, 0.5], 0, amps, phonon=many_body_phonon)
    assert curve.well is not None and not curve.well["at_edge_of_scan"]
    assert curve.max_displacement_A.max() == pytest.approx(1.2)
    k = np.argmin(curve.energy_eV)
    assert curve.energy_eV[k] > curve.harmonic_eV[k]            # the quartic term holds the well
    assert curve.energy_eV[-1] > 0                               # and the curve comes back up


def test_sampling_leaves_imaginary_modes_out(many_body_phonon):
    """Displacements have no component along an imaginary mode (phonopy alone would sample it
    with |f|), and a full one along the stable modes of the same q-point."""
    u = harmonic.HarmonicSampler(many_body_phonon, "classical").sample(300.0, 20, seed=2)
    masses = np.array(many_body_phonon.supercell.masses)
    freqs, _ = harmonic.phonons_at(many_body_phonon, [0.5, 0.5, 0.5])
    for band, f in enumerate(freqs[0]):
        pattern, _, _ = harmonic.phonon_mode_pattern(many_body_phonon, [0.5, 0.5, 0.5], band)
        amplitude = np.einsum("n,kni,ni->k", masses, u, pattern)       # Q, amu^½ Å
        if f < 0:
            assert np.abs(amplitude).max() < 1e-10
        else:
            assert np.sqrt(np.mean(amplitude ** 2)) > 0.1


def cli(argv):
    parser = argparse.ArgumentParser(prog="efg")
    harmonic_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_lists_imaginary_modes_and_excludes_them_from_thermal_properties(models, tmp_path, capsys):
    write(tmp_path / "POSCAR", cubic_perovskite(), format="vasp")
    out = tmp_path / "run" / "harmonic.json"
    with pytest.warns(harmonic.HarmonicWarning) as caught:
        rc = cli(["harmonic", "--potential", models["many_body"], "--structure", str(tmp_path / "POSCAR"),
                  "--supercell", "2", "2", "2", "--temperatures", "200:400:200", "--samples", "6",
                  "--efg-model", models["efg"], "--efg-samples", "3", "--isotope", "Br=81Br",
                  "--mesh", "6", "6", "6", "--band-points", "11", "--max-unstable-curves", "2",
                  "--mode-points", "5", "--mode", "0.5 0.5 0 0", "--no-progress", "-o", str(out)])
    warned = [str(w.message) for w in caught]
    assert rc == 0
    report = json.loads(out.read_text())
    printed = capsys.readouterr().out
    for name in ("bands_png", "msd_png", "modes_png", "phonopy_yaml"):
        assert (tmp_path / "run" / report["outputs"][name].split("/")[-1]).stat().st_size > 1000
    im = report["imaginary_modes"]

    # listed at special points, with frequencies equal to phonopy's own from the saved force sets
    reloaded = phonopy.load(report["outputs"]["phonopy_yaml"])
    tol = im["tolerance_THz"]
    listed = {p["label"]: p for p in im["special_points"]}
    assert {"R", "M", "Γ", "X"} <= set(listed)
    for point in listed.values():
        f = reloaded.run_qpoints([point["qpoint"]]).frequencies[0]
        imag = [m["frequency_THz"] for m in point["imaginary"]]
        np.testing.assert_allclose(imag, f[f < -tol], atol=1e-6)
    assert all(m["irrep"] in ("T1u", "T2u") for m in listed["Γ"]["imaginary"])
    assert "imaginary at R" in printed and "imaginary at M" in printed

    # not dynamically stable, and the lowest mode of the mesh is phonopy's lowest (Γ acoustic apart)
    assert im["dynamically_stable"] is False
    lowest = im["mesh"]["lowest_mode"]
    reloaded.run_mesh([6, 6, 6], is_gamma_center=True)
    assert lowest["frequency_THz"] == pytest.approx(reloaded.mesh.frequencies.min(), abs=1e-9)
    assert lowest["frequency_THz"] < -1.0
    assert "NOT dynamically stable: " in printed and f"lowest {lowest['frequency_THz']:.3f} THz" in printed

    # thermal properties: real modes only, with a warning that counts the others
    mesh = im["mesh"]
    reloaded.run_mesh([6, 6, 6], is_gamma_center=True)
    freqs, weights = reloaded.mesh.frequencies, reloaded.mesh.weights
    n_imag = int(((freqs < -tol) * weights[:, None]).sum())
    assert mesh["n_imaginary"] == n_imag > 0 and mesh["n_modes"] == 216 * 15
    assert len(mesh["modes"]) == int((freqs < -tol).sum())
    for text in (printed, " ".join(warned)):
        assert f"{n_imag} of 3240 phonon modes" in text and "excluded" in text
    n_real = int(((freqs > tol) * weights[:, None]).sum())
    tp = report["thermal_properties"]
    c_400 = tp["heat_capacity_J_per_K_mol"][-1]
    dulong_petit_real = n_real / 216 * constants.R              # J/K/mol of primitive cells
    assert 0.98 * dulong_petit_real < c_400 <= dulong_petit_real

    # sampling leaves out exactly the imaginary commensurate modes and the acoustic Γ modes
    n_comm_imag = sum(len(p["imaginary"]) for p in im["commensurate_qpoints"])
    for stat in ("classical", "quantum"):
        s = report["sampling"][stat]
        assert s["excluded_by_reason"] == {"imaginary": n_comm_imag, "acoustic at Gamma": 3}
        assert s["n_sampled"] == 120 - n_comm_imag - 3
        assert any(w.startswith(f"{stat} sampling: {n_comm_imag + 3} of 120 supercell modes are not sampled")
                   for w in warned)

    # energy scans: the two most unstable modes, the rest listed; the named M mode scanned too
    curves = report["mode_energy_curves"]
    assert [c["label"] for c in curves] == ["R", "Γ", "named"]
    assert curves[0]["frequency_THz"] == pytest.approx(listed["R"]["imaginary"][0]["frequency_THz"])
    assert len(report["mode_energy_curves_not_scanned"]) > 0
    efg = report["temperatures"][1]["quantum"]["efg"]
    assert efg["n_samples"] == 3 and efg["isotopes"] == {"Cs": "133Cs", "Pb": None, "Br": "81Br"}
    assert len(efg["sites"]["mean_tensor_voigt6"]["value"]) == 5
    assert efg["species"]["Pb"]["mean_cq_mhz"]["value"] is None


# --------------------------------------------------------------------------------------------
# EFG over harmonic samples (stable perovskite springs)
# --------------------------------------------------------------------------------------------
def test_efg_averages_over_samples(models):
    phonon = harmonic.build_phonopy(cubic_perovskite(), np.diag([2, 2, 2]))
    harmonic.compute_force_constants(phonon, MLFFCalculator(models["perovskite"]))
    sites = harmonic.SiteMap.of(phonon)
    sampler = harmonic.HarmonicSampler(phonon, "classical")
    assert sampler.summary()["excluded_by_reason"] == {"acoustic at Gamma": 3}
    u = sampler.sample(300.0, 60, seed=5)
    model, _ = load_model(models["efg"], kind="efg")
    supercell = harmonic.to_ase_atoms(phonon.supercell)
    efg = harmonic.evaluate_efg(model, supercell, u)
    isotopes = harmonic.site_isotopes(sites.symbols, {"Br": "79Br"})
    assert isotopes == {"Cs": "133Cs", "Pb": None, "Br": "79Br"}
    stats = harmonic.efg_statistics(efg, sites, isotopes)
    site = stats["sites"]

    # bookkeeping, recomputed independently: images of a site are the atoms at its position
    # plus a lattice vector of the input cell
    unit = cubic_perovskite()
    frac = supercell.get_positions() @ np.linalg.inv(unit.cell.array)
    for s in range(5):
        d = frac - unit.get_scaled_positions()[s]
        images = np.flatnonzero(np.all(np.abs(d - np.rint(d)) < 1e-8, axis=1))
        assert len(images) == 8
        v = efg[:, images]
        mean = v.mean(axis=(0, 1))
        np.testing.assert_allclose(site["mean_tensor_voigt6"]["value"][s], to_voigt6(mean), atol=1e-12)
        assert site["eta_of_mean_tensor"]["value"][s] == pytest.approx(float(eta(mean)), abs=1e-12)
        assert site["mean_eta"]["value"][s] == pytest.approx(float(eta(v).mean()), abs=1e-12)
        if unit[s].symbol == "Pb":                                  # no quadrupolar isotope
            assert np.isnan(site["mean_cq_mhz"]["value"][s]) and np.isnan(site["cq_of_mean_tensor_mhz"]["value"][s])
        else:
            q = 313.0 if unit[s].symbol == "Br" else -3.43          # mb, pyexport.nmr
            assert site["mean_cq_mhz"]["value"][s] == pytest.approx(float(cq_mhz(v, q).mean()), rel=1e-12)
            assert site["cq_of_mean_tensor_mhz"]["value"][s] == pytest.approx(float(cq_mhz(mean, q)), rel=1e-12)

    # physics of motional averaging: the 4/mmm Br site keeps eta(<V>) = 0 on average while the
    # instantaneous tensors are asymmetric; the m-3m Cs and Pb sites average to V = 0
    eta_of_mean, mean_eta = site["eta_of_mean_tensor"], site["mean_eta"]
    assert mean_eta["value"][2] > 10 * eta_of_mean["value"][2]
    assert mean_eta["value"][2] > 20 * mean_eta["error"][2]
    for s in (0, 1):
        v6, v6_err = site["mean_tensor_voigt6"]["value"][s], site["mean_tensor_voigt6"]["error"][s]
        assert np.all(np.abs(v6) <= 4 * v6_err)
        assert mean_eta["value"][s] > 0.1
    # the jackknife error of C_Q(<V>) is the propagated error of its principal component (x for Br_x)
    c = cq_mhz(np.diag([1.0, -0.5, -0.5]), 313.0)                # MHz per V/Å² along x
    assert site["cq_of_mean_tensor_mhz"]["error"][2] == pytest.approx(
        abs(c) * site["mean_tensor_voigt6"]["error"][2][0], rel=0.05)
    br = stats["species"]["Br"]
    assert br["n_sites"] == 3 and br["isotope"] == "79Br" and sum(br["histogram_eta"]["counts"]) == 60 * 24
    assert br["cq_of_mean_tensor_mhz"]["value"] == pytest.approx(np.mean(site["cq_of_mean_tensor_mhz"]["value"][2:]))
    assert stats["species"]["Pb"]["mean_cq_mhz"]["value"] is None

    # the static limit: at 0.01 K the averages are the EFG of the lattice
    static = predict_efg(model, [unit])[0]
    assert eta(static[2]) == pytest.approx(0.0, abs=1e-12)
    cold = harmonic.efg_statistics(harmonic.evaluate_efg(model, supercell, sampler.sample(0.01, 4, seed=1)),
                                   sites, isotopes)["sites"]
    np.testing.assert_allclose(cold["mean_tensor_voigt6"]["value"], to_voigt6(static), atol=1e-4)
    cq_static = float(cq_mhz(static[2], 313.0))
    assert cold["cq_of_mean_tensor_mhz"]["value"][2] == pytest.approx(cq_static, rel=1e-4)
    warm = site["cq_of_mean_tensor_mhz"]
    assert abs(warm["value"][2] - cq_static) > 10 * warm["error"][2]


# --------------------------------------------------------------------------------------------
# End to end: LAMMPS MD at low T against the harmonic MSD
# --------------------------------------------------------------------------------------------
MD_SCRIPT = """units metal
atom_style atomic
boundary p p p
atom_modify map array
read_data data.lmp
pair_style mlff
pair_coeff * * {model} Ar
velocity all create {t2} 4928459 mom yes rot no dist gaussian
fix nve all nve
fix thermostat all langevin {t} {t} 0.2 4242 zero yes
timestep 0.002
thermo 1000
run 500
dump traj all custom 20 md.dump id type xu yu zu
dump_modify traj sort id
run 10000
"""


def test_md_msd_at_low_temperature_equals_harmonic_msd(models, tmp_path):
    """pair_style mlff + Langevin (zero net force, so the centre of mass stays put) at 30 K on a
    3x3x3 conventional fcc cell; the dump read with pyexport.lammps.dump; MSD about the lattice positions,
    centre-of-mass motion removed, 10 blocks for the error. The harmonic answer: classical
    statistics on the MD cell's q-points, acoustic Γ modes out (the COM does not move)."""
    t = 30.0
    cell = bulk("Ar", "fcc", a=A_FCC, cubic=True)
    atoms = cell.repeat(3)
    write_lammps_data(tmp_path / "data.lmp", atoms, ["Ar"])
    run_lammps(MD_SCRIPT.format(model=models["fcc"], t=t, t2=2 * t), tmp_path)

    lattice, masses = atoms.get_positions(), atoms.get_masses()
    msd = []
    for frame in iread(tmp_path / "md.dump", types=["Ar"]):
        u = frame.positions - lattice
        u -= masses @ u / masses.sum()
        msd.append(np.mean(u ** 2))
    msd = np.array(msd)
    assert len(msd) == 501
    blocks = msd[1:].reshape(10, -1).mean(axis=1)
    md_mean, md_se = blocks.mean(), blocks.std(ddof=1) / np.sqrt(len(blocks))

    phonon = harmonic.build_phonopy(cell, np.diag([3, 3, 3]))
    harmonic.compute_force_constants(phonon, MLFFCalculator(models["fcc"]))
    expected = harmonic.phonopy_msd(phonon, harmonic.commensurate_qpoints(phonon), [t], "classical", 0.01)
    expected_iso = np.trace(expected[0, 0]) / 3
    assert abs(md_mean - expected_iso) <= 3 * md_se
    assert md_se < 0.03 * expected_iso


# --------------------------------------------------------------------------------------------
# CsPbBr3 with the shipped potential: the orthorhombic ground state (the MD's low-T phase) is
# a minimum with every mode real; the cubic phase is a saddle with imaginary R and M modes
# --------------------------------------------------------------------------------------------
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "cspbbr3"


@pytest.fixture(scope="module")
def cspbbr3_phases(tmp_path_factory):
    """The orthorhombic (Pnma, 40 atoms) and cubic ground states of the reference set, as
    relaxed by 7net-0 (not by the fitted potential), as VASP files."""
    text = lzma.decompress((EXAMPLE / "reference" / "cspbbr3_7net0.extxyz.xz").read_bytes()).decode()
    d = tmp_path_factory.mktemp("cspbbr3")
    (d / "all.xyz").write_text(text)
    frames = [a for a in read(d / "all.xyz", index=":") if a.info.get("config_type") == "phase_min"]
    paths = {}
    for phase in ("orthorhombic", "cubic"):
        paths[phase] = d / f"{phase}.vasp"
        write(paths[phase], next(a for a in frames if a.info.get("phase") == phase), format="vasp", direct=True)
    return paths


def test_orthorhombic_ground_state_of_the_shipped_potential_has_only_real_modes(models, cspbbr3_phases,
                                                                                tmp_path, capsys):
    """examples/cspbbr3/potential.pt (read as it is now: a refit replaces it) on the 7net-0
    ground state: relaxed first (its residual forces with the fitted potential are ~1e-2 eV/Å),
    then phonopy in the MD's own 320-atom cell: no imaginary mode on the mesh, at the
    commensurate q-points or on the band path, and the thermal quantities of the cubic case."""
    potential = EXAMPLE / "potential.pt"
    out = tmp_path / "harmonic_ortho.json"
    rc = cli(["harmonic", "--potential", str(potential), "--structure", str(cspbbr3_phases["orthorhombic"]),
              "--relax", "1e-4", "--supercell", "2", "2", "2", "--temperatures", "100:200:100",
              "--samples", "20", "--efg-model", models["efg"], "--efg-samples", "4", "--mesh", "6", "6", "6",
              "--band-points", "11", "--threads", "1", "--no-progress", "-o", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    printed = capsys.readouterr().out

    # the relaxation reached a force minimum at zero pressure, Pnma kept; checked afresh
    relaxed = read(report["outputs"]["relaxed_structure"])
    relaxed.calc = MLFFCalculator(str(potential))
    assert np.abs(relaxed.get_forces()).max() <= 1e-4
    relaxation = report["relaxation"]
    assert np.abs(relaxed.get_stress()).max() / units.GPa <= relaxation["stress_tolerance_GPa"]
    assert relaxation["steps"] > 0 and relaxation["before"]["max_force_eV_per_A"] > 1e-3
    assert relaxation["before"]["space_group"] == relaxation["after"]["space_group"] == "Pnma (62)"
    assert report["structure"]["space_group"] == "Pnma (62)"
    assert report["structure"]["n_atoms_supercell"] == 320 and report["structure"]["n_atoms_primitive"] == 20
    assert "relaxed with the potential" in printed

    # every mode real: on the mesh (checked with phonopy from the saved force constants), at the
    # commensurate q-points and on the band path; the lowest mode is phonopy's lowest
    im = report["imaginary_modes"]
    assert im["dynamically_stable"] is True
    assert im["mesh"]["n_imaginary"] == 0 and not im["commensurate_qpoints"] and not im["special_points"]
    reloaded = phonopy.load(report["outputs"]["phonopy_yaml"])
    reloaded.run_mesh([6, 6, 6], is_gamma_center=True)
    freqs = np.sort(reloaded.mesh.frequencies.ravel())
    assert np.abs(freqs[:3]).max() < im["tolerance_THz"]         # the acoustic modes at Γ
    lowest = im["mesh"]["lowest_mode"]
    assert lowest["frequency_THz"] == pytest.approx(freqs[3], abs=1e-9)
    assert lowest["frequency_THz"] > 0.05                       # THz: real, not a zero within noise
    assert im["band_path_min_frequency_THz"] > -im["tolerance_THz"]
    assert "dynamically stable: every mode real on the 6x6x6 mesh" in printed
    for stat in ("classical", "quantum"):
        assert report["sampling"][stat]["excluded_by_reason"] == {"acoustic at Gamma": 3}

    # the thermal quantities of the cubic case: MSD per site (all three species), EFG samples
    hot, cold = report["temperatures"][1]["classical"], report["temperatures"][0]["classical"]
    symbols = np.array([s["symbol"] for s in report["structure"]["sites"]])
    msd = np.trace(np.array(hot["msd_phonopy_mesh_A2"]), axis1=1, axis2=2) / 3
    assert set(symbols) == {"Cs", "Pb", "Br"} and np.all(msd > 0)
    # classical MSD is linear in T: 200 K is twice 100 K
    np.testing.assert_allclose(np.array(hot["msd_phonopy_mesh_A2"]), 2 * np.array(cold["msd_phonopy_mesh_A2"]),
                               rtol=1e-10, atol=1e-14)
    # the sampled MSD agrees with phonopy's on the same (supercell) q-points
    sampled, se = (np.trace(np.array(hot[k]), axis1=1, axis2=2) / 3 for k in ("msd_samples_A2", "msd_samples_se_A2"))
    exact = np.trace(np.array(hot["msd_phonopy_supercell_A2"]), axis1=1, axis2=2) / 3
    assert np.all(np.abs(sampled - exact) <= 5 * se + 1e-12)
    efg = report["temperatures"][1]["quantum"]["efg"]
    assert efg["n_samples"] == 4 and set(efg["species"]) == {"Cs", "Pb", "Br"}
    assert efg["species"]["Br"]["abs_cq_of_mean_tensor_mhz"]["value"] > 0


def test_cubic_phase_of_the_shipped_potential_reports_its_unstable_modes(cspbbr3_phases, tmp_path):
    """The cubic 2x2x2 cell (40 atoms: R and M are commensurate), relaxed with the same potential
    (only its lattice parameter can move): a saddle point. R (triple) and M are listed as imaginary, with their q-points and frequencies,
    and left out of the sampling, not dropped silently."""
    with pytest.warns(harmonic.HarmonicWarning) as caught:
        report = harmonic.run_harmonic(EXAMPLE / "potential.pt", cspbbr3_phases["cubic"], [1, 1, 1],
                                       tmp_path / "harmonic_cubic.json", temperatures="600", n_samples=4,
                                       mesh=[4, 4, 4], band_points=11, max_unstable_curves=0, relax=1e-4,
                                       threads=1, progress=False, plots=False)
    assert any("phonon modes on the 4x4x4 mesh are imaginary" in str(w.message) for w in caught)
    assert report["structure"]["space_group"] == "Pm-3m (221)"
    assert report["relaxation"]["after"]["max_force_eV_per_A"] <= 1e-4
    im = report["imaginary_modes"]
    assert im["dynamically_stable"] is False
    points = {p["label"]: p for p in im["special_points"]}
    assert {"R", "M"} <= set(points)
    r_modes = points["R"]["imaginary"]
    assert len(r_modes) == 3 and r_modes[0]["degenerate_bands"] == [0, 1, 2]   # the tilt triplet
    np.testing.assert_allclose(points["R"]["qpoint"], [0.5, 0.5, 0.5])
    assert all(m["frequency_THz"] < -0.1 for p in points.values() for m in p["imaginary"])
    assert im["mesh"]["lowest_mode"]["frequency_THz"] < -0.1 and im["mesh"]["n_imaginary"] > 0
    n_imaginary = sum(len(p["imaginary"]) for p in im["commensurate_qpoints"])
    assert report["sampling"]["classical"]["excluded_by_reason"] == {"imaginary": n_imaginary,
                                                                     "acoustic at Gamma": 3}


def test_relaxation_keeps_the_space_group_and_stops_at_the_tolerance(cspbbr3_phases):
    calc = MLFFCalculator(str(EXAMPLE / "potential.pt"))
    start = read(cspbbr3_phases["orthorhombic"])
    fixed, summary = relax_structure(start, calc, 1e-3, relax_cell=False)
    np.testing.assert_allclose(fixed.cell.array, start.cell.array, atol=1e-10)   # FixSymmetry: 1e-15
    assert summary["max_atomic_shift_A"] > 1e-3 and summary["stress_tolerance_GPa"] is None
    fixed.calc = calc
    assert np.abs(fixed.get_forces()).max() <= 1e-3
    again, summary = relax_structure(fixed, calc, 1e-3, relax_cell=False)        # already there
    assert summary["steps"] == 0 and np.array_equal(again.positions, fixed.positions)
    with pytest.raises(RuntimeError, match=r"ortho.*did not reach max force 1e-06 eV/Å within 2 BFGS steps"):
        relax_structure(start, calc, 1e-6, max_steps=2, where="ortho")


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------
def test_bad_input_fails_before_any_work(models, tmp_path):
    out = tmp_path / "h.json"
    nacl = bulk("NaCl", "rocksalt", a=5.6)
    write(tmp_path / "NaCl.vasp", nacl, format="vasp")
    with pytest.raises(ValueError, match=r"NaCl.vasp.*\['Cl', 'Na'\].*not in the model"):
        harmonic.run_harmonic(models["fcc"], tmp_path / "NaCl.vasp", [2, 2, 2], out)

    slab = bulk("Ar", "fcc", a=A_FCC, cubic=True)
    slab.pbc = [True, True, False]
    write(tmp_path / "slab.extxyz", slab)
    with pytest.raises(ValueError, match=r"slab.extxyz.*periodic in 3D"):
        harmonic.run_harmonic(models["fcc"], tmp_path / "slab.extxyz", [2, 2, 2], out)

    write(tmp_path / "Ar.vasp", bulk("Ar", "fcc", a=A_FCC), format="vasp")
    with pytest.raises(ValueError, match=r"Ar.vasp.*\['Ar'\].*point_charge_efg.pt"):
        harmonic.run_harmonic(models["fcc"], tmp_path / "Ar.vasp", [2, 2, 2], out, efg_model=models["efg"])
    with pytest.raises(ValueError, match="temperatures"):
        harmonic.run_harmonic(models["fcc"], tmp_path / "Ar.vasp", [2, 2, 2], out, temperatures="0:100:50")
    with pytest.raises(ValueError, match="not commensurate"):
        harmonic.run_harmonic(models["fcc"], tmp_path / "Ar.vasp", [2, 2, 2], out,
                              modes=[harmonic.NamedMode((0.25, 0.0, 0.0), 0)])
    with pytest.raises(FileNotFoundError):
        harmonic.run_harmonic(models["fcc"], tmp_path / "missing.vasp", [2, 2, 2], out)
    assert not out.exists()
    assert list(harmonic.parse_temperatures("100:500:50")) == list(range(100, 501, 50))
