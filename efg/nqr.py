"""NQR-ready results of ``efg analyze``: pure-NQR lines per quadrupolar species with error bars
and line shapes, the principal frame of every site's time-averaged tensor, and the
motional average as a ``.magres`` file.

- Lines (:func:`species_nqr`, the ``nqr`` section of ``run.json``, typed by
  :class:`efg.report.SpeciesNQR`): for each species with an isotope, the transitions of its spin
  (:mod:`pyexport.nqr`: I = 3/2 one line, ¹²⁷I two, ¹³³Cs three, ¹⁴N/²H three), from C_Q and
  eta of ⟨V⟩ per site (fast-motion limit) with jackknife errors from the same blocks as C_Q(⟨V⟩),
  and the mean of the instantaneous lines (static limit); histograms over sites × frames.
- Orientation (:func:`site_orientation`, in ``sites`` of ``run.json``): principal values of ⟨V⟩
  in the NQR order ``|V_zz| ≥ |V_yy| ≥ |V_xx|``, the principal axes as rows (x, y, z; a
  right-handed frame in the dump's Cartesian axes) and the active ZYZ Euler angles in degrees
  (:func:`pyexport.nmr.euler_zyz`, Soprano's convention).
- ``.magres``: ⟨V⟩ of every atom on :func:`average_structure` (mean positions, followed across
  periodic boundaries from the first frame, and the mean cell), written by
  :func:`pyexport.magres.write_magres`.
"""
from typing import Dict, Mapping, Sequence

import numpy as np
from ase import Atoms

from pyexport import nmr, nqr

from .frame_steps import unwrap_scaled
from .report import Estimate, SpeciesNQR
from .statistics import estimate_entry

#: bins of each line's histogram (as the C_Q histograms of efg.analyze)
HISTOGRAM_BINS = 60


def species_nqr(tensors: np.ndarray, symbols: Sequence[str], isotopes: Mapping[str, str]
                ) -> Dict[str, SpeciesNQR]:
    """NQR lines per quadrupolar species from the EFG tensors (F, N, 3, 3) in V/Å².

    ``symbols`` (N,); ``isotopes`` {element: isotope} (:func:`pyexport.nmr.resolve_isotopes`):
    the species without one are left out. Errors come from blocks chosen on the autocorrelation
    of all tensor components (as :func:`efg.analyze.species_statistics` does), so the lines and
    C_Q(⟨V⟩) of one run share their blocks.
    """
    symbols = np.asarray(symbols)
    v6 = nmr.to_voigt6(tensors)
    tau_series = v6.reshape(v6.shape[0], -1)
    out = {}
    for element in dict.fromkeys(symbols.tolist()):
        isotope = isotopes.get(element)
        if isotope is None:
            continue
        spin = nmr.nuclear_spin(isotope)
        sites = np.flatnonzero(symbols == element)
        sub6 = v6[:, sites]

        def lines_of_mean(mean6):                           # (sites, 6) -> (sites, lines)
            tensor = nmr.from_voigt6(mean6)
            return nqr.nqr_frequencies_mhz(nmr.cq_mhz(tensor, isotope), nmr.eta(tensor), spin)

        instantaneous = nqr.nqr_frequencies_mhz(nmr.cq_mhz(tensors[:, sites], isotope),
                                                nmr.eta(tensors[:, sites]), spin)       # (F, sites, lines)
        labels = list(nqr.transition_labels(spin))
        histograms = []
        for k, label in enumerate(labels):
            counts, edges = np.histogram(instantaneous[..., k].ravel(), bins=HISTOGRAM_BINS)
            histograms.append({"transition": label, "counts": counts.tolist(), "edges": edges.tolist()})
        out[element] = SpeciesNQR(
            isotope=isotope, spin=spin, transitions=labels,
            lines_of_mean_tensor_mhz=Estimate(**estimate_entry(
                sub6, lambda m: lines_of_mean(m).mean(axis=0), tau_series)),
            mean_lines_mhz=Estimate(**estimate_entry(instantaneous.mean(axis=1), tau_series=tau_series)),
            site_indices=sites.tolist(),
            site_lines_of_mean_tensor_mhz=Estimate(**estimate_entry(sub6, lines_of_mean, tau_series)),
            histogram_lines_mhz=histograms)
    return out


def site_orientation(mean_tensors: np.ndarray) -> dict:
    """Principal values (V/Å², NQR order), principal axes (rows x, y, z, right-handed) and
    active ZYZ Euler angles (degrees) of the time-averaged tensors (N, 3, 3): the keys of
    ``sites`` in ``run.json``."""
    values, frame = nmr.principal_frame(mean_tensors)
    return {"principal_values_of_mean_tensor_V_per_A2": values.tolist(),
            "principal_axes_of_mean_tensor": np.swapaxes(frame, -1, -2).tolist(),
            "euler_zyz_deg_of_mean_tensor": np.degrees(nmr.euler_zyz(frame)).tolist()}


def average_structure(first: Atoms, scaled: np.ndarray, cells: np.ndarray) -> Atoms:
    """The mean structure of a run: ``first`` (symbols) with the mean cell of ``cells``
    (F, 3, 3) and the mean fractional positions of ``scaled`` (F, N, 3), each atom followed
    across periodic boundaries from its first-frame position (frames must be close enough that
    no atom moves half a cell between them), wrapped back into the cell."""
    mean = Atoms(first.get_chemical_symbols(), cell=cells.mean(axis=0), pbc=first.pbc)
    mean.set_scaled_positions(np.mod(unwrap_scaled(scaled).mean(axis=0), 1.0))
    return mean


def spin_text(spin: float) -> str:
    """"3/2" for 1.5, "1" for 1.0."""
    return f"{round(2 * spin)}/2" if round(2 * spin) % 2 else f"{spin:g}"


def plot_nqr_lines(report: dict, path) -> bool:
    """The NQR line shapes of ``report["nqr"]``: one panel per species and line, the histogram
    of the instantaneous frequency over sites × frames with the line of ⟨V⟩ (dashed) and the
    mean line (dotted). Returns False (no file) when no species has lines."""
    entries = report.get("nqr") or {}
    panels = [(element, k) for element, entry in entries.items() for k in range(len(entry["transitions"]))]
    if not panels:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(len(entry["transitions"]) for entry in entries.values())
    fig, axes = plt.subplots(len(entries), columns, figsize=(4.2 * columns, 2.8 * len(entries)), squeeze=False)
    for row, (element, entry) in zip(axes, entries.items()):
        for k, ax in enumerate(row):
            if k >= len(entry["transitions"]):
                ax.set_visible(False)
                continue
            histogram = entry["histogram_lines_mhz"][k]
            ax.stairs(histogram["counts"], np.array(histogram["edges"]), fill=True, alpha=0.6)
            of_mean = entry["lines_of_mean_tensor_mhz"]
            mean = entry["mean_lines_mhz"]
            ax.axvline(of_mean["value"][k], color="k", ls="--", label=f"ν(⟨V⟩) = {of_mean['value'][k]:.4g} MHz")
            ax.axvline(mean["value"][k], color="C3", ls=":", label=f"⟨ν⟩ = {mean['value'][k]:.4g} MHz")
            ax.set_xlabel(f"ν {entry['transitions'][k]} (MHz)")
            ax.set_ylabel("count (sites × frames)")
            ax.set_title(f"{entry['isotope']} (I = {spin_text(entry['spin'])}) NQR"
                         + (f", {report['temperature_K']:g} K" if report.get("temperature_K") else ""),
                         fontsize=9)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
