"""Energy along a phonon mode: the real displacement pattern of a mode at a commensurate q,
the potential's energy along it next to the harmonic parabola ½ω²Q², and which unstable modes
to scan (one per degenerate set and q-star).

Normal-mode amplitudes Q in amu^½·Å (E = ½ω²Q²), energies in eV.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
from ase import Atoms

from pyexport.scan import energies_along

from .bands import degenerate_sets
from .force_constants import (DEFAULT_DISPLACEMENT_A, SiteMap, build_phonopy,
                              compute_force_constants, eigenvalue_from_frequency, phonons_at,
                              phonopy_supercell_matrix_of_primitive, to_ase_atoms)
from .inputs import check_periodic, parse_supercell_matrix


@dataclass
class ModeEnergyCurve:
    """Energy of the supercell displaced along one phonon mode.

    ``amplitudes_Q`` (n,) amu^½·Å: displacement ``u = Q · pattern`` with
    ``Σ_i m_i |pattern_i|² = 1``; ``max_displacement_A`` (n,) Å: the largest atomic displacement
    at each Q; ``energy_eV`` (n,) potential energy of the supercell minus that at Q = 0;
    ``harmonic_eV`` (n,) = ½ ω² Q² with ω² = ``eigenvalue_eV_per_A2_amu`` (negative for an
    imaginary mode).
    """

    qpoint: List[float]
    band_index: int
    frequency_THz: float
    eigenvalue_eV_per_A2_amu: float
    degenerate_bands: List[int]
    n_atoms_supercell: int
    amplitudes_Q: np.ndarray
    max_displacement_A: np.ndarray
    energy_eV: np.ndarray
    harmonic_eV: np.ndarray
    label: Optional[str] = None
    well: Optional[dict] = field(default=None)

    def as_dict(self) -> dict:
        return asdict(self)


def phonon_mode_pattern(phonon, qpoint, band_index: int) -> Tuple[np.ndarray, float, List[int]]:
    """Real displacement pattern (N_sc, 3) of mode ``band_index`` at ``qpoint`` in
    ``phonon``'s supercell, normalised to Σ m |pattern|² = 1 (Å per amu^½·Å), with the mode's
    frequency (THz) and its degenerate set. Raises for a q-point not commensurate with the
    supercell."""
    q = np.asarray(qpoint, dtype=float)
    smat = phonopy_supercell_matrix_of_primitive(phonon)
    if not np.allclose(smat @ q, np.rint(smat @ q), atol=1e-6):
        raise ValueError(f"q-point {q.tolist()} is not commensurate with the supercell "
                         f"(supercell = {smat.tolist()} x primitive cell); choose a supercell "
                         f"in which it is")
    freqs, vecs = phonons_at(phonon, q, with_eigenvectors=True)
    n_band = freqs.shape[1]
    if not 0 <= band_index < n_band:
        raise ValueError(f"band index {band_index} out of range 0..{n_band - 1}")
    sc, prim = phonon.supercell, phonon.primitive
    sites = SiteMap.of(phonon)
    p_of_s = sites.primitive_of_unit[sites.unit_of_supercell]
    masses = np.array(sc.masses)
    frac = np.array(sc.positions) @ np.linalg.inv(prim.cell)        # primitive fractional coords
    e = vecs[0][:, band_index].reshape(-1, 3)
    # phonopy's dynamical matrix carries the phase of the atomic positions (not of the cell
    # origin), so the mode of atom s is e_p(s) exp(2πi q·r_s) / sqrt(m_s).
    z = e[p_of_s] * np.exp(2j * np.pi * (frac @ q))[:, None] / np.sqrt(masses)[:, None]
    # The real pattern of largest norm: Re(e^{-iφ} z) with e^{2iφ} = Σ z² / |Σ z²|.
    s = np.sum(z * z)
    phase = np.exp(-0.5j * np.angle(s)) if abs(s) > 1e-12 * np.sum(np.abs(z) ** 2) else 1.0
    pattern = (phase * z).real
    pattern /= np.sqrt(np.sum(masses[:, None] * pattern ** 2))
    f = freqs[0]
    deg = next(d for d in degenerate_sets(f) if band_index in d)
    return pattern, float(f[band_index]), deg


def mode_energy_curve(calc, primitive: Optional[Atoms], supercell_matrix, qpoint, band_index: int,
                      amplitudes, *, phonon=None, displacement: float = DEFAULT_DISPLACEMENT_A,
                      label: Optional[str] = None) -> ModeEnergyCurve:
    """Potential energy along a phonon eigenvector, next to the harmonic parabola ½ω²Q².

    ``calc``: ASE calculator of the potential (e.g. :class:`pyexport.calculator.MLFFCalculator`).
    ``primitive``: the cell ``qpoint`` refers to (fractional coordinates of its reciprocal
    lattice); ``supercell_matrix`` (3 ints or 3x3, ASE convention: supercell rows =
    matrix @ primitive rows) must make ``qpoint`` commensurate. ``band_index``: 0-based, bands
    in ascending frequency at ``qpoint`` (imaginary first). ``amplitudes``: normal-mode
    amplitudes Q (amu^½·Å). The force constants are computed here by finite displacements of
    ``displacement`` Å, unless ``phonon``, a Phonopy object whose force constants were computed
    with this potential, is given (``primitive`` and ``supercell_matrix`` are then taken from it
    and may be None). For a double well, ``well`` holds the lowest point of the curve.
    """
    if phonon is None:
        if primitive is None or supercell_matrix is None:
            raise ValueError("mode_energy_curve: give primitive and supercell_matrix, or phonon")
        check_periodic(primitive, "primitive")
        phonon = build_phonopy(primitive, parse_supercell_matrix(supercell_matrix),
                               primitive_matrix=np.eye(3))
        compute_force_constants(phonon, calc, displacement)
    pattern, frequency, deg = phonon_mode_pattern(phonon, qpoint, band_index)
    supercell = to_ase_atoms(phonon.supercell)
    amplitudes = np.asarray(amplitudes, dtype=float)
    supercell.calc = calc
    e0 = supercell.get_potential_energy()
    energies = energies_along(supercell, pattern, amplitudes, calc) - e0
    lam = float(eigenvalue_from_frequency(frequency))
    curve = ModeEnergyCurve(
        qpoint=[float(x) for x in np.asarray(qpoint, dtype=float)], band_index=int(band_index),
        frequency_THz=frequency, eigenvalue_eV_per_A2_amu=lam, degenerate_bands=deg,
        n_atoms_supercell=len(supercell), amplitudes_Q=amplitudes,
        max_displacement_A=np.abs(amplitudes) * np.linalg.norm(pattern, axis=1).max(),
        energy_eV=energies, harmonic_eV=0.5 * lam * amplitudes ** 2, label=label)
    k = int(np.argmin(energies))
    if energies[k] < 0.0:
        curve.well = {"amplitude_Q": float(amplitudes[k]), "max_displacement_A": float(curve.max_displacement_A[k]),
                      "depth_eV_per_supercell": float(-energies[k]),
                      "depth_meV_per_primitive_cell": float(-energies[k] * 1e3 * len(phonon.primitive) / len(supercell)),
                      "at_edge_of_scan": k in (0, len(amplitudes) - 1)}
    return curve


def amplitude_grid(phonon, qpoint, band_index: int, max_displacement: float, n_points: int) -> np.ndarray:
    """Symmetric grid of Q (amu^½·Å) whose largest atomic displacement is ``max_displacement`` Å."""
    pattern, _, _ = phonon_mode_pattern(phonon, qpoint, band_index)
    q_max = max_displacement / np.linalg.norm(pattern, axis=1).max()
    return np.linspace(-q_max, q_max, n_points)


def unstable_modes_for_curves(phonon, commensurate: List[dict], special_points: Dict[str, np.ndarray]
                              ) -> List[Tuple[np.ndarray, int, Optional[str], float]]:
    """(q, band, label, frequency THz): one imaginary mode per degenerate set per q-star among
    the commensurate q-points (stars from the primitive cell's point group and time reversal).
    ``label`` names the special point of the star, if any. Special points come first (R and M of
    a cubic perovskite), then the other q-points; each group most unstable first."""
    rotations = np.array(phonon.primitive_symmetry.pointgroup_operations)
    seen: List[np.ndarray] = []
    out = []
    for entry in commensurate:
        if not entry["imaginary"]:
            continue
        q = np.asarray(entry["qpoint"], dtype=float)
        if any(_same_star(q, s, rotations) for s in seen):
            continue
        seen.append(q)
        label = next((name for name, p in special_points.items() if _same_star(q, p, rotations)), None)
        first = {m["degenerate_bands"][0]: m["frequency_THz"] for m in entry["imaginary"]}
        out.extend((q, band, label, f) for band, f in first.items())
    return sorted(out, key=lambda item: (item[2] is None, item[3]))


def _same_star(q1: np.ndarray, q2: np.ndarray, rotations: np.ndarray) -> bool:
    for r in rotations:
        for sign in (1.0, -1.0):
            d = sign * (q1 @ r) - q2
            if np.allclose(d, np.rint(d), atol=1e-6):
                return True
    return False
