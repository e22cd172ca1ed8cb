"""``efg scan``: observables of several ``efg analyze`` runs against temperature, and where they
change.

    efg scan run_150K.json run_250K.json ... -o scan.json

Each run contributes its temperature (``--temperature`` of ``efg analyze``) and, with error bars:
per species C_Q(⟨V⟩), |C_Q|(⟨V⟩), η(⟨V⟩), ⟨|C_Q|⟩, ⟨η⟩; and for perovskites the octahedral tilt
order parameters (R and M, largest over the axes), the pseudocubic lattice parameters and their
spread (max − min, zero when the lattice is metrically cubic).

The transition temperature of each curve y(T) is the break point T_c of the best two-segment
fit, y = a₁ + b₁(T − T_c) below and a₂ + b₂(T − T_c) above (a jump and a change of slope both
allowed), weighted by the error bars; T_c is scanned on a fine grid between the second and the
second-to-last temperature. Its uncertainty comes from a parametric bootstrap (the points
resampled within their errors, the fit redone). The F-test against a single straight line says
whether a break is significant at all; curves where it is not report no transition.
The tilt order parameters get the model made for them instead: Φ(T) = Φ₀ + A·√(1 − T/T_c)
below T_c and Φ₀ above (Landau's mean-field collapse onto the finite-size floor Φ₀ ~ 1/√N), tested
against a constant Φ (no transition). Their error bars come from block averages of one short run
each and miss run-to-run scatter, so the bootstrap inflates them by √(χ²/dof) of the fit where that
exceeds 1. The summary ``transition_temperature_K`` combines the significant structural curves
(tilts, lattice spread) by inverse-variance weighting.
"""
import json
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

MIN_ERROR_FRACTION = 1e-3     # floor on relative errors so one tiny error bar cannot dominate
ORDER_PARAMETERS = ("structure:tilt_R_deg", "structure:tilt_M_deg")


def _value(entry) -> float:
    v = entry["value"]
    return float(np.max(v)) if isinstance(v, list) else float(v)


def _error(entry) -> float:
    """Error of the value, or of the largest component for vector entries."""
    v, e = entry["value"], entry["error"]
    if isinstance(v, list):
        return float(np.asarray(e)[int(np.argmax(v))])
    return float(e)


def collect_curves(runs: Sequence[dict]) -> Dict[str, dict]:
    """{name: {"T": (n,), "y": (n,), "err": (n,), "label": str}} from efg analyze reports."""
    temperatures = np.array([r["temperature_K"] for r in runs], dtype=float)
    curves: Dict[str, dict] = {}

    def add(name, label, values, errors):
        curves[name] = {"T": temperatures, "y": np.array(values, float), "err": np.array(errors, float),
                        "label": label}

    species = [s for s, e in runs[0]["species"].items() if e.get("isotope")]
    for s in species:
        iso = runs[0]["species"][s]["isotope"]
        for key, label in (("abs_cq_of_mean_tensor_mhz", f"|C_Q(⟨V⟩)| {iso} (MHz)"),
                           ("mean_abs_cq_mhz", f"⟨|C_Q|⟩ {iso} (MHz)"),
                           ("eta_of_mean_tensor", f"η(⟨V⟩) {iso}"),
                           ("mean_eta", f"⟨η⟩ {iso}")):
            add(f"{s}:{key}", label, [_value(r["species"][s][key]) for r in runs],
                [_error(r["species"][s][key]) for r in runs])
    without = [str(r.get("temperature_K")) for r in runs if not r.get("structure")]
    if without and len(without) < len(runs):
        print("efg scan: no structural curves (tilts, lattice): no perovskite analysis in the runs at "
              f"{', '.join(without)} K (see efg analyze's message for those dumps)", file=sys.stderr)
    if not without:
        for key, label in (("tilt_R_deg", "R tilt (out-of-phase), largest axis (°)"),
                           ("tilt_M_deg", "M tilt (in-phase), largest axis (°)")):
            add(f"structure:{key}", label, [_value(r["structure"][key]) for r in runs],
                [_error(r["structure"][key]) for r in runs])
        lattice = np.array([r["structure"]["lattice_pc_A"]["value"] for r in runs])
        lattice_err = np.array([r["structure"]["lattice_pc_A"]["error"] for r in runs])
        for axis, name in enumerate("abc"):
            add(f"structure:lattice_{name}", f"pseudocubic {name} (Å)", lattice[:, axis], lattice_err[:, axis])
        spread = lattice.max(axis=1) - lattice.min(axis=1)
        spread_err = np.sqrt(lattice_err[np.arange(len(runs)), lattice.argmax(axis=1)] ** 2
                             + lattice_err[np.arange(len(runs)), lattice.argmin(axis=1)] ** 2)
        add("structure:lattice_spread", "lattice spread max − min (Å)", spread, spread_err)
    return curves


def _weights(y, err):
    floor = MIN_ERROR_FRACTION * max(np.abs(y).max(), 1e-12)
    return 1.0 / np.maximum(err, floor) ** 2


def _fit_line(T, y, w):
    A = np.stack([np.ones_like(T), T], axis=1)
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(A * sw[:, None], y * sw, rcond=None)
    return coef, float((w * (A @ coef - y) ** 2).sum())


def _fit_break(T, Y, w, grid):
    """Best two-segment fits over the break points ``grid`` for each column of Y (n, B).

    Returns (chi2 (B,), T_c (B,), coefficients a1 b1 a2 b2 (B, 4)); T_c is nan where no break
    point leaves two temperatures on each side."""
    Y = Y.reshape(len(T), -1)
    sw = np.sqrt(w)
    best_chi2 = np.full(Y.shape[1], np.inf)
    best_tc = np.full(Y.shape[1], np.nan)
    best_coef = np.zeros((Y.shape[1], 4))
    for tc in grid:
        below = T < tc
        if below.sum() < 2 or (~below).sum() < 2:
            continue
        A = np.zeros((len(T), 4))
        A[below, 0], A[below, 1] = 1.0, T[below] - tc
        A[~below, 2], A[~below, 3] = 1.0, T[~below] - tc
        coef, *_ = np.linalg.lstsq(A * sw[:, None], Y * sw[:, None], rcond=None)   # (4, B)
        chi2 = (w[:, None] * (A @ coef - Y) ** 2).sum(axis=0)
        better = chi2 < best_chi2
        best_chi2[better], best_tc[better], best_coef[better] = chi2[better], tc, coef.T[better]
    return best_chi2, best_tc, best_coef


def _bootstrap_interval(fit, T, y, w, sigma, grid, n_bootstrap, seed):
    """16th and 84th percentile of T_c when the points are resampled with Gaussian errors
    ``sigma`` (n,) and refitted by ``fit`` (``_fit_break`` or ``_fit_collapse``)."""
    rng = np.random.default_rng(seed)
    resampled = y[:, None] + rng.normal(size=(len(T), n_bootstrap)) * sigma[:, None]
    samples = fit(T, resampled, w, grid)[1]
    samples = samples[~np.isnan(samples)]
    return np.percentile(samples, [16, 84])


def _sorted_curve(T, y, err):
    """(T, y, weights) as float arrays in order of temperature."""
    order = np.argsort(T)
    T, y, err = np.asarray(T, float)[order], np.asarray(y, float)[order], np.asarray(err, float)[order]
    return T, y, _weights(y, err)


def transition(T, y, err, n_bootstrap=300, seed=0, significance=0.01) -> dict:
    """Break-point estimate of a transition temperature in y(T) (see the module docstring)."""
    from scipy import stats

    T, y, w = _sorted_curve(T, y, err)
    n = len(T)
    if n < 4:
        return {"significant": False, "reason": f"{n} temperatures: at least 4 are needed"}
    grid = np.linspace(T[1], T[-2], 200) + 1e-9
    chi2_break, tc, coef = (v[0] for v in _fit_break(T, y, w, grid))
    chi2_break, tc = float(chi2_break), float(tc)
    _, chi2_line = _fit_line(T, y, w)
    dof_break = n - 5
    if np.isnan(tc):
        return {"significant": False, "reason": "no break point with two temperatures on each side"}
    if dof_break > 0 and chi2_break > 0:
        f = ((chi2_line - chi2_break) / 3) / (chi2_break / dof_break)
        p_value = float(stats.f.sf(f, 3, dof_break))
    else:   # the break model fits exactly: significant if the line does not
        p_value = 0.0 if chi2_line > 3 * n else 1.0
    lo, hi = _bootstrap_interval(_fit_break, T, y, w, 1.0 / np.sqrt(w), grid, n_bootstrap, seed)
    t_plot = np.linspace(T[0], T[-1], 100)
    y_plot = np.where(t_plot < tc, coef[0] + coef[1] * (t_plot - tc), coef[2] + coef[3] * (t_plot - tc))
    return {"model": "two segments", "significant": bool(p_value < significance), "p_value_no_break": p_value,
            "fit_curve": {"temperature_K": t_plot.tolist(), "value": y_plot.tolist()},
            "tc_K": tc, "tc_error_K": float(0.5 * (hi - lo)), "tc_interval_K": [float(lo), float(hi)],
            "chi2_break": chi2_break, "chi2_line": chi2_line,
            "segments": {"below": [float(coef[0]), float(coef[1])], "above": [float(coef[2]), float(coef[3])]}}


EXPONENTS = (0.125, 0.25, 1.0 / 3.0, 0.5)   # β: 2D Ising, tricritical, 3D, mean field


def _fit_collapse(T, Y, w, grid):
    """Best Φ₀ + A·(max(0, 1 − T/T_c))^β over the T_c ``grid`` and the β of ``EXPONENTS`` for each
    column of Y (n, B): (chi2 (B,), T_c (B,), (Φ₀, A, β) (B, 3)), with A ≥ 0 (an order parameter
    that grows on heating is not this transition)."""
    Y = Y.reshape(len(T), -1)
    sw = np.sqrt(w)
    best_chi2 = np.full(Y.shape[1], np.inf)
    best_tc = np.full(Y.shape[1], np.nan)
    best_coef = np.zeros((Y.shape[1], 3))
    for beta in EXPONENTS:
        for tc in grid:
            A = np.stack([np.ones_like(T), np.clip(1.0 - T / tc, 0.0, None) ** beta], axis=1)
            coef, *_ = np.linalg.lstsq(A * sw[:, None], Y * sw[:, None], rcond=None)   # (2, B)
            chi2 = (w[:, None] * (A @ coef - Y) ** 2).sum(axis=0)
            better = (chi2 < best_chi2) & (coef[1] >= 0.0)
            best_chi2[better], best_tc[better] = chi2[better], tc
            best_coef[better] = np.column_stack([coef.T[better], np.full(better.sum(), beta)])
    return best_chi2, best_tc, best_coef


def order_parameter_transition(T, y, err, n_bootstrap=300, seed=0, significance=0.01) -> dict:
    """T_c of an order parameter that collapses on heating (see the module docstring)."""
    from scipy import stats

    T, y, w = _sorted_curve(T, y, err)
    n = len(T)
    if n < 4:
        return {"significant": False, "reason": f"{n} temperatures: at least 4 are needed"}
    step = float(np.min(np.diff(T)))
    grid = np.linspace(T[1] + 1e-9, T[-1] + step, 300)
    chi2_fit, tc, coef = (v[0] for v in _fit_collapse(T, y, w, grid))
    chi2_fit, tc = float(chi2_fit), float(tc)
    if np.isnan(tc):
        return {"significant": False, "reason": "the order parameter does not fall on heating"}
    mean = float((w * y).sum() / w.sum())
    chi2_const = float((w * (y - mean) ** 2).sum())
    dof = n - 4
    if chi2_fit > 0:
        p_value = float(stats.f.sf(((chi2_const - chi2_fit) / 3) / (chi2_fit / dof), 3, dof))
    else:
        p_value = 0.0 if chi2_const > 3 * n else 1.0
    inflation = max(1.0, float(np.sqrt(chi2_fit / dof)))
    lo, hi = _bootstrap_interval(_fit_collapse, T, y, w, inflation / np.sqrt(w), grid, n_bootstrap, seed)
    # T_c between two simulated temperatures cannot be placed better than their spacing allows
    above = min(np.searchsorted(T, tc), n - 1)
    spacing = float(T[above] - T[above - 1]) if above > 0 else step
    tc_error = float(np.hypot(0.5 * (hi - lo), spacing / np.sqrt(12.0)))
    t_plot = np.linspace(T[0], T[-1], 100)
    y_plot = coef[0] + coef[1] * np.clip(1.0 - t_plot / tc, 0.0, None) ** coef[2]
    return {"model": "order parameter collapse", "significant": bool(p_value < significance),
            "p_value_no_transition": p_value, "tc_K": tc, "tc_error_K": tc_error,
            "tc_interval_K": [float(lo), float(hi)], "chi2_fit": chi2_fit, "chi2_constant": chi2_const,
            "error_inflation": inflation, "floor": float(coef[0]), "amplitude": float(coef[1]),
            "exponent": float(coef[2]),
            "fit_curve": {"temperature_K": t_plot.tolist(), "value": y_plot.tolist()}}


def combine(estimates: List[dict]) -> dict:
    good = [e for e in estimates if e.get("significant")]
    if not good:
        return {"tc_K": None, "tc_error_K": None, "from": []}
    tc = np.array([e["tc_K"] for e in good])
    sig = np.maximum([e["tc_error_K"] for e in good], 1e-6)
    weight = 1.0 / sig ** 2
    mean = float((weight * tc).sum() / weight.sum())
    # error: inverse-variance error, widened by the scatter between curves when they disagree
    stat = float(1.0 / np.sqrt(weight.sum()))
    scatter = float(np.sqrt((weight * (tc - mean) ** 2).sum() / weight.sum())) if len(good) > 1 else 0.0
    return {"tc_K": mean, "tc_error_K": float(np.hypot(stat, scatter)), "from": [e["name"] for e in good]}


def scan(run_files: Sequence, output=None, plot=True) -> dict:
    runs = [json.loads(Path(f).read_text()) for f in run_files]
    missing = [str(f) for f, r in zip(run_files, runs) if r.get("temperature_K") is None]
    if missing:
        raise ValueError(f"no temperature in {missing}: run efg analyze with --temperature")
    order = np.argsort([r["temperature_K"] for r in runs])
    runs = [runs[k] for k in order]
    run_files = [str(run_files[k]) for k in order]
    temps = [r["temperature_K"] for r in runs]
    if len(set(temps)) != len(temps):
        raise ValueError(f"repeated temperatures {temps}: give one run per temperature")
    curves = collect_curves(runs)
    results = {}
    for name, c in curves.items():
        estimator = order_parameter_transition if name in ORDER_PARAMETERS else transition
        est = estimator(c["T"], c["y"], c["err"])
        est["name"] = name
        results[name] = {"label": c["label"], "temperature_K": c["T"].tolist(), "value": c["y"].tolist(),
                         "error": c["err"].tolist(), "transition": est}
    # The tilt systems may order at different temperatures (CsPbBr3: the in-phase M tilt goes at
    # orthorhombic → tetragonal, the out-of-phase R tilt at tetragonal → cubic), so each is
    # reported; the summary T_c is where the structure becomes cubic: R tilt and lattice spread.
    structural = [results[k]["transition"] for k in results
                  if k in ("structure:tilt_R_deg", "structure:lattice_spread")]
    tilts = {name.split(":")[1]: {k: results[name]["transition"].get(k) for k in ("significant", "tc_K", "tc_error_K")}
             for name in ORDER_PARAMETERS if name in results}
    by_species = {}
    for name, r in results.items():
        if not name.startswith("structure:") and name.endswith("abs_cq_of_mean_tensor_mhz"):
            by_species[name.split(":")[0]] = r["transition"]
    report = {"efgmd": "efg scan", "runs": run_files, "temperatures_K": temps, "curves": results,
              "transition_temperature_K": combine(structural), "tilt_transitions_K": tilts,
              "cq_transition_K": {s: {k: e.get(k) for k in ("significant", "tc_K", "tc_error_K")}
                                  for s, e in by_species.items()}}
    if output:
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        if plot:
            report["plots"] = plot_curves(results, report["transition_temperature_K"], output.with_suffix(""))
        output.write_text(json.dumps(report, indent=1))
    return report


def plot_curves(results: dict, tc: dict, stem: Path) -> List[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {"cq": [k for k in results if "cq" in k], "eta": [k for k in results if "eta" in k],
              "structure": [k for k in results if k.startswith("structure:")]}
    written = []
    for group, names in groups.items():
        if not names:
            continue
        fig, axes = plt.subplots(len(names), 1, figsize=(6.5, 2.4 * len(names)), sharex=True, squeeze=False)
        for ax, name in zip(axes[:, 0], names):
            r = results[name]
            T = np.array(r["temperature_K"])
            ax.errorbar(T, r["value"], yerr=r["error"], fmt="o", capsize=3, ms=4)
            est = r["transition"]
            if est.get("significant"):
                tcv = est["tc_K"]
                ax.plot(est["fit_curve"]["temperature_K"], est["fit_curve"]["value"], "C1-", lw=1)
                ax.axvspan(*est["tc_interval_K"], color="C1", alpha=0.15)
                ax.set_title(f"T_c = {tcv:.0f} ± {est['tc_error_K']:.0f} K", fontsize=8, loc="right")
            if tc.get("tc_K") is not None:
                ax.axvline(tc["tc_K"], color="k", ls=":", lw=1)
            ax.set_ylabel(r["label"], fontsize=8)
        axes[-1, 0].set_xlabel("T (K)")
        fig.tight_layout()
        path = f"{stem}_{group}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(Path(path).name)
    return written


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("scan", help="C_Q(T), eta(T), tilts and lattice vs T; transition temperature",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run JSON files of efg analyze (each with --temperature)")
    p.add_argument("-o", "--output", required=True, help="scan.json (PNG plots beside it)")
    p.set_defaults(func=run)


def run(args) -> int:
    report = scan(args.runs, args.output)
    tc = report["transition_temperature_K"]
    if tc["tc_K"] is None:
        print("no significant structural transition in this temperature range")
    else:
        print(f"structural transition: T_c = {tc['tc_K']:.1f} ± {tc['tc_error_K']:.1f} K (from {', '.join(tc['from'])})")
    for name, e in report["tilt_transitions_K"].items():
        if e["significant"]:
            print(f"{name}: vanishes at {e['tc_K']:.1f} ± {e['tc_error_K']:.1f} K")
    for s, e in report["cq_transition_K"].items():
        if e["significant"]:
            print(f"{s}: C_Q(<V>) changes at {e['tc_K']:.1f} ± {e['tc_error_K']:.1f} K")
    print(f"wrote {args.output}")
    return 0
