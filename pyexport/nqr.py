"""Pure nuclear quadrupole resonance (NQR): the transition frequencies of a nucleus of spin I in
an electric-field gradient with coupling constant C_Q and asymmetry eta, at zero magnetic field.

The quadrupole Hamiltonian in frequency units, in the principal frame of the EFG
(:mod:`pyexport.nmr` conventions: ``|V_zz| ≥ |V_yy| ≥ |V_xx|``, ``C_Q = e Q V_zz / h``,
``eta = (V_xx − V_yy) / V_zz``), is

    H_Q / h = C_Q / (4 I (2I − 1)) · [3 I_z² − I(I + 1) + eta (I_x² − I_y²)],

with ``I_x² − I_y² = (I_+² + I_−²) / 2``. It couples m only to m ± 2, so its matrix splits into
the two blocks ``m = I, I − 2, ...`` and ``m = I − 1, I − 3, ...``. For half-integer I the two
blocks are time-reversal (Kramers) partners with the same spectrum: every level is a doublet,
and one block of I + 1/2 states gives the doublet energies, which are diagonalised here exactly
(no series in eta).

Lines returned (:func:`nqr_frequencies_mhz`):

- half-integer I ≥ 3/2: the I − 1/2 transitions between neighbouring doublets, the ones that
  are ``±m ↔ ±(m+1)`` at eta = 0 and keep their label by continuity (doublets of one block never
  cross: von Neumann–Wigner). They are ordered by transition, ``±1/2↔±3/2``, ``±3/2↔±5/2``, ...:
  ascending in frequency for I = 3/2 and 5/2 (ν1 ≤ ν2, equal at eta = 1), but not always for
  I ≥ 7/2, where the lowest transition overtakes the next one above eta ≈ 0.585 (I = 7/2) or
  0.380 (I = 9/2). The weak "forbidden" lines between non-neighbouring doublets that eta > 0
  allows (ν1 + ν2, ...) are not returned.
  I = 3/2: one line, ``|C_Q|/2 · sqrt(1 + eta²/3)``. I = 5/2 at eta = 0: 3|C_Q|/20 and 3|C_Q|/10.
- I = 1 (²H, ¹⁴N): three non-degenerate levels, lines ``(ν0, ν−, ν+) = (eta/2, 3/4 (1 − eta/3),
  3/4 (1 + eta/3)) · |C_Q|``, ascending for eta ≤ 1.
- integer I ≥ 2 is refused (no such isotope in :data:`pyexport.nmr.NUCLEAR_SPINS`).

The lines depend on |C_Q| only (−H has the mirrored spectrum): the sign of C_Q, which NQR
cannot see, is dropped here and kept by :func:`pyexport.nmr.cq_mhz`.
"""
from functools import lru_cache
from typing import Tuple

import numpy as np


def _checked_spin(spin) -> float:
    spin = float(spin)
    twice = 2.0 * spin
    if not np.isfinite(spin) or abs(twice - round(twice)) > 1e-9 or spin < 1.0:
        raise ValueError(f"spin {spin}: NQR needs a nuclear spin I ≥ 1 in steps of 1/2 "
                         f"(I = 0 and 1/2 have no quadrupole moment)")
    if round(twice) % 2 == 0 and round(spin) >= 2:
        raise ValueError(f"spin {spin}: NQR lines of integer spins I ≥ 2 are not implemented "
                         f"(every isotope of pyexport.nmr.NUCLEAR_SPINS has I = 1 or half-integer)")
    return round(twice) / 2.0


def n_lines(spin) -> int:
    """Number of NQR lines :func:`nqr_frequencies_mhz` returns for spin I: I − 1/2 for
    half-integer I, 3 for I = 1."""
    spin = _checked_spin(spin)
    return 3 if spin == 1.0 else int(round(spin - 0.5))


def transition_labels(spin) -> Tuple[str, ...]:
    """Names of the lines of :func:`nqr_frequencies_mhz`, in its order: ``"±1/2↔±3/2"``, ...
    for half-integer I; ``"ν0", "ν−", "ν+"`` for I = 1."""
    spin = _checked_spin(spin)
    if spin == 1.0:
        return ("ν0", "ν−", "ν+")
    return tuple(f"±{2 * k + 1}/2↔±{2 * k + 3}/2" for k in range(n_lines(spin)))


@lru_cache(maxsize=None)
def _hamiltonian_parts(spin: float) -> Tuple[np.ndarray, np.ndarray]:
    """(D, X) with H_Q / (h C_Q) = D + eta X on the states the lines need: for half-integer I the
    block m = I, I − 2, ..., −I + 1 (one state of each doublet); for I = 1 all three states."""
    states = (np.arange(spin, -spin - 1e-9, -2.0) if spin != 1.0 else np.array([1.0, 0.0, -1.0]))
    scale = 1.0 / (4.0 * spin * (2.0 * spin - 1.0))
    j2 = spin * (spin + 1.0)
    diagonal = np.diag(scale * (3.0 * states ** 2 - j2))
    offdiagonal = np.zeros((len(states), len(states)))
    for a, m in enumerate(states):
        for b, lower in enumerate(states):
            if abs(m - lower - 2.0) < 1e-9:
                # <m+2| I+² |m> = sqrt[(j² − m(m+1)) (j² − (m+1)(m+2))]; I_x² − I_y² = (I+² + I−²)/2
                raising = np.sqrt((j2 - lower * (lower + 1.0)) * (j2 - (lower + 1.0) * (lower + 2.0)))
                offdiagonal[a, b] = offdiagonal[b, a] = 0.5 * scale * raising
    diagonal.setflags(write=False)
    offdiagonal.setflags(write=False)
    return diagonal, offdiagonal


def level_energies(eta, spin) -> np.ndarray:
    """Energies of :math:`H_Q / (h C_Q)` (dimensionless, C_Q > 0), ascending, for each eta
    (...,): the I + 1/2 doublet energies for half-integer I, the three levels for I = 1.
    Returns (..., n) with n = I + 1/2 or 3. Multiply by C_Q for frequencies (C_Q < 0 mirrors
    the ladder)."""
    spin = _checked_spin(spin)
    eta = np.asarray(eta, dtype=float)
    if not np.all(np.isfinite(eta)):
        raise ValueError("eta: not finite")
    diagonal, offdiagonal = _hamiltonian_parts(spin)
    return np.linalg.eigvalsh(diagonal + eta[..., None, None] * offdiagonal)


def nqr_frequencies_mhz(cq_mhz, eta, spin) -> np.ndarray:
    """Pure-NQR transition frequencies (MHz) of nuclei of spin I from C_Q (MHz) and eta.

    ``cq_mhz`` and ``eta`` broadcast against each other (leading shape ``S``, e.g. (sites,) or
    (frames, sites)); ``spin`` is one I for all of them (:func:`pyexport.nmr.nuclear_spin`).
    Returns ``S + (n_lines(spin),)``: the lines in the order of :func:`transition_labels`
    (see the module docstring: by transition; ascending for I ≤ 5/2). Exact diagonalisation of
    H_Q; C_Q in any frequency unit gives the lines in that unit. eta outside [0, 1] (a tensor
    that is not traceless) is used as given; NaN or infinite input is an error.
    """
    spin = _checked_spin(spin)
    cq = np.asarray(cq_mhz, dtype=float)
    if not np.all(np.isfinite(cq)):
        raise ValueError("cq_mhz: not finite")
    cq, eta = np.broadcast_arrays(cq, np.asarray(eta, dtype=float))
    energies = level_energies(eta, spin)
    if spin == 1.0:
        low, middle, high = energies[..., 0], energies[..., 1], energies[..., 2]
        lines = np.stack([high - middle, middle - low, high - low], axis=-1)
    else:
        lines = np.diff(energies, axis=-1)
    return np.abs(cq)[..., None] * lines
