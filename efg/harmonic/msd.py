"""Mean-square displacement tensors ⟨u uᵀ⟩ (Å²) per site from the phonon modes, classical or
quantum statistics: on the supercell's q-points (what the samples converge to) and on a mesh.
"""
from __future__ import annotations

import numpy as np
from ase import units

from .force_constants import STATISTICS, angular_frequency_ase, phonons_at


def mode_variance(frequency_thz, temperature: float, statistics: str) -> np.ndarray:
    """⟨Q²⟩ of a harmonic normal mode (amu Å²) at ``temperature`` K: classical kT/ω², quantum
    ħ/(2ω) coth(ħω/2kT). ``frequency_thz`` must be positive."""
    omega = angular_frequency_ase(frequency_thz)
    kt = units.kB * temperature
    if statistics == "classical":
        return kt / omega ** 2
    if statistics == "quantum":
        hbar = units._hbar / units._e * units.s    # eV × ASE time
        x = hbar * omega / (2.0 * kt)
        return hbar / (2.0 * omega) / np.tanh(x)
    raise ValueError(f"statistics must be one of {STATISTICS}, got {statistics!r}")


def included_modes(qpoints: np.ndarray, frequencies: np.ndarray, tolerance: float) -> np.ndarray:
    """(n_q, n_band) bool: modes that enter MSD sums and sampling: f > tolerance, and not one of
    the three acoustic modes at Γ (the three of smallest |f| there)."""
    keep = frequencies > tolerance
    for i, q in enumerate(np.reshape(qpoints, (-1, 3))):
        if np.allclose(q - np.rint(q), 0.0, atol=1e-8):
            keep[i, np.argsort(np.abs(frequencies[i]))[:3]] = False
    return keep


def msd_from_modes(qpoints, frequencies, eigenvectors, masses, temperatures, statistics: str,
                   tolerance: float, weights=None) -> np.ndarray:
    """Mean-square displacement tensors (n_T, n_prim, 3, 3) Å² of the primitive atoms:
    ``Σ_q w_q Σ_ν ⟨Q²⟩ Re(e e†) / (m Σ_q w_q)`` over the included modes (:func:`included_modes`).
    ``eigenvectors`` (n_q, 3 n_prim, n_band), columns; ``masses`` (n_prim,) amu."""
    qpoints = np.reshape(qpoints, (-1, 3))
    frequencies = np.asarray(frequencies)
    n_q, n_band = frequencies.shape
    weights = np.ones(n_q) if weights is None else np.asarray(weights, dtype=float)
    keep = included_modes(qpoints, frequencies, tolerance)
    safe = np.where(keep, frequencies, 1.0)
    n_prim = len(masses)
    e = np.asarray(eigenvectors).reshape(n_q, n_prim, 3, n_band)
    outer = np.einsum("qpab,qpcb->qbpac", e, e.conj()).real       # (n_q, n_band, n_prim, 3, 3)
    out = np.zeros((len(temperatures), n_prim, 3, 3))
    for it, t in enumerate(temperatures):
        var = np.where(keep, mode_variance(safe, t, statistics), 0.0) * weights[:, None]
        out[it] = np.einsum("qb,qbpac->pac", var, outer)
    return out / (np.asarray(masses, dtype=float)[None, :, None, None] * weights.sum())


def phonopy_msd(phonon, qpoints, temperatures, statistics: str, tolerance: float) -> np.ndarray:
    """:func:`msd_from_modes` with phonopy's eigenvectors at ``qpoints`` (full set, equal
    weights): (n_T, n_prim, 3, 3) Å²."""
    freqs, vecs = phonons_at(phonon, qpoints, with_eigenvectors=True)
    return msd_from_modes(qpoints, freqs, vecs, phonon.primitive.masses, temperatures, statistics,
                          tolerance)


def full_mesh_qpoints(mesh_numbers) -> np.ndarray:
    """All q-points of a Γ-centred mesh (no symmetry reduction), primitive reciprocal basis."""
    n = np.asarray(mesh_numbers, dtype=int)
    grid = np.stack(np.meshgrid(*[np.arange(k) for k in n], indexing="ij"), axis=-1).reshape(-1, 3)
    q = grid / n
    return q - np.rint(q)
