"""The PNGs of the harmonic baseline: bands and DOS, energy along modes, MSD vs T.
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np

from .mode_scans import ModeEnergyCurve


def plot_bands_dos(bands: dict, dos: dict, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_dos) = plt.subplots(1, 2, figsize=(8, 4.5), sharey=True,
                                     gridspec_kw={"width_ratios": [4, 1], "wspace": 0.05})
    offset, ticks, ticklabels = 0.0, [0.0], []
    previous_end = None
    for seg in bands["segments"]:
        d = seg["distances"] - seg["distances"][0] + offset
        if previous_end is not None and previous_end != seg["from"]:
            ticklabels[-1] = f"{previous_end}|{seg['from']}"
        if not ticklabels:
            ticklabels.append(seg["from"])
        ax.plot(d, seg["frequencies_THz"], color="C0", lw=1.0)
        offset = d[-1]
        ticks.append(offset)
        ticklabels.append(seg["to"])
        previous_end = seg["to"]
    for t in ticks:
        ax.axvline(t, color="0.7", lw=0.6)
    ax.axhline(0.0, color="k", lw=0.6)
    ax.set_xticks(ticks)
    ax.set_xticklabels(ticklabels)
    ax.set_xlim(0, offset)
    ax.set_ylabel("frequency (THz); imaginary < 0")
    ax_dos.plot(dos["dos_states_per_THz"], dos["frequencies_THz"], color="C0", lw=1.0)
    ax_dos.axhline(0.0, color="k", lw=0.6)
    ax_dos.set_xlabel("DOS")
    ax_dos.set_xticks([])
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)


def plot_mode_curves(curves: List[ModeEnergyCurve], path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(curves)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, c in zip(axes.ravel(), curves):
        x = np.sign(c.amplitudes_Q) * c.max_displacement_A
        ax.plot(x, c.energy_eV * 1e3, "o-", ms=3, label="potential")
        ax.plot(x, c.harmonic_eV * 1e3, "--", label="harmonic ½ω²Q²")
        finite = np.concatenate([c.energy_eV, c.harmonic_eV]) * 1e3
        lo, hi = c.energy_eV.min() * 1e3, c.energy_eV.max() * 1e3
        span = max(hi - lo, 1e-6)
        ax.set_ylim(min(lo, finite.min()) - 0.1 * span if c.frequency_THz >= 0 else lo - 0.5 * span,
                    hi + 0.3 * span)
        name = c.label or "q"
        ax.set_title(f"{name} {np.round(c.qpoint, 3).tolist()} band {c.band_index}: {c.frequency_THz:.3f} THz",
                     fontsize=8)
        ax.set_xlabel("largest atomic displacement (Å)")
        ax.set_ylabel("E − E₀ (meV / supercell)")
        ax.legend(fontsize=7)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def plot_msd(temperatures, msd: dict, symbols: Sequence[str], path) -> None:
    """Isotropic MSD (trace/3) per site against T: phonopy on the dense mesh (lines), phonopy on
    the supercell's q-points (thin dotted), samples (symbols with standard errors)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def iso(a):
        return np.trace(a, axis1=-2, axis2=-1) / 3

    fig, ax = plt.subplots(figsize=(6, 4))
    styles = [(stat, style, marker) for stat, style, marker in
              (("quantum", "-", "o"), ("classical", "--", "s")) if stat in msd]
    for s, symbol in enumerate(symbols):
        color = f"C{s % 10}"
        for stat, style, marker in styles:
            arrays = msd[stat]
            label = f"{symbol} (site {s})" if stat == styles[0][0] else None
            ax.plot(temperatures, iso(arrays["mesh"][:, s]), style, color=color, label=label)
            ax.plot(temperatures, iso(arrays["supercell"][:, s]), ":", color=color, lw=0.8)
            err = np.sqrt(np.sum(np.diagonal(arrays["samples_se"][:, s], axis1=-2, axis2=-1) ** 2, axis=-1)) / 3
            ax.errorbar(temperatures, iso(arrays["samples"][:, s]), yerr=err, fmt=marker, color=color,
                        ms=3, mfc="none" if stat == "classical" else color)
    ax.set_xlabel("T (K)")
    ax.set_ylabel("isotropic MSD (Å²)")
    ax.set_title("phonopy: mesh (lines), supercell q-points (dotted); samples (symbols)\n"
                 "quantum: solid, filled; classical: dashed, open", fontsize=8)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
