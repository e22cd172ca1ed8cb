"""Molecular axes and their reorientation: the C–N axis of methylammonium in MAPbI3.

The organic cations of hybrid perovskites reorient on picosecond time scales in the cubic
phase and lock into a few orientations in the tetragonal and orthorhombic phases. Each molecule
is followed through its axis, the unit vector u from a *tail* atom to the bonded *head* atom
(C → N for CH3NH3⁺). The molecules are identified once, on a reference frame (as the octahedra
in :mod:`pyexport.octahedra`); atom indices then follow them through the trajectory.

Reorientation correlation functions, averaged over molecules and all time origins s:

    C1(t) = ⟨u(s)·u(s+t)⟩            (rank 1: dielectric relaxation, the sign of the axis)
    C2(t) = ⟨P2(u(s)·u(s+t))⟩        (rank 2: NMR, P2(x) = (3x² − 1)/2; blind to u → −u)

For isotropic rotational diffusion with constant D_r, C1 = exp(−2 D_r t), C2 = exp(−6 D_r t).

Correlation time τ = ∫₀^∞ C(t) dt, estimated as the integral of the measured C (trapezoid rule)
up to t_ε, where C first falls below ε = e⁻³ ≈ 0.05, plus the exponential tail ε·τ_tail beyond
it; τ_tail = (t_ε − t_e)/2 is the decay time of C between its crossings of e⁻¹ (t_e) and e⁻³.
For C = exp(−t/τ) this is exact (up to the trapezoid rule, O((Δt/τ)²)); for a fast librational
drop followed by a slower exponential it is the integrated time, dominated by the slow part.
If C stays above ε up to the longest lag (half the run by default), the molecules have not
decorrelated within the run: no τ is given (``value`` None, ``decorrelated`` False). The
*plateau*, the mean of C over the last quarter of the lags, says where C levels off: about
0 for molecules that tumble freely, |⟨u⟩|² averaged over molecules (C1) for locked ones; an
axis that only flips between u and −u decorrelates C1 and leaves C2 at 1.

Errors come from a bootstrap over molecules (resampled with replacement, 300 times, fixed seed
so that reruns agree): half the central 68 % interval of the resampled τ, where a resample that
does not decorrelate counts as τ = ∞ (no error when more than 16 % do not); standard deviations
of the resampled curves for C(t) and the plateau. The bootstrap treats molecules as independent,
so collective motion of many molecules (ordered domains) makes the errors too small. (The
jackknife does not do here: the first crossing of ε is not a smooth function of the data, and
the jackknife underestimated the spread of τ2 by ~1.4× on simulated rotational diffusion.)
Times are in ps when the time between frames is known, else in frames.
"""
from typing import Optional

import numpy as np
from ase.geometry import find_mic
from ase.neighborlist import neighbor_list

#: C(t) below this (e⁻³) counts as decorrelated
DECORRELATED_BELOW = float(np.exp(-3.0))
N_BOOTSTRAP = 300


# ------------------------------------------------------------------------------------------
# Molecules and their axes
# ------------------------------------------------------------------------------------------
def find_molecular_axes(atoms, head: str = "N", tail: str = "C", max_bond_A: float = 1.8) -> np.ndarray:
    """(n_mol, 2) atom indices (tail, head) of the molecules of ``atoms``, ordered by tail index.

    Every ``tail`` atom must have exactly one ``head`` atom within ``max_bond_A`` (Å, minimum
    image over the periodic cell) and every head exactly one tail; otherwise ValueError naming
    the offending atoms and their distances."""
    symbols = np.array(atoms.get_chemical_symbols())
    tails = np.nonzero(symbols == tail)[0]
    heads = np.nonzero(symbols == head)[0]
    if len(tails) == 0 or len(heads) == 0:
        raise ValueError(f"no molecular axis {tail}-{head}: the structure has {len(tails)} {tail} and "
                         f"{len(heads)} {head} atoms")
    i, j, d = neighbor_list("ijd", atoms, {(tail, head): max_bond_A})
    bonded = (symbols[i] == tail) & (symbols[j] == head)
    i, j, d = i[bonded], j[bonded], d[bonded]
    problems = []
    for index in tails:
        found = i == index
        if found.sum() != 1:
            problems.append(_bond_problem(atoms, index, head, heads, j[found], d[found], max_bond_A))
    for index in heads:
        found = j == index
        if found.sum() != 1:
            problems.append(_bond_problem(atoms, index, tail, tails, i[found], d[found], max_bond_A))
    if problems:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise ValueError(f"molecular axes {tail}-{head}: every {tail} needs exactly one {head} within "
                         f"{max_bond_A} Å and vice versa: {shown}")
    order = np.argsort(i, kind="stable")
    return np.stack([i[order], j[order]], axis=1).astype(np.int64)


def _bond_problem(atoms, index, partner, partners, found, distances, max_bond_A) -> str:
    """What is wrong with atom ``index``: its partners within the bond length, or the nearest."""
    own = atoms.get_chemical_symbols()[index]
    if len(found):
        order = np.argsort(found, kind="stable")
        listed = ", ".join(f"{partner} {found[k]} at {distances[k]:.3f} Å" for k in order)
        return f"{own} {index} has {len(found)}: {listed}"
    _, r = find_mic(atoms.positions[partners] - atoms.positions[index], atoms.cell.array, atoms.pbc)
    k = int(np.argmin(r))
    return f"{own} {index} has none (nearest {partner} {partners[k]} at {r[k]:.3f} Å > {max_bond_A} Å)"


def axis_vectors(atoms, pairs: np.ndarray, max_bond_A: Optional[float] = None) -> np.ndarray:
    """(n_mol, 3) unit vectors tail → head of the molecules ``pairs`` (n_mol, 2), minimum image.

    With ``max_bond_A``, a molecule longer than that (Å) raises ValueError: it broke, or the
    atoms are not the ones found on the reference frame."""
    d, r = find_mic(atoms.positions[pairs[:, 1]] - atoms.positions[pairs[:, 0]], atoms.cell.array, atoms.pbc)
    if max_bond_A is not None and np.any(r > max_bond_A):
        k = int(np.argmax(r))
        raise ValueError(f"molecule {k} (atoms {pairs[k, 0]} → {pairs[k, 1]}) is {r[k]:.3f} Å long, more than "
                         f"{max_bond_A} Å: it broke, or the atoms are not those of the first frame")
    return d / r[:, None]


# ------------------------------------------------------------------------------------------
# Reorientation correlation functions and times
# ------------------------------------------------------------------------------------------
def _origin_sums(x: np.ndarray, n_lags: int) -> np.ndarray:
    """Σ_s Σ_k x[s, m, k] x[s + t, m, k] for t < n_lags: (n_lags, M) from x (F, M, K), by FFT
    (zero-padded to ≥ 2F, so no periodic wrap-around)."""
    n = x.shape[0]
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(x, n=size, axis=0)
    power = (spectrum.real ** 2 + spectrum.imag ** 2).sum(axis=2)
    return np.fft.irfft(power, n=size, axis=0)[:n_lags]


def _per_molecule_correlations(u: np.ndarray, n_lags: int):
    """C1 and C2 of each molecule, (n_lags, M) each, averaged over all time origins."""
    i, j = np.triu_indices(3)
    # u ⊗ u, off-diagonal elements scaled by √2 so that the plain sum over components of the
    # product is the full double contraction (u(s)·u(s+t))²
    scale = np.where(i == j, 1.0, np.sqrt(2.0))
    quadrupole = u[..., i] * u[..., j] * scale                                   # (F, M, 6)
    origins = (u.shape[0] - np.arange(n_lags))[:, None]
    c1 = _origin_sums(u, n_lags) / origins
    c2 = 1.5 * _origin_sums(quadrupole, n_lags) / origins - 0.5
    return c1, c2


def _crossing(lag: np.ndarray, c: np.ndarray, level: float) -> Optional[float]:
    """First time c falls below ``level``, linearly interpolated; None if it never does."""
    below = np.nonzero(c < level)[0]
    if len(below) == 0:
        return None
    k = int(below[0])
    if k == 0:
        return float(lag[0])
    return float(lag[k - 1] + (c[k - 1] - level) / (c[k - 1] - c[k]) * (lag[k] - lag[k - 1]))


def correlation_time(lag: np.ndarray, c: np.ndarray) -> float:
    """τ (units of ``lag``) of a correlation function c (L,) with c[0] = 1 (see the module
    docstring); nan if c does not fall below ε within the lags."""
    t_eps = _crossing(lag, c, DECORRELATED_BELOW)
    if t_eps is None:
        return float("nan")
    t_e = _crossing(lag, c, float(np.exp(-1.0)))
    inside = lag < t_eps
    t = np.append(lag[inside], t_eps)
    y = np.append(c[inside], DECORRELATED_BELOW)
    tail = DECORRELATED_BELOW * 0.5 * (t_eps - t_e)
    return float(np.trapezoid(y, t) + tail)


def _plateau(c: np.ndarray) -> float:
    return float(c[-max(1, len(c) // 4):].mean())


def _time_summary(lag, mean_curve, resampled) -> dict:
    """τ, its error, and the plateau of one correlation function: value from all molecules,
    errors from the bootstrap curves ``resampled`` (B, L); no errors without resamples."""
    tau = correlation_time(lag, mean_curve)
    decorrelated = bool(np.isfinite(tau))
    tau_error = plateau_error = None
    if len(resampled):
        # resamples that do not decorrelate count as τ = ∞: the error is half the central 68 %
        # interval, and there is none when that interval reaches ∞
        boot_tau = np.array([correlation_time(lag, c) for c in resampled])
        boot_tau[~np.isfinite(boot_tau)] = np.inf
        low, high = np.quantile(boot_tau, [0.15866, 0.84134], method="inverted_cdf")
        if decorrelated and np.isfinite(high):
            tau_error = float(0.5 * (high - low))
        plateau_error = float(np.std([_plateau(c) for c in resampled]))
    return {"value": float(tau) if decorrelated else None, "error": tau_error,
            "decorrelated": decorrelated, "plateau": _plateau(mean_curve),
            "plateau_error": plateau_error, "threshold": DECORRELATED_BELOW}


def _bootstrap_weights(n_mol: int, n_bootstrap: int, seed: int = 0) -> np.ndarray:
    """(B, M) weights of the molecules in B resamples with replacement (rows sum to 1); none
    for a single molecule, where resampling says nothing."""
    if n_mol < 2:
        return np.zeros((0, n_mol))
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_mol, np.full(n_mol, 1.0 / n_mol), size=n_bootstrap) / n_mol


def reorientation_correlation(u: np.ndarray, frame_dt_ps: Optional[float] = None,
                              max_lag: Optional[int] = None, n_bootstrap: int = N_BOOTSTRAP) -> dict:
    """C1(t), C2(t) and the times τ1, τ2 of unit vectors ``u`` (n_frames, n_mol, 3), frames
    ``frame_dt_ps`` apart (ps; None: times in frames).

    ``max_lag`` (frames, default n_frames // 2): the longest lag, where still half the run serves
    as time origins. Returns a dict: ``time_unit`` ("ps" or "frames"), ``lag`` (L,),
    ``C1``/``C2`` {"value": (L,), "error": (L,)}, ``tau1``/``tau2`` {"value", "error",
    "decorrelated", "plateau", "plateau_error", "threshold"} (see the module docstring)."""
    u = np.asarray(u, dtype=np.float64)
    if u.ndim != 3 or u.shape[2] != 3:
        raise ValueError(f"axis vectors must be (n_frames, n_mol, 3), got shape {u.shape}")
    n_frames, n_mol = u.shape[:2]
    if n_frames < 2 or n_mol < 1:
        raise ValueError(f"reorientation needs at least 2 frames and 1 molecule, got {n_frames} and {n_mol}")
    if not np.all(np.isfinite(u)) or np.abs(np.linalg.norm(u, axis=2) - 1.0).max() > 1e-6:
        raise ValueError("axis vectors must be finite unit vectors")
    if frame_dt_ps is not None and not frame_dt_ps > 0:
        raise ValueError(f"frame_dt_ps must be positive, got {frame_dt_ps}")
    max_lag = n_frames // 2 if max_lag is None else int(max_lag)
    if not 1 <= max_lag < n_frames:
        raise ValueError(f"max_lag must lie in [1, {n_frames - 1}] frames, got {max_lag}")
    dt = 1.0 if frame_dt_ps is None else float(frame_dt_ps)
    lag = np.arange(max_lag + 1) * dt
    c1, c2 = _per_molecule_correlations(u, max_lag + 1)                           # (L, M) each
    weights = _bootstrap_weights(n_mol, n_bootstrap)                              # (B, M)
    out = {"time_unit": "frames" if frame_dt_ps is None else "ps", "frame_dt": dt,
           "n_frames": int(n_frames), "n_molecules": int(n_mol), "n_bootstrap": len(weights),
           "lag": lag.tolist()}
    for name, c in (("1", c1), ("2", c2)):
        mean_curve = c.mean(axis=1)
        resampled = weights @ c.T                                                  # (B, L)
        out[f"C{name}"] = {"value": mean_curve.tolist(),
                           "error": resampled.std(axis=0).tolist() if len(weights) else None}
        out[f"tau{name}"] = _time_summary(lag, mean_curve, resampled)
    return out
