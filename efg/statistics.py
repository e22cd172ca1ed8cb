"""Error bars for time series from MD: autocorrelation time, block averages, jackknife.

Frames of an MD trajectory are correlated, so the naive standard error σ/√n is too small. Here
the integrated autocorrelation time τ (in frames) is estimated with Sokal's automatic window, the
series is cut into blocks of ≥ 2τ frames (nearly independent), and the standard error of any
function of the averages comes from the jackknife over blocks, which also handles non-linear
quantities such as C_Q(⟨V⟩).
"""
from dataclasses import dataclass
from typing import Callable

import numpy as np

MIN_BLOCKS = 8


def integrated_autocorrelation_time(x: np.ndarray, window_factor: float = 5.0) -> np.ndarray:
    """τ_int in frames along axis 0 of ``x`` (n, ...), elementwise over the other axes.

    τ_int = ½ + Σ_{t=1}^{M} ρ(t), with the window M the smallest t ≥ ``window_factor``·τ_int(t)
    (Sokal). τ = ½ for uncorrelated data; constant series give ½.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    flat = x.reshape(n, -1)
    centred = flat - flat.mean(axis=0)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(centred, n=size, axis=0)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=0)[:n]
    var = acov[0]
    taus = np.full(flat.shape[1], 0.5)
    ok = var > 1e-300 * np.maximum(1.0, np.abs(flat).max(axis=0)) ** 2
    if np.any(ok):
        rho = acov[:, ok] / var[ok]
        cumulative = 0.5 + np.cumsum(rho[1:], axis=0) if n > 1 else np.full((1, ok.sum()), 0.5)
        t = np.arange(1, cumulative.shape[0] + 1)[:, None]
        inside = t >= window_factor * cumulative
        window = np.where(inside.any(axis=0), inside.argmax(axis=0), cumulative.shape[0] - 1)
        taus[ok] = np.maximum(0.5, cumulative[window, np.arange(cumulative.shape[1])])
    return taus.reshape(x.shape[1:]) if x.ndim > 1 else taus[0]


def block_length(n_frames: int, tau: float) -> int:
    """Frames per block: ≥ 2τ (rounded up), capped so that at least MIN_BLOCKS blocks remain."""
    length = max(1, int(np.ceil(2.0 * tau)))
    return max(1, min(length, n_frames // MIN_BLOCKS if n_frames >= MIN_BLOCKS else 1))


def block_means(x: np.ndarray, length: int) -> np.ndarray:
    """Means of consecutive blocks of ``length`` frames along axis 0 (a trailing partial block
    is dropped): (n_blocks, ...)."""
    x = np.asarray(x)
    n_blocks = x.shape[0] // length
    if n_blocks == 0:
        raise ValueError(f"{x.shape[0]} frames are fewer than one block of {length}")
    return x[: n_blocks * length].reshape((n_blocks, length) + x.shape[1:]).mean(axis=1)


@dataclass
class Estimate:
    """A quantity from a time series: value (from all frames), standard error, and the
    autocorrelation time and blocking used for the error (frames)."""

    value: np.ndarray
    error: np.ndarray
    tau: float
    block_length: int
    n_blocks: int


def jackknife(blocks: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Jackknife standard error of ``statistic(mean over blocks)`` from (n_blocks, ...) block means."""
    n = blocks.shape[0]
    if n < 2:
        return np.full(np.shape(statistic(blocks.mean(axis=0))), np.nan)
    total = blocks.sum(axis=0)
    leave_one_out = np.stack([statistic((total - blocks[k]) / (n - 1)) for k in range(n)])
    centre = leave_one_out.mean(axis=0)
    return np.sqrt((n - 1) / n * ((leave_one_out - centre) ** 2).sum(axis=0))


def estimate(series: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray] = None,
             tau_series: np.ndarray = None) -> Estimate:
    """Value and standard error of ``statistic(⟨series⟩)`` over frames (axis 0).

    ``statistic`` maps a mean of ``series`` (shape series.shape[1:]) to the quantity; identity by
    default. The block length comes from the largest autocorrelation time of ``tau_series``
    (default: ``series`` itself, all components), so that every component is decorrelated.
    """
    series = np.asarray(series, dtype=np.float64)
    statistic = statistic or (lambda m: m)
    n = series.shape[0]
    taus = integrated_autocorrelation_time(series if tau_series is None else tau_series)
    tau = float(np.max(taus))
    length = block_length(n, tau)
    blocks = block_means(series, length)
    value = statistic(series.mean(axis=0))
    return Estimate(value=value, error=jackknife(blocks, statistic), tau=tau, block_length=length,
                    n_blocks=blocks.shape[0])


def estimate_entry(series, statistic=None, tau_series=None) -> dict:
    """:func:`estimate` as the report entry of ``efg analyze``: value, error, τ (frames), block
    length and number of blocks (plain lists and numbers, for JSON)."""
    e = estimate(series, statistic, tau_series)
    return {"value": np.asarray(e.value).tolist(), "error": np.asarray(e.error).tolist(),
            "tau_frames": e.tau, "block_frames": e.block_length, "n_blocks": e.n_blocks}
