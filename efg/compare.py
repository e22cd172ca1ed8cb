"""``efg compare``: the harmonic picture (``efg harmonic``, phonopy) against anharmonic MD
(``efg analyze`` runs collected by ``efg scan``), per temperature and species.

    efg compare harmonic.json scan.json -o report/

Compared at every MD temperature (harmonic values interpolated linearly in T when the two
temperature grids differ, never extrapolated):

- mean-square displacements per species (isotropic, Å²): MD about the mean positions vs phonopy
  (quantum and classical statistics, real modes only);
- |C_Q(⟨V⟩)| and η(⟨V⟩) per species: MD frames vs harmonic samples, same EFG model;
- the vibrational DOS from the MD velocities (VACF) over the phonopy DOS, both normalised to
  unit area (the imaginary modes of phonopy are drawn at negative frequency).

From the scan alone (no harmonic counterpart): where c/a goes to 1 and, for molecular cations
(MAPbI3), the reorientation times τ1, τ2 against T with their Arrhenius activation energies.

A quantity *departs* where |harmonic − MD| exceeds the MD error bar (the test of the issue that
asked for this report); z = |harmonic − MD| / √(σ_MD² + σ_harm²) is given beside it. Writes
``report.md`` (Markdown, figures beside it), ``compare.json`` and the PNGs into the output folder.
"""
import json
import shutil
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from pyexport.outputs import refuse_overwriting_inputs, same_file, write_json

from .report import RunReport

STATISTICS = ("quantum", "classical")


def _load(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return json.loads(path.read_text())


def _interp(t: float, temps: np.ndarray, values: np.ndarray) -> Optional[float]:
    if len(temps) == 0 or t < temps.min() - 1e-9 or t > temps.max() + 1e-9:
        return None
    order = np.argsort(temps)
    return float(np.interp(t, temps[order], values[order]))


def harmonic_series(harmonic: dict) -> Dict[str, dict]:
    """{statistics: {"T": (n,), "msd": {el: (n,)}, "msd_err": ..., "cq": {el: (n,)}, "cq_err",
    "eta", "eta_err"}} from an efg harmonic report (per species, isotropic MSD)."""
    symbols = [s["symbol"] for s in harmonic["structure"]["sites"]]
    elements = list(dict.fromkeys(symbols))
    temps = harmonic["temperatures"]
    out = {}
    for stat in STATISTICS:
        entries = [t for t in temps if stat in t]
        if not entries:
            continue
        series = {"T": np.array([t["temperature_K"] for t in entries]), "msd": {}, "msd_err": {},
                  "cq": {}, "cq_err": {}, "eta": {}, "eta_err": {}}
        for el in elements:
            idx = [k for k, s in enumerate(symbols) if s == el]
            msd = np.array([[np.trace(np.array(t[stat]["msd_phonopy_mesh_A2"])[k]) / 3 for k in idx]
                            for t in entries]).mean(axis=1)
            series["msd"][el], series["msd_err"][el] = msd, np.zeros_like(msd)
            efg = [t[stat].get("efg") for t in entries]
            if all(e is not None for e in efg):
                sp = [e["species"][el] for e in efg]
                if sp[0].get("isotope"):
                    series["cq"][el] = np.array([s["abs_cq_of_mean_tensor_mhz"]["value"] for s in sp], float)
                    series["cq_err"][el] = np.array([s["abs_cq_of_mean_tensor_mhz"]["error"] for s in sp], float)
                series["eta"][el] = np.array([s["eta_of_mean_tensor"]["value"] for s in sp], float)
                series["eta_err"][el] = np.array([s["eta_of_mean_tensor"]["error"] for s in sp], float)
        out[stat] = series
    return out


def md_series(runs: List[RunReport]) -> dict:
    temps = np.array([r.temperature_K for r in runs], float)
    out = {"T": temps, "msd": {}, "msd_err": {}, "cq": {}, "cq_err": {}, "eta": {}, "eta_err": {}}
    for el in runs[0].species:
        if all(r.dynamics.get("msd") for r in runs):
            out["msd"][el] = np.array([r.dynamics["msd"][el]["msd_iso_A2"]["value"] for r in runs])
            out["msd_err"][el] = np.array([r.dynamics["msd"][el]["msd_iso_A2"]["error"] for r in runs])
        sp = [r.species[el] for r in runs]
        if sp[0].isotope:
            out["cq"][el] = np.array([s.abs_cq_of_mean_tensor_mhz.value for s in sp])
            out["cq_err"][el] = np.array([s.abs_cq_of_mean_tensor_mhz.error for s in sp])
        out["eta"][el] = np.array([s.eta_of_mean_tensor.value for s in sp])
        out["eta_err"][el] = np.array([s.eta_of_mean_tensor.error for s in sp])
    return out


def comparison_rows(md: dict, harm: Dict[str, dict]) -> List[dict]:
    """One row per (quantity, species, temperature, statistics) present in both."""
    rows = []
    for quantity, unit in (("msd", "Å²"), ("cq", "MHz"), ("eta", "")):
        for el, md_values in md[quantity].items():
            for stat, h in harm.items():
                if el not in h[quantity]:
                    continue
                for k, t in enumerate(md["T"]):
                    hv = _interp(t, h["T"], h[quantity][el])
                    if hv is None:
                        continue
                    he = _interp(t, h["T"], h[quantity + "_err"][el]) or 0.0
                    mv, me = float(md_values[k]), float(md[quantity + "_err"][el][k])
                    diff = hv - mv
                    z = abs(diff) / np.hypot(me, he) if np.hypot(me, he) > 0 else np.inf
                    rows.append({"quantity": quantity, "unit": unit, "species": el, "statistics": stat,
                                 "temperature_K": float(t), "md": mv, "md_error": me, "harmonic": hv,
                                 "harmonic_error": he, "difference": diff,
                                 "relative_difference": diff / mv if mv else None,
                                 "departs": bool(abs(diff) > me), "z": float(z)})
    return rows


def _plot_quantity(md, harm, quantity, ylabel, path) -> Optional[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    elements = list(md[quantity])
    if not elements:
        return None
    fig, axes = plt.subplots(1, len(elements), figsize=(3.6 * len(elements), 3.2), squeeze=False)
    for ax, el in zip(axes[0], elements):
        ax.errorbar(md["T"], md[quantity][el], yerr=md[quantity + "_err"][el], fmt="o", capsize=3,
                    label="MD (anharmonic)")
        for stat, style in zip(STATISTICS, ("-", "--")):
            if stat in harm and el in harm[stat][quantity]:
                h = harm[stat]
                ax.errorbar(h["T"], h[quantity][el], yerr=h[quantity + "_err"][el], fmt=style, capsize=2,
                            label=f"harmonic ({stat})")
        ax.set_title(el)
        ax.set_xlabel("T (K)")
        ax.set_ylabel(ylabel)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path).name


def _plot_dos(runs, harmonic, path) -> Optional[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_dos = [r for r in runs if r.dynamics.get("vdos")]
    if not with_dos:
        return None
    f_h = np.array(harmonic["dos"]["frequencies_THz"])
    g_h = np.array(harmonic["dos"]["dos_states_per_THz"])
    area = np.trapezoid(g_h, f_h)
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    ax.fill_between(f_h, g_h / area, color="0.8", label="phonopy (harmonic)")
    for r in with_dos:
        d = r.dynamics["vdos"]
        ax.plot(d["frequencies_THz"], d["dos_normalised"], lw=1, label=f"MD {r.temperature_K:.0f} K")
    ax.set_xlim(min(f_h.min(), 0), max(f_h.max(), 1) * 1.15)
    ax.set_xlabel("frequency (THz; imaginary as negative)")
    ax.set_ylabel("DOS (unit area)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path).name


def _fmt(value, error=None, digits=4):
    if value is None:
        return "–"
    text = f"{value:.{digits}g}"
    return text + (f" ± {error:.2g}" if error else "")


def reorientation_lines(scan: dict) -> List[str]:
    """Markdown section on the molecular reorientation times of the scan (none without molecules)."""
    fits = scan.get("reorientation")
    if not fits:
        return []
    curves = [scan["curves"].get(f"molecules:{key}") for key in ("tau1_ps", "tau2_ps")]
    lines = ["", f"## Molecular reorientation ({fits['axis']} axes)", "",
             "Correlation times of C1 = ⟨u(0)·u(t)⟩ and C2 = ⟨P2(u(0)·u(t))⟩ (`efg analyze`); "
             "'not decorrelated' where C(t) stayed above e⁻³ within the run.", "",
             "| T (K) | τ1 (ps) | τ2 (ps) |", "|---:|---:|---:|"]
    for k, t in enumerate(curves[1]["temperature_K"]):
        cells = ["not decorrelated" if c["value"][k] is None else _fmt(c["value"][k], c["error"][k], 3)
                 for c in curves]
        lines.append(f"| {t:.0f} | {cells[0]} | {cells[1]} |")
    lines.append("")
    for key in ("tau1_ps", "tau2_ps"):
        fit = fits[key]
        name = key.split("_")[0].replace("tau", "τ")
        if fit.get("fitted"):
            tau0 = _fmt(fit["tau0_ps"], fit["tau0_error_ps"], 3)
            lines.append(f"- {name}: Arrhenius E_a = {fit['activation_energy_meV']:.1f} ± "
                         f"{fit['activation_energy_error_meV']:.1f} meV, τ₀ = {tau0} ps ({fit['n_points']} temperatures).")
        else:
            lines.append(f"- {name}: no Arrhenius fit ({fit['reason']}).")
    return lines


def write_report(out: Path, harmonic: dict, scan: dict, rows: List[dict], figures: Dict[str, str]) -> str:
    lines = ["# Harmonic vs anharmonic MD", ""]
    inputs = harmonic.get("inputs", {})
    lines += [f"Potential: `{inputs.get('potential')}`; EFG model: `{inputs.get('efg_model')}`; "
              f"structure {harmonic['structure']['formula']} ({harmonic['structure']['space_group']}), "
              f"phonopy supercell {inputs.get('supercell_matrix')}.", ""]
    tc = scan.get("transition_temperature_K", {})
    if tc.get("tc_K") is not None:
        lines += [f"**Structural transition in MD:** T_c = {tc['tc_K']:.0f} ± {tc['tc_error_K']:.0f} K "
                  f"(from {', '.join(tc['from'])}; `efg scan`).", ""]
    else:
        lines += ["**Structural transition in MD:** none significant in the temperature range of the runs.", ""]
    for name, e in scan.get("tilt_transitions_K", {}).items():
        kind = {"tilt_R_deg": "R (out-of-phase)", "tilt_M_deg": "M (in-phase)"}.get(name, name)
        if e.get("significant"):
            lines.append(f"- {kind} octahedral tilt vanishes at {e['tc_K']:.0f} ± {e['tc_error_K']:.0f} K.")
        else:
            lines.append(f"- {kind} octahedral tilt: no significant collapse in this range.")
    for el, e in scan.get("cq_transition_K", {}).items():
        if e.get("significant"):
            lines.append(f"- |C_Q(⟨V⟩)| of {el} changes at {e['tc_K']:.0f} ± {e['tc_error_K']:.0f} K.")
    e = scan.get("c_over_a_transition_K")
    if e:
        if e.get("significant"):
            lines.append(f"- c/a (c = {e['unique_axis']}) goes to 1 at {e['tc_K']:.0f} ± {e['tc_error_K']:.0f} K.")
        else:
            lines.append(f"- c/a (c = {e['unique_axis']}): no significant approach to 1 in this range.")
    lines += reorientation_lines(scan)
    lines += ["", "## Imaginary modes of the harmonic model", ""]
    imag = harmonic.get("imaginary_modes", {})
    listed = imag.get("special_points", []) + [m for m in imag.get("commensurate_qpoints", [])
                                               if m.get("label") not in {s.get("label") for s in imag.get("special_points", [])}]
    if listed:
        lines += ["| q-point | label | band | frequency (THz) | irrep |", "|---|---|---:|---:|---|"]
        for m in listed:
            for mode in m["imaginary"]:
                lines.append(f"| {np.round(m['qpoint'], 4).tolist()} | {m.get('label', '')} | {mode['band_index']} | "
                             f"{mode['frequency_THz']:.3f} | {mode.get('irrep') or ''} |")
    else:
        lines.append("None: the structure is dynamically stable in the harmonic approximation.")
    for w in harmonic.get("warnings", []):
        lines.append(f"\n> {w}")
    curves = harmonic.get("mode_energy_curves", [])
    if curves:
        lines += ["", "## Energy along unstable modes (double wells)", "",
                  "| mode | ω (THz) | well depth (meV / primitive cell) | minimum: largest displacement (Å) |",
                  "|---|---:|---:|---:|"]
        for c in curves:
            well = c.get("well") or {}
            depth = well.get("depth_meV_per_primitive_cell")
            lines.append(f"| {c.get('label')} q={np.round(c.get('qpoint', []), 3).tolist()} band {c.get('band_index')} | "
                         f"{_fmt(c.get('frequency_THz'))} | {_fmt(depth)} | "
                         f"{_fmt(well.get('max_displacement_A'))} |")
    lines += ["", "## Where the harmonic picture departs from MD", "",
              "Departs = |harmonic − MD| > MD error bar. z = |harmonic − MD| / √(σ_MD² + σ_harm²).", "",
              "| quantity | species | T (K) | statistics | MD | harmonic | harmonic − MD | z | departs |",
              "|---|---|---:|---|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['quantity']} ({r['unit']}) | {r['species']} | {r['temperature_K']:.0f} | {r['statistics']} | "
                     f"{_fmt(r['md'], r['md_error'])} | {_fmt(r['harmonic'], r['harmonic_error'])} | "
                     f"{r['difference']:+.3g} | {r['z']:.1f} | {'**yes**' if r['departs'] else 'no'} |")
    lines += ["", "## Figures", ""]
    for title, name in figures.items():
        lines += [f"### {title}", "", f"![{title}]({name})", ""]
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    return text


#: files ``efg compare`` writes into its output folder, besides copies of the input PNGs
REPORT_FILES = ("compare.json", "report.md", "msd_vs_T.png", "cq_vs_T.png", "eta_vs_T.png", "dos.png")


def compare(harmonic_path, scan_path, output) -> dict:
    refuse_overwriting_inputs([harmonic_path, scan_path], [Path(output) / name for name in REPORT_FILES])
    harmonic = _load(harmonic_path)
    scan = _load(scan_path)
    if harmonic.get("command") != "efg harmonic":
        raise ValueError(f"{harmonic_path}: not an efg harmonic report")
    if scan.get("efgmd") != "efg scan":
        raise ValueError(f"{scan_path}: not an efg scan report")
    base = Path(scan_path).resolve().parent
    runs = []
    for path in scan["runs"]:
        p = Path(path)
        runs.append(RunReport.read(p if p.is_absolute() else base / p))
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    md = md_series(runs)
    harm = harmonic_series(harmonic)
    rows = comparison_rows(md, harm)
    figures = {}
    for quantity, label, name in (("msd", "MSD (Å²)", "msd_vs_T.png"), ("cq", "|C_Q(⟨V⟩)| (MHz)", "cq_vs_T.png"),
                                  ("eta", "η(⟨V⟩)", "eta_vs_T.png")):
        made = _plot_quantity(md, harm, quantity, label, out / name)
        if made:
            figures[f"{label} vs T"] = made
    made = _plot_dos(runs, harmonic, out / "dos.png")
    if made:
        figures["Vibrational DOS: MD (VACF) over phonopy"] = made
    harmonic_dir = Path(harmonic_path).resolve().parent
    for key, title in (("bands_png", "Phonon bands and DOS (phonopy)"), ("modes_png", "Energy along unstable modes"),
                       ("msd_png", "Harmonic MSD")):
        src = harmonic.get("outputs", {}).get(key)
        if src and (Path(src) if Path(src).is_absolute() else harmonic_dir / Path(src).name).is_file():
            src = Path(src) if Path(src).is_absolute() else harmonic_dir / Path(src).name
            if not same_file(src, out / src.name):     # report written beside the harmonic run
                shutil.copy(src, out / src.name)
            figures[title] = src.name
    scan_dir = Path(scan_path).resolve().parent
    for name in scan.get("plots", []):
        if (scan_dir / name).is_file():
            if not same_file(scan_dir / name, out / name):
                shutil.copy(scan_dir / name, out / name)
            figures[f"efg scan: {name}"] = name
    write_report(out, harmonic, scan, rows, figures)
    result = {"efgmd": "efg compare", "harmonic": str(harmonic_path), "scan": str(scan_path),
              "rows": rows, "n_departing": int(sum(r["departs"] for r in rows)), "figures": figures}
    write_json(out / "compare.json", result)
    return result
