"""The files of ``efg compare`` (:mod:`efg.compare`): ``report.md`` and the PNGs of MD against
the harmonic references, each reference drawn only over the MD temperatures it is the baseline for.
"""
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

STATISTICS = ("quantum", "classical")
#: files ``efg compare`` writes into its output folder, besides copies of the input PNGs
REPORT_FILES = ("compare.json", "report.md", "msd_vs_T.png", "cq_vs_T.png", "eta_vs_T.png", "dos.png")


def plot_quantity(md: dict, references: Sequence, quantity: str, ylabel: str, path) -> Optional[str]:
    """MD points with error bars and, per reference ``((name, HarmonicReference), series)``,
    the harmonic curves of both statistics inside the reference's temperature range."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    elements = list(md[quantity])
    if not elements:
        return None
    fig, axes = plt.subplots(1, len(elements), figsize=(3.6 * len(elements), 3.2), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"][1:]
    for ax, el in zip(axes[0], elements):
        ax.errorbar(md["T"], md[quantity][el], yerr=md[quantity + "_err"][el], fmt="o", capsize=3,
                    color="k", label="MD (anharmonic)")
        for ((name, ref), harm), colour in zip(references, colours):
            for stat, style in zip(STATISTICS, ("-", "--")):
                if stat not in harm or el not in harm[stat][quantity]:
                    continue
                h = harm[stat]
                inside = np.array([ref.covers(t) for t in h["T"]])
                if not inside.any():
                    continue
                ax.errorbar(h["T"][inside], h[quantity][el][inside], yerr=h[quantity + "_err"][el][inside],
                            fmt=style, color=colour, capsize=2, label=f"{name} ({stat})")
        ax.set_title(el)
        ax.set_xlabel("T (K)")
        ax.set_ylabel(ylabel)
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path).name


def plot_dos(runs, references: Sequence, path) -> Optional[str]:
    """The MD vibrational DOS of every run over the phonopy DOS of each reference
    ``(name, harmonic report)``, all normalised to unit area."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_dos = [r for r in runs if r.dynamics.get("vdos")]
    if not with_dos:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    f_min, f_max = 0.0, 1.0
    for (name, harmonic), shade in zip(references, ("0.75", "0.55", "0.35")):
        f_h = np.array(harmonic["dos"]["frequencies_THz"])
        g_h = np.array(harmonic["dos"]["dos_states_per_THz"])
        ax.fill_between(f_h, g_h / np.trapezoid(g_h, f_h), color=shade, alpha=0.6,
                        label=f"phonopy {name}")
        f_min, f_max = min(f_min, f_h.min()), max(f_max, f_h.max())
    for r in with_dos:
        d = r.dynamics["vdos"]
        ax.plot(d["frequencies_THz"], d["dos_normalised"], lw=1, label=f"MD {r.temperature_K:.0f} K")
    ax.set_xlim(f_min, f_max * 1.15)
    ax.set_xlabel("frequency (THz; imaginary as negative)")
    ax.set_ylabel("DOS (unit area)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path).name


def _fmt(value, error=None, digits=4):
    if value is None or not np.isfinite(value):
        return "–"
    text = f"{value:.{digits}g}"
    return text + (f" ± {error:.2g}" if error is not None and np.isfinite(error) and error else "")


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


def transition_lines(scan: dict) -> List[str]:
    """The structural transitions ``efg scan`` found, as the report's opening lines."""
    lines = []
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
    return lines


def mode_text(mode: dict) -> str:
    """'R [0.5, 0.5, 0.5] −0.833 THz (×3, T1u)'."""
    extra = [f"×{mode['n_degenerate']}"] if mode["n_degenerate"] > 1 else []
    extra += [mode["irrep"]] if mode.get("irrep") else []
    label = f"{mode['label']} " if mode.get("label") else ""
    return (f"{label}{np.round(mode['qpoint'], 4).tolist()} {mode['frequency_THz']:.3f} THz"
            + (f" ({', '.join(extra)})" if extra else ""))


def modes_cell(summary: dict) -> str:
    """The reference table's account of the modes: all real (lowest mode) or the unstable ones."""
    grid = "×".join(str(n) for n in summary["mesh"] or [])
    low = summary.get("lowest_mode")
    lowest = (f"lowest {low['frequency_THz']:.3f} THz at q = {np.round(low['qpoint'], 4).tolist()}"
              if low else "")
    if summary["dynamically_stable"]:
        return f"all real on the {grid} mesh, the commensurate q-points and the band path; {lowest}"
    named = "; ".join(mode_text(m) for m in summary["unstable_modes"]) or "on the mesh only"
    return (f"**unstable**: {named}; {summary['n_imaginary_mesh']} of {summary['n_modes_mesh']} modes "
            f"imaginary on the {grid} mesh ({lowest}). MSD and EFG from the stable modes only: they "
            f"leave out the fluctuations the unstable modes carry")


def structure_cell(summary: dict) -> str:
    from efg.harmonic.relax import relaxation_line

    line = relaxation_line(summary.get("relaxation"))
    sc = summary.get("n_atoms_supercell")
    size = f"force constants in a {sc}-atom supercell" if sc else ""
    return "; ".join(t for t in (line or "as given (not relaxed by efg harmonic)", size) if t)


def reference_lines(summaries: List[dict], pairing: List[dict]) -> List[str]:
    lines = ["", "## Harmonic references", "",
             "Each MD temperature is compared with the harmonic model of the phase the MD is in "
             "(`efg compare --harmonic PATH:RANGE`; the ranges are given by the user or the demo, from "
             "the transitions above).", "",
             "| reference | space group | MD temperatures (K) | modes | structure |", "|---|---|---|---|---|"]
    for s in summaries:
        temps = ", ".join(f"{t:.0f}" for t in s["md_temperatures_K"]) or "none"
        lines.append(f"| `{s['name']}` ({s['range_text']} K) | {s['space_group']} | {temps} | "
                     f"{modes_cell(s)} | {structure_cell(s)} |")
    for s in summaries:
        for transition in s["transitions_in_range"]:
            lines.append(f"\n> Note: the range of `{s['name']}` ({s['range_text']} K) contains the {transition} "
                         f"found by `efg scan`: one harmonic model stands for two phases there.")
    without = [p["temperature_K"] for p in pairing if p["reference"] is None]
    if without:
        lines += ["", f"**No harmonic reference** at {', '.join(f'{t:.0f}' for t in without)} K: no harmonic "
                  f"model of the phase the MD is in was given for these temperatures (e.g. between "
                  f"transitions, or within their error bars); nothing is compared there."]
    for p in pairing:
        if p.get("note"):
            lines.append(f"\n> {p['temperature_K']:.0f} K: {p['note']}.")
    return lines


def imaginary_mode_lines(harmonics: List[dict], summaries: List[dict]) -> List[str]:
    lines = ["", "## Imaginary modes of the harmonic references", ""]
    for h, s in zip(harmonics, summaries):
        lines += [f"### `{s['name']}` ({s['space_group']})", ""]
        if s["unstable_modes"]:
            lines += ["| q-point | label | frequency (THz) | degenerate | irrep |", "|---|---|---:|---:|---|"]
            for m in s["unstable_modes"]:
                lines.append(f"| {np.round(m['qpoint'], 4).tolist()} | {m.get('label') or ''} | "
                             f"{m['frequency_THz']:.3f} | {m['n_degenerate']} | {m.get('irrep') or ''} |")
        if s["dynamically_stable"]:
            low = s["lowest_mode"]
            text = (f"; lowest {low['frequency_THz']:.3f} THz at q = {np.round(low['qpoint'], 4).tolist()}"
                    if low else "")
            lines.append(f"None: the structure is dynamically stable in the harmonic approximation{text}.")
        elif not s["unstable_modes"]:
            lines.append(f"{s['n_imaginary_mesh']} imaginary modes on the mesh, none at a commensurate q-point.")
        for w in h.get("warnings", []):
            lines.append(f"\n> {w}")
        curves = h.get("mode_energy_curves", [])
        if curves:
            lines += ["", "Energy along the unstable modes (double wells):", "",
                      "| mode | ω (THz) | well depth (meV / primitive cell) | minimum: largest displacement (Å) |",
                      "|---|---:|---:|---:|"]
            for c in curves:
                well = c.get("well") or {}
                lines.append(f"| {c.get('label')} q={np.round(c.get('qpoint', []), 3).tolist()} band {c.get('band_index')} | "
                             f"{_fmt(c.get('frequency_THz'))} | {_fmt(well.get('depth_meV_per_primitive_cell'))} | "
                             f"{_fmt(well.get('max_displacement_A'))} |")
        lines.append("")
    return lines


def departure_lines(rows: List[dict], summaries: List[dict], z_threshold: float) -> List[str]:
    unstable = {s["name"] for s in summaries if not s["dynamically_stable"]}
    lines = ["", "## Where the harmonic picture departs from MD", "",
             f"z = |harmonic − MD| / √(σ_MD² + σ_harm²) with the standard errors of both sides (MD: block "
             f"averages; harmonic EFG: jackknife over the samples; the phonopy MSD is exact, σ = 0). A quantity "
             f"**departs** when z ≥ {z_threshold:g}; '–' where neither side has an error bar. The MD is "
             f"classical: the classical rows are the like-for-like comparison, the quantum rows add "
             f"zero-point motion.", ""]
    if unstable:
        lines += [f"Rows marked † compare with a reference with unstable modes "
                  f"({', '.join(f'`{n}`' for n in sorted(unstable))}): its harmonic values come from the "
                  f"stable modes only, so a departure there measures the fluctuations of the unstable "
                  f"modes (and anharmonicity), not a failure of a harmonic model of that phase.", ""]
    lines += ["| quantity | species | T (K) | reference | statistics | MD | harmonic | harmonic − MD | z | departs |",
              "|---|---|---:|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        mark = " †" if r["reference"] in unstable else ""
        z = "–" if r["z"] is None else f"{r['z']:.1f}"
        verdict = "–" if r["departs"] is None else ("**yes**" if r["departs"] else "no")
        lines.append(f"| {r['quantity']} ({r['unit']}) | {r['species']} | {r['temperature_K']:.0f} | "
                     f"`{r['reference']}`{mark} | {r['statistics']} | {_fmt(r['md'], r['md_error'])} | "
                     f"{_fmt(r['harmonic'], r['harmonic_error'])} | {r['difference']:+.3g} | {z} | {verdict} |")
    n = sum(bool(r["departs"]) for r in rows)
    lines += ["", f"{n} of {len(rows)} comparisons depart (z ≥ {z_threshold:g})."]
    return lines


def write_report(out: Path, harmonics: List[dict], summaries: List[dict], scan: dict, rows: List[dict],
                 pairing: List[dict], figures: Dict[str, str], z_threshold: float) -> str:
    """``out/report.md``; returns its text."""
    lines = ["# Harmonic vs anharmonic MD", ""]
    inputs = harmonics[0].get("inputs", {})
    lines += [f"Potential: `{inputs.get('potential')}`; EFG model: `{inputs.get('efg_model')}`.", ""]
    lines += transition_lines(scan)
    lines += reorientation_lines(scan)
    lines += reference_lines(summaries, pairing)
    lines += imaginary_mode_lines(harmonics, summaries)
    lines += departure_lines(rows, summaries, z_threshold)
    lines += ["", "## Figures", ""]
    for title, name in figures.items():
        lines += [f"### {title}", "", f"![{title}]({name})", ""]
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    return text
