"""Temperature scan (``efg scan``): observables of several ``efg analyze`` runs against
temperature, and where they change. (Not :mod:`pyexport.scan`, the energy along a displacement
pattern.)

    efg scan run_150K.json run_250K.json ... -o scan.json

Each run contributes its temperature (``--temperature`` of ``efg analyze``) and, with error bars:
per species C_Q(⟨V⟩), |C_Q|(⟨V⟩), η(⟨V⟩), ⟨|C_Q|⟩, ⟨η⟩; and for perovskites the octahedral tilt
order parameters (R and M, largest over the axes), the pseudocubic lattice parameters, their
spread (max − min, zero when the lattice is metrically cubic) and the pseudocubic c/a; with
molecular cations (``molecules`` in the runs, MAPbI3), the reorientation times τ1 and τ2 (ps).

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

c/a is the tetragonal distortion of the pseudocubic cell: c is the *unique* axis, the lattice
parameter most different from the other two in the lowest-temperature run (the same axis at
every T), and c/a = c / mean(other two), errors propagated from the per-axis errors as if
independent. Its T_c (``c_over_a_transition_K``) comes from the order-parameter model applied to
c/a − 1 (1 − c/a when the unique axis is the short one), where c/a → 1 on heating.

The reorientation times of the molecules get no transition fit but an Arrhenius law,
τ(T) = τ₀ exp(E_a / k_B T): a straight line ln τ against 1/T, weighted by the errors of ln τ,
over the temperatures where the molecules decorrelated within the run (the others are listed as
excluded, never given a τ). The error of E_a (meV) comes from the fit's covariance, inflated by
√(χ²/dof) where that exceeds 1.
"""
import logging
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from pyexport.outputs import refuse_overwriting_inputs, write_json

from .report import RunReport

log = logging.getLogger(__name__)

MIN_ERROR_FRACTION = 1e-3     # floor on relative errors so one tiny error bar cannot dominate
ORDER_PARAMETERS = ("structure:tilt_R_deg", "structure:tilt_M_deg")
C_OVER_A = "structure:c_over_a"
REORIENTATION = ("molecules:tau1_ps", "molecules:tau2_ps")
BOLTZMANN_MEV_PER_K = 8.617333262e-2


def collect_curves(runs: Sequence[RunReport]) -> Dict[str, dict]:
    """{name: {"T": (n,), "y": (n,), "err": (n,), "label": str}} from efg analyze reports."""
    temperatures = np.array([r.temperature_K for r in runs], dtype=float)
    curves: Dict[str, dict] = {}

    def add(name, label, values, errors, **extra):
        curves[name] = {"T": temperatures, "y": np.array(values, float), "err": np.array(errors, float),
                        "label": label, "extra": extra}

    for s in runs[0].quadrupolar_species():
        iso = runs[0].species[s].isotope
        for key, label in (("abs_cq_of_mean_tensor_mhz", f"|C_Q(⟨V⟩)| {iso} (MHz)"),
                           ("mean_abs_cq_mhz", f"⟨|C_Q|⟩ {iso} (MHz)"),
                           ("eta_of_mean_tensor", f"η(⟨V⟩) {iso}"),
                           ("mean_eta", f"⟨η⟩ {iso}")):
            add(f"{s}:{key}", label, [r.species[s].estimate(key).largest() for r in runs],
                [r.species[s].estimate(key).error_of_largest() for r in runs])
    without = [str(r.temperature_K) for r in runs if not r.structure]
    if without and len(without) < len(runs):
        log.warning("no structural curves (tilts, lattice): no perovskite analysis in the runs at "
                    "%s K (see efg analyze's message for those dumps)", ", ".join(without))
    if not without:
        for key, label in (("tilt_R_deg", "R tilt (out-of-phase), largest axis (°)"),
                           ("tilt_M_deg", "M tilt (in-phase), largest axis (°)")):
            add(f"structure:{key}", label, [r.structure[key].largest() for r in runs],
                [r.structure[key].error_of_largest() for r in runs])
        lattice = np.array([r.structure["lattice_pc_A"].value for r in runs])
        lattice_err = np.array([r.structure["lattice_pc_A"].error for r in runs])
        for axis, name in enumerate("abc"):
            add(f"structure:lattice_{name}", f"pseudocubic {name} (Å)", lattice[:, axis], lattice_err[:, axis])
        spread = lattice.max(axis=1) - lattice.min(axis=1)
        spread_err = np.sqrt(lattice_err[np.arange(len(runs)), lattice.argmax(axis=1)] ** 2
                             + lattice_err[np.arange(len(runs)), lattice.argmin(axis=1)] ** 2)
        add("structure:lattice_spread", "lattice spread max − min (Å)", spread, spread_err)
        ratio, ratio_err, axis = c_over_a(lattice, lattice_err, temperatures)
        add(C_OVER_A, f"pseudocubic c/a (c = {'abc'[axis]})", ratio, ratio_err, unique_axis="abc"[axis])
    add_reorientation_curves(runs, add)
    return curves


def c_over_a(lattice: np.ndarray, lattice_err: np.ndarray, temperatures: np.ndarray):
    """Pseudocubic c/a per run from lattice parameters (n, 3) Å and their errors (n, 3):
    (c/a (n,), errors (n,), index of the unique axis) — see the module docstring."""
    low = lattice[int(np.argmin(temperatures))]
    axis = int(np.argmax([abs(low[k] - np.delete(low, k).mean()) for k in range(3)]))
    others = [k for k in range(3) if k != axis]
    a = lattice[:, others].mean(axis=1)
    ratio = lattice[:, axis] / a
    error = np.sqrt((lattice_err[:, axis] / a) ** 2
                    + (ratio / a) ** 2 * (lattice_err[:, others] ** 2).sum(axis=1) / 4.0)
    return ratio, error, axis


def add_reorientation_curves(runs: Sequence[RunReport], add) -> None:
    """τ1, τ2 (ps) of the molecular axes vs T: nan (no τ) where the molecules did not decorrelate."""
    if not any(r.molecules is not None for r in runs):
        return
    without = [str(r.temperature_K) for r in runs if "tau2_ps" not in (r.molecules or {})]
    if without:
        log.warning("no reorientation curves: no molecular reorientation times in ps in the runs at "
                    "%s K (no molecules, frames not evenly spaced, or no --md-timestep)", ", ".join(without))
        return
    axis = runs[0].molecules["axis"]
    for name in REORIENTATION:
        key = name.split(":")[1]
        entries = [r.molecules[key] for r in runs]
        values = [e["value"] if e["decorrelated"] else np.nan for e in entries]
        errors = [e["error"] if e["decorrelated"] and e["error"] is not None else np.nan for e in entries]
        add(name, f"{key.split('_')[0].replace('tau', 'τ')} {axis} (ps)", values, errors)


def _weights(y, err):
    floor = MIN_ERROR_FRACTION * max(np.abs(y).max(), 1e-12)
    return 1.0 / np.maximum(err, floor) ** 2


def _fit_line(T, y, w):
    A = np.stack([np.ones_like(T), T], axis=1)
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(A * sw[:, None], y * sw, rcond=None)
    return coef, float((w * (A @ coef - y) ** 2).sum())


def _grid_search_start(T, Y, w, n_coefficients: int):
    """What a weighted least-squares search over T_c starts from: Y as (n, B) columns, sqrt of
    the weights, and per column the best chi2 (inf), T_c (nan) and coefficients (0) so far."""
    Y = Y.reshape(len(T), -1)
    return (Y, np.sqrt(w), np.full(Y.shape[1], np.inf), np.full(Y.shape[1], np.nan),
            np.zeros((Y.shape[1], n_coefficients)))


def _fit_break(T, Y, w, grid):
    """Best two-segment fits over the break points ``grid`` for each column of Y (n, B).

    Returns (chi2 (B,), T_c (B,), coefficients a1 b1 a2 b2 (B, 4)); T_c is nan where no break
    point leaves two temperatures on each side."""
    Y, sw, best_chi2, best_tc, best_coef = _grid_search_start(T, Y, w, 4)
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
    Y, sw, best_chi2, best_tc, best_coef = _grid_search_start(T, Y, w, 3)
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


def c_over_a_transition(T, ratio, err, **kwargs) -> dict:
    """T_c where c/a → 1: :func:`order_parameter_transition` of c/a − 1, sign-flipped when the
    unique axis is the short one at the lowest temperature; the fitted curve is given as c/a."""
    T, ratio, err = (np.asarray(v, float) for v in (T, ratio, err))
    sign = 1.0 if ratio[int(np.argmin(T))] >= 1.0 else -1.0
    est = order_parameter_transition(T, sign * (ratio - 1.0), err, **kwargs)
    est["fitted_quantity"] = "c/a - 1" if sign > 0 else "1 - c/a"
    if "fit_curve" in est:
        est["fit_curve"]["value"] = (1.0 + sign * np.asarray(est["fit_curve"]["value"])).tolist()
    return est


def arrhenius(T, tau, err) -> dict:
    """Arrhenius fit τ = τ₀ exp(E_a / k_B T) to times ``tau`` (ps) with errors ``err`` over the
    temperatures ``T`` (K) where both are finite (see the module docstring)."""
    T, tau, err = (np.asarray(v, float) for v in (T, tau, err))
    order = np.argsort(T)
    T, tau, err = T[order], tau[order], err[order]
    used = np.isfinite(tau) & np.isfinite(err) & (tau > 0)
    excluded = [{"temperature_K": float(t), "reason": "not decorrelated within the run" if not np.isfinite(y)
                 else "no error bar"} for t, y in zip(T[~used], tau[~used])]
    out = {"model": "Arrhenius", "excluded": excluded, "temperatures_used_K": T[used].tolist()}
    n = int(used.sum())
    if n < 2:
        return {**out, "fitted": False, "reason": f"{n} temperature(s) with a correlation time: at least 2 are needed"}
    inv_T, log_tau = 1.0 / T[used], np.log(tau[used])
    sigma = np.maximum(err[used] / tau[used], MIN_ERROR_FRACTION)
    A = np.stack([np.ones(n), inv_T], axis=1) / sigma[:, None]
    coef, *_ = np.linalg.lstsq(A, log_tau / sigma, rcond=None)
    covariance = np.linalg.inv(A.T @ A)
    chi2 = float((((np.stack([np.ones(n), inv_T], axis=1) @ coef) - log_tau) ** 2 / sigma ** 2).sum())
    dof = n - 2
    inflation = max(1.0, float(np.sqrt(chi2 / dof))) if dof > 0 else 1.0
    errors = np.sqrt(np.diag(covariance)) * inflation
    t_plot = np.linspace(T[used].min(), T[used].max(), 100)
    tau0 = float(np.exp(coef[0]))
    return {**out, "fitted": True, "activation_energy_meV": float(coef[1] * BOLTZMANN_MEV_PER_K),
            "activation_energy_error_meV": float(errors[1] * BOLTZMANN_MEV_PER_K),
            "tau0_ps": tau0, "tau0_error_ps": float(tau0 * errors[0]), "n_points": n, "chi2": chi2, "dof": dof,
            "error_inflation": inflation,
            "fit_curve": {"temperature_K": t_plot.tolist(), "value": (tau0 * np.exp(coef[1] / t_plot)).tolist()}}


def _estimate(name: str, curve: dict) -> dict:
    """The model each curve gets: Arrhenius for reorientation times, order-parameter collapse
    for tilts and c/a, two segments for the rest."""
    if name in REORIENTATION:
        return arrhenius(curve["T"], curve["y"], curve["err"])
    if name == C_OVER_A:
        return c_over_a_transition(curve["T"], curve["y"], curve["err"])
    estimator = order_parameter_transition if name in ORDER_PARAMETERS else transition
    return estimator(curve["T"], curve["y"], curve["err"])


def _json_list(values) -> list:
    """Floats for JSON, None where there is no number (no τ when not decorrelated)."""
    return [float(v) if np.isfinite(v) else None for v in values]


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


#: the PNGs ``efg scan`` writes beside scan.json: <stem>_<name>.png
PLOT_NAMES = ("cq", "eta", "structure", "molecules")


def scan(run_files: Sequence, output=None, plot=True) -> dict:
    if output:
        stem = Path(output).with_suffix("")
        refuse_overwriting_inputs(run_files, [output] + [f"{stem}_{name}.png" for name in PLOT_NAMES])
    runs = [RunReport.read(f) for f in run_files]
    missing = [str(f) for f, r in zip(run_files, runs) if r.temperature_K is None]
    if missing:
        raise ValueError(f"no temperature in {missing}: run efg analyze with --temperature")
    order = np.argsort([r.temperature_K for r in runs])
    runs = [runs[k] for k in order]
    run_files = [str(run_files[k]) for k in order]
    temps = [r.temperature_K for r in runs]
    if len(set(temps)) != len(temps):
        raise ValueError(f"repeated temperatures {temps}: give one run per temperature")
    curves = collect_curves(runs)
    results = {}
    for name, c in curves.items():
        est = _estimate(name, c)
        est["name"] = name
        results[name] = {"label": c["label"], "temperature_K": c["T"].tolist(), "value": _json_list(c["y"]),
                         "error": _json_list(c["err"]), "transition": est, **c["extra"]}
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
    if C_OVER_A in results:
        est = results[C_OVER_A]["transition"]
        report["c_over_a_transition_K"] = {"unique_axis": results[C_OVER_A]["unique_axis"],
                                           **{k: est.get(k) for k in ("significant", "tc_K", "tc_error_K")}}
    reorientation = {name.split(":")[1]: {k: v for k, v in results[name]["transition"].items()
                                          if k not in ("fit_curve", "name")}
                     for name in REORIENTATION if name in results}
    if reorientation:
        report["reorientation"] = {"axis": runs[0].molecules["axis"], **reorientation}
    if output:
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        if plot:
            report["plots"] = plot_curves(results, report["transition_temperature_K"], output.with_suffix(""))
        write_json(output, report)
    return report


def plot_curves(results: dict, tc: dict, stem: Path) -> List[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    species = [k for k in results if not k.startswith(("structure:", "molecules:"))]
    groups = {"cq": [k for k in species if "cq" in k], "eta": [k for k in species if "eta" in k],
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
    molecules = [k for k in results if k.startswith("molecules:")]
    if molecules:
        written.append(plot_reorientation_times(results, molecules, tc, f"{stem}_molecules.png"))
    return written


def plot_reorientation_times(results: dict, names: List[str], tc: dict, path: str) -> str:
    """τ vs T on a log scale with the Arrhenius fits; temperatures without τ marked on top."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    missing: Dict[float, List[str]] = {}
    any_time = False
    for k, name in enumerate(names):
        r = results[name]
        T = np.array(r["temperature_K"])
        value = np.array([np.nan if v is None else v for v in r["value"]])
        error = np.array([np.nan if e is None else e for e in r["error"]])
        has = np.isfinite(value)
        any_time = any_time or bool(has.any())
        ax.errorbar(T[has], value[has], yerr=np.nan_to_num(error[has]), fmt="o", capsize=3, ms=4,
                    color=f"C{k}", label=r["label"])
        fit = r["transition"]
        if fit.get("fitted"):
            ax.plot(fit["fit_curve"]["temperature_K"], fit["fit_curve"]["value"], "-", color=f"C{k}", lw=1,
                    label=f"Arrhenius E_a = {fit['activation_energy_meV']:.0f} ± "
                          f"{fit['activation_energy_error_meV']:.0f} meV")
        for t in T[~has]:
            missing.setdefault(float(t), []).append(r["label"].split()[0])
    for t, which in missing.items():
        ax.annotate(f"{', '.join(which)}: not decorrelated", (t, 0.97), xycoords=("data", "axes fraction"),
                    rotation=90, ha="center", va="top", fontsize=7, color="0.3")
    temperatures = np.array(results[names[0]]["temperature_K"])
    pad = 0.05 * max(np.ptp(temperatures), 1.0)
    ax.set_xlim(temperatures.min() - pad, temperatures.max() + pad)
    if tc.get("tc_K") is not None:
        ax.axvline(tc["tc_K"], color="k", ls=":", lw=1)
    if any_time:
        ax.set_yscale("log")
    else:       # no run decorrelated: nothing to put on a log axis, only the annotations
        ax.set_yticks([])
    ax.set_xlabel("T (K)")
    ax.set_ylabel("reorientation time (ps)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path).name
