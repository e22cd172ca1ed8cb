"""Harmonic canonical sampling of the supercell at T (phonopy's ``RandomDisplacements``), with
imaginary, acoustic-at-Γ and zero modes left out, and the MSD of the samples.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .force_constants import DEFAULT_IMAGINARY_TOLERANCE_THZ, STATISTICS, SiteMap
from .msd import included_modes


class HarmonicSampler:
    """Thermally displaced supercells from phonopy's ``RandomDisplacements`` with imaginary modes,
    the acoustic modes at Γ and near-zero modes (|f| ≤ tolerance) left out.

    ``excluded`` lists every commensurate mode left out: q-point, band, frequency, reason and
    multiplicity (2 for a q-point whose -q is a different point: the pair is one entry).
    """

    def __init__(self, phonon, statistics: str, tolerance: float = DEFAULT_IMAGINARY_TOLERANCE_THZ):
        if statistics not in STATISTICS:
            raise ValueError(f"statistics must be one of {STATISTICS}, got {statistics!r}")
        self.statistics = statistics
        phonon.init_random_displacements(dist_func=statistics, cutoff_frequency=tolerance)
        self.random_displacements = phonon.random_displacements
        self._masses = np.array(phonon.supercell.masses)
        qpoints = np.array(self.random_displacements.qpoints)
        freqs = np.array(self.random_displacements.frequencies)
        keep = included_modes(qpoints, freqs, tolerance)
        self.excluded = []
        for i, b in zip(*np.nonzero(~keep)):
            q, f = qpoints[i], float(freqs[i, b])
            gamma = np.allclose(q - np.rint(q), 0.0, atol=1e-8)
            reason = ("imaginary" if f < -tolerance else
                      "acoustic at Gamma" if gamma and b in np.argsort(np.abs(freqs[i]))[:3] else
                      "zero frequency")
            self_conjugate = np.allclose(2 * q - np.rint(2 * q), 0.0, atol=1e-8)
            self.excluded.append({"qpoint": q, "band_index": int(b), "frequency_THz": f,
                                  "reason": reason, "multiplicity": 1 if self_conjugate else 2})
        # phonopy samples |f| for imaginary modes; zero frequency takes a mode out. The frequencies
        # setter is RandomDisplacements' documented way to change the modes it samples (it stores
        # them as eigenvalues); nothing private of phonopy is touched.
        self.random_displacements.frequencies = np.where(keep, freqs, 0.0)
        self.n_modes = 3 * len(self._masses)
        self.n_excluded = sum(e["multiplicity"] for e in self.excluded)

    def sample(self, temperature: float, n_samples: int, seed: Optional[int] = None) -> np.ndarray:
        """(n_samples, N_sc, 3) displacements (Å) drawn at ``temperature`` K."""
        self.random_displacements.run(float(temperature), number_of_snapshots=int(n_samples), random_seed=seed)
        return np.array(self.random_displacements.u)

    def summary(self) -> dict:
        reasons = {}
        for e in self.excluded:
            reasons[e["reason"]] = reasons.get(e["reason"], 0) + e["multiplicity"]
        return {"statistics": self.statistics, "n_modes": self.n_modes,
                "n_sampled": self.n_modes - self.n_excluded, "n_excluded": self.n_excluded,
                "excluded_by_reason": reasons, "excluded_modes": self.excluded,
                "note": "imaginary modes, the three acoustic modes at Gamma and modes with "
                        "|f| <= tolerance are not sampled (zero amplitude)"}


def sample_msd(displacements: np.ndarray, sites: SiteMap) -> Tuple[np.ndarray, np.ndarray]:
    """Per-site mean-square displacement tensors from samples: (mean, standard error), each
    (n_sites, 3, 3) Å². Each sample is averaged over the images of a site first; the standard
    error is over the (independent) samples."""
    w = sites.averaging_matrix()
    per_sample = np.einsum("sn,kni,knj->ksij", w, displacements, displacements)
    return per_sample.mean(axis=0), _standard_error(per_sample)


def _standard_error(x: np.ndarray) -> np.ndarray:
    n = x.shape[0]
    if n < 2:
        return np.full(x.shape[1:], np.nan)
    return x.std(axis=0, ddof=1) / np.sqrt(n)
