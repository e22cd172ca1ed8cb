"""``efg compare``: the harmonic picture (``efg harmonic``, phonopy) against anharmonic MD
(``efg analyze`` runs collected by ``efg scan``), per temperature and species, each MD
temperature against the harmonic model of the phase the MD is in.

    efg compare scan.json --harmonic ortho.json:0-250 --harmonic cubic.json:620- -o report/

**Which baseline at which temperature.** A harmonic model describes small vibrations about one
structure; it is a baseline for MD only in the phase of that structure. Each ``--harmonic
PATH:RANGE`` names an ``efg harmonic`` report and the MD temperatures (K, inclusive) it is the
baseline for: ``0-250``, ``620-`` (no upper end), ``-250`` (no lower end) or ``all``. Ranges may
not overlap. An MD temperature in no range has **no harmonic reference** and the report says so,
instead of comparing, e.g., orthorhombic MD with the harmonic model of the cubic cell. The ranges
are the user's statement of where each phase is; the report lists the transitions ``efg scan``
found next to them and notes a range that contains one. A reference with imaginary modes (the
cubic phase of a tilting perovskite above its transitions) is still a baseline, of the stable
modes only: its unstable modes are named in the report, and its MSD and EFG leave out exactly the
fluctuations those modes carry.

Compared at every MD temperature with a reference (harmonic values interpolated linearly in T on
the reference's own temperature grid, never extrapolated):

- mean-square displacements per species (isotropic, Å²): MD about the mean positions vs phonopy
  on the mesh (quantum and classical statistics, real modes only; MD is classical, so the
  classical rows are the like-for-like ones);
- |C_Q(⟨V⟩)| and η(⟨V⟩) per species: MD frames vs harmonic samples, same EFG model;
- the vibrational DOS from the MD velocities (VACF) over the phonopy DOS of each reference, both
  normalised to unit area (imaginary modes drawn at negative frequency).

From the scan alone (no harmonic counterpart): where c/a goes to 1 and, for molecular cations
(MAPbI3), the reorientation times τ1, τ2 against T with their Arrhenius activation energies.

**Departs.** z = |harmonic − MD| / √(σ_MD² + σ_harm²), with the standard errors of both sides (MD:
block averages; harmonic: the jackknife over the samples for the EFG, 0 for the phonopy MSD, which
is exact). A quantity *departs* from the harmonic baseline when z ≥ ``z_threshold`` (default 3,
``--z-threshold``); with no error bar on either side z is undefined and nothing is claimed.

Writes ``report.md`` (Markdown, figures beside it), ``compare.json`` and the PNGs into the output
folder (:mod:`efg.compare_report`).
"""
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from pyexport.outputs import refuse_overwriting_inputs, same_file, write_json

from .compare_report import REPORT_FILES, plot_dos, plot_quantity, write_report
from .report import RunReport

STATISTICS = ("quantum", "classical")
#: z at and above which a quantity departs from the harmonic baseline
DEFAULT_Z_THRESHOLD = 3.0


@dataclass
class HarmonicReference:
    """An ``efg harmonic`` report and the MD temperatures it is the baseline for: ``t_min_K`` ≤
    T ≤ ``t_max_K`` (K; -inf / inf for an open end)."""

    path: Path
    t_min_K: float = -math.inf
    t_max_K: float = math.inf

    @classmethod
    def parse(cls, text: str) -> "HarmonicReference":
        """``PATH:TMIN-TMAX`` (K, inclusive; either end may be left out: ``620-``, ``-250``) or
        ``PATH:all``. The range follows the last ':' of the text."""
        path, sep, spec = str(text).rpartition(":")
        if not sep or not path:
            raise ValueError(f"--harmonic {text!r}: expected PATH:TMIN-TMAX (K), e.g. "
                             f"harmonic_ortho.json:0-250, harmonic_cubic.json:620- or PATH:all")
        spec = spec.strip()
        if spec == "all":
            return cls(Path(path))
        low, dash, high = spec.partition("-")
        try:
            if not dash:
                raise ValueError
            t_min = float(low) if low.strip() else -math.inf
            t_max = float(high) if high.strip() else math.inf
        except ValueError:
            raise ValueError(f"--harmonic {text!r}: the temperature range {spec!r} is not TMIN-TMAX "
                             f"(K, e.g. 0-250, 620- or -250) or 'all'") from None
        if t_max < t_min:
            raise ValueError(f"--harmonic {text!r}: the range ends below its start")
        return cls(Path(path), t_min, t_max)

    def covers(self, temperature_K: float) -> bool:
        return self.t_min_K - 1e-9 <= temperature_K <= self.t_max_K + 1e-9

    @property
    def range_text(self) -> str:
        if math.isinf(self.t_min_K) and math.isinf(self.t_max_K):
            return "all"
        low = "" if math.isinf(self.t_min_K) else f"{self.t_min_K:g}"
        high = "" if math.isinf(self.t_max_K) else f"{self.t_max_K:g}"
        return f"{low}–{high}" if low and high else (f"≥ {low}" if low else f"≤ {high}")


ReferenceArg = Union[HarmonicReference, str]


def check_ranges(references: Sequence[HarmonicReference]) -> None:
    """Raise ``ValueError`` when two references claim the same temperature."""
    ordered = sorted(references, key=lambda r: r.t_min_K)
    for a, b in zip(ordered[:-1], ordered[1:]):
        if b.t_min_K <= a.t_max_K:
            raise ValueError(f"--harmonic: the ranges of {a.path} ({a.range_text} K) and {b.path} "
                             f"({b.range_text} K) overlap; each MD temperature has at most one "
                             f"harmonic reference")


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


def _number(value) -> float:
    """A JSON number as float; null (no number) as NaN, for the arithmetic below only."""
    return math.nan if value is None else float(value)


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
                    series["cq"][el] = np.array([_number(s["abs_cq_of_mean_tensor_mhz"]["value"]) for s in sp])
                    series["cq_err"][el] = np.array([_number(s["abs_cq_of_mean_tensor_mhz"]["error"]) for s in sp])
                series["eta"][el] = np.array([_number(s["eta_of_mean_tensor"]["value"]) for s in sp])
                series["eta_err"][el] = np.array([_number(s["eta_of_mean_tensor"]["error"]) for s in sp])
        out[stat] = series
    return out


def md_series(runs: List[RunReport]) -> dict:
    temps = np.array([r.temperature_K for r in runs], float)
    out = {"T": temps, "msd": {}, "msd_err": {}, "cq": {}, "cq_err": {}, "eta": {}, "eta_err": {}}
    for el in runs[0].species:
        if all(r.dynamics.get("msd") for r in runs):
            out["msd"][el] = np.array([_number(r.dynamics["msd"][el]["msd_iso_A2"]["value"]) for r in runs])
            out["msd_err"][el] = np.array([_number(r.dynamics["msd"][el]["msd_iso_A2"]["error"]) for r in runs])
        sp = [r.species[el] for r in runs]
        if sp[0].isotope:
            out["cq"][el] = np.array([_number(s.abs_cq_of_mean_tensor_mhz.value) for s in sp])
            out["cq_err"][el] = np.array([_number(s.abs_cq_of_mean_tensor_mhz.error) for s in sp])
        out["eta"][el] = np.array([_number(s.eta_of_mean_tensor.value) for s in sp])
        out["eta_err"][el] = np.array([_number(s.eta_of_mean_tensor.error) for s in sp])
    return out


def z_score(md_value: float, md_error: float, harmonic_value: float, harmonic_error: float
            ) -> Optional[float]:
    """|harmonic − MD| / √(σ_MD² + σ_harm²); None when neither side has an error bar (a
    missing error counts as none) or a value is missing."""
    errors = [e for e in (md_error, harmonic_error) if e is not None and math.isfinite(e)]
    sigma = math.hypot(*errors) if errors else 0.0
    if sigma <= 0 or not (math.isfinite(md_value) and math.isfinite(harmonic_value)):
        return None
    return abs(harmonic_value - md_value) / sigma


def departs(z: Optional[float], z_threshold: float) -> Optional[bool]:
    """Whether a quantity with score ``z`` departs from the harmonic baseline: z ≥ threshold;
    None (no claim) when z is undefined."""
    return None if z is None else bool(z >= z_threshold)


def comparison_rows(md: dict, harm: Dict[str, dict], reference: str, temperatures: Sequence[float],
                    z_threshold: float = DEFAULT_Z_THRESHOLD) -> List[dict]:
    """One row per (quantity, species, MD temperature in ``temperatures``, statistics) that
    both sides have; ``reference`` names the harmonic report in each row."""
    rows = []
    for quantity, unit in (("msd", "Å²"), ("cq", "MHz"), ("eta", "")):
        for el, md_values in md[quantity].items():
            for stat, h in harm.items():
                if el not in h[quantity]:
                    continue
                for k, t in enumerate(md["T"]):
                    if t not in temperatures:
                        continue
                    hv = _interp(t, h["T"], h[quantity][el])
                    if hv is None or not math.isfinite(hv):
                        continue
                    he = _interp(t, h["T"], h[quantity + "_err"][el])
                    mv, me = float(md_values[k]), float(md[quantity + "_err"][el][k])
                    z = z_score(mv, me, hv, he)
                    rows.append({"quantity": quantity, "unit": unit, "species": el, "statistics": stat,
                                 "temperature_K": float(t), "reference": reference, "md": mv,
                                 "md_error": me, "harmonic": hv, "harmonic_error": he,
                                 "difference": hv - mv, "relative_difference": (hv - mv) / mv if mv else None,
                                 "z": z, "departs": departs(z, z_threshold)})
    return rows


def unstable_modes(harmonic: dict) -> List[dict]:
    """The imaginary modes of a harmonic report at its special points and at the other
    commensurate q-points: {label, qpoint, frequency_THz, n_degenerate, irrep} per degenerate
    set (the same modes its sampling leaves out)."""
    imag = harmonic.get("imaginary_modes", {})
    special = imag.get("special_points", [])
    labels = {p.get("label") for p in special}
    points = special + [p for p in imag.get("commensurate_qpoints", [])
                        if p.get("label") is None or p.get("label") not in labels]
    out = []
    for p in points:
        seen = set()
        for mode in p["imaginary"]:
            key = tuple(mode.get("degenerate_bands") or [mode["band_index"]])
            if key in seen:
                continue
            seen.add(key)
            out.append({"label": p.get("label"), "qpoint": p["qpoint"], "frequency_THz": mode["frequency_THz"],
                        "n_degenerate": len(key), "irrep": mode.get("irrep")})
    return out


def reference_summary(ref: HarmonicReference, harmonic: dict, name: str, md_temperatures) -> dict:
    """What the report says about one reference: its structure, modes and MD temperatures."""
    imag = harmonic.get("imaginary_modes", {})
    mesh = imag.get("mesh", {})
    stable = imag.get("dynamically_stable")
    if stable is None:        # a report of an efg harmonic before the flag was written
        stable = not mesh.get("n_imaginary") and not unstable_modes(harmonic)
    return {"name": name, "path": str(ref.path), "range_K": [ref.t_min_K, ref.t_max_K],
            "range_text": ref.range_text, "space_group": harmonic["structure"]["space_group"],
            "formula": harmonic["structure"]["formula"],
            "n_atoms_supercell": harmonic["structure"].get("n_atoms_supercell"),
            "supercell_matrix": harmonic.get("inputs", {}).get("supercell_matrix"),
            "dynamically_stable": bool(stable), "mesh": mesh.get("mesh"),
            "n_imaginary_mesh": mesh.get("n_imaginary"), "n_modes_mesh": mesh.get("n_modes"),
            "lowest_mode": mesh.get("lowest_mode"), "unstable_modes": unstable_modes(harmonic),
            "relaxation": harmonic.get("relaxation"),
            "md_temperatures_K": [float(t) for t in md_temperatures if ref.covers(t)]}


def transitions_in_range(scan: dict, ref: HarmonicReference) -> List[str]:
    """The significant transitions of the scan (tilts, c/a, the combined T_c) inside the range
    of ``ref``: a reference that spans a transition is the baseline of two phases."""
    found = []
    candidates = [(f"{name} tilt", e) for name, e in scan.get("tilt_transitions_K", {}).items()]
    if scan.get("c_over_a_transition_K"):
        candidates.append(("c/a", scan["c_over_a_transition_K"]))
    for name, e in candidates:
        if e.get("significant") and e.get("tc_K") is not None and ref.covers(e["tc_K"]):
            found.append(f"{name} at {e['tc_K']:.0f} ± {e['tc_error_K']:.0f} K")
    return found


def compare(references: Union[ReferenceArg, Sequence[ReferenceArg]], scan_path, output,
            z_threshold: float = DEFAULT_Z_THRESHOLD) -> dict:
    """Write the report (see the module docstring) and return ``compare.json`` as a dict.
    ``references``: :class:`HarmonicReference` objects or ``"PATH:RANGE"`` strings."""
    if isinstance(references, (str, Path, HarmonicReference)):
        references = [references]
    refs = [r if isinstance(r, HarmonicReference) else HarmonicReference.parse(r) for r in references]
    if not refs:
        raise ValueError("efg compare: at least one --harmonic PATH:RANGE is needed")
    if not z_threshold > 0:
        raise ValueError(f"--z-threshold: must be > 0, got {z_threshold}")
    check_ranges(refs)
    refuse_overwriting_inputs([r.path for r in refs] + [scan_path],
                              [Path(output) / name for name in REPORT_FILES])
    harmonics = [_load(r.path) for r in refs]
    for r, h in zip(refs, harmonics):
        if h.get("command") != "efg harmonic":
            raise ValueError(f"{r.path}: not an efg harmonic report")
    scan = _load(scan_path)
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
    names = _reference_names(refs)
    summaries, series, rows = [], [], []
    for r, h, name in zip(refs, harmonics, names):
        summary = reference_summary(r, h, name, md["T"])
        summary["transitions_in_range"] = transitions_in_range(scan, r)
        summaries.append(summary)
        series.append(harmonic_series(h))
        rows += comparison_rows(md, series[-1], name, summary["md_temperatures_K"], z_threshold)
    pairing = []
    for t in md["T"]:
        match = [(summary, harm) for summary, harm in zip(summaries, series)
                 if t in summary["md_temperatures_K"]]
        entry = {"temperature_K": float(t), "reference": match[0][0]["name"] if match else None}
        if match and not any(_interp(t, h["T"], h["T"]) is not None for h in match[0][1].values()):
            entry["note"] = (f"outside the temperatures of {match[0][0]['path']}: "
                             f"nothing compared (harmonic values are never extrapolated)")
        pairing.append(entry)

    figures = {}
    ranges = [(s["name"], r) for s, r in zip(summaries, refs)]
    for quantity, label, name in (("msd", "MSD (Å²)", "msd_vs_T.png"), ("cq", "|C_Q(⟨V⟩)| (MHz)", "cq_vs_T.png"),
                                  ("eta", "η(⟨V⟩)", "eta_vs_T.png")):
        made = plot_quantity(md, list(zip(ranges, series)), quantity, label, out / name)
        if made:
            figures[f"{label} vs T"] = made
    made = plot_dos(runs, [(s["name"], h) for s, h in zip(summaries, harmonics)], out / "dos.png")
    if made:
        figures["Vibrational DOS: MD (VACF) over phonopy"] = made
    copied = set()
    for r, h, s in zip(refs, harmonics, summaries):
        harmonic_dir = Path(r.path).resolve().parent
        for key, title in (("bands_png", "Phonon bands and DOS (phonopy)"), ("modes_png", "Energy along unstable modes"),
                           ("msd_png", "Harmonic MSD")):
            src = h.get("outputs", {}).get(key)
            if not src:
                continue
            src = Path(src) if Path(src).is_absolute() else harmonic_dir / Path(src).name
            if not src.is_file():
                continue
            name = src.name if src.name not in copied else f"{s['name']}_{src.name}"
            copied.add(name)
            if not same_file(src, out / name):     # report written beside the harmonic run
                shutil.copy(src, out / name)
            figures[f"{title}: {s['name']} ({s['space_group']})"] = name
    scan_dir = Path(scan_path).resolve().parent
    for name in scan.get("plots", []):
        if (scan_dir / name).is_file():
            if not same_file(scan_dir / name, out / name):
                shutil.copy(scan_dir / name, out / name)
            figures[f"efg scan: {name}"] = name
    write_report(out, harmonics, summaries, scan, rows, pairing, figures, z_threshold)
    result = {"efgmd": "efg compare", "scan": str(scan_path), "z_threshold": z_threshold,
              "references": summaries, "temperatures": pairing, "rows": rows,
              "n_departing": int(sum(bool(r["departs"]) for r in rows)), "figures": figures}
    write_json(out / "compare.json", result)
    return result


def _reference_names(refs: Sequence[HarmonicReference]) -> List[str]:
    """Short names of the references for the report: the file stems, made unique."""
    names = []
    for r in refs:
        name = Path(r.path).stem
        while name in names:
            name = f"{name}_{len(names)}"
        names.append(name)
    return names
