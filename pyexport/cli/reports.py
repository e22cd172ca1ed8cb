"""Tables the commands print: fit errors, committee force uncertainty, EFG-model errors. The
library returns the metrics dicts; these functions only lay them out."""
from typing import Optional


def format_metrics(metrics: dict) -> str:
    """Energy / force / stress RMSE and MAE per split (train, val, test) of a potential fit."""
    rows = [f"{'set':6s} {'n':>5s} {'E RMSE':>9s} {'E MAE':>9s} {'F RMSE':>9s} {'F MAE':>9s} {'S RMSE':>8s} {'S MAE':>8s}",
            f"{'':6s} {'':>5s} {'meV/atom':>9s} {'meV/atom':>9s} {'meV/Å':>9s} {'meV/Å':>9s} {'GPa':>8s} {'GPa':>8s}"]
    for name in ("train", "val", "test"):
        m = metrics.get(name)
        if not m or not m.get("n_structures"):
            continue
        rows.append(f"{name:6s} {m['n_structures']:5d} {m['energy_rmse_meV_per_atom']:9.3f} "
                    f"{m['energy_mae_meV_per_atom']:9.3f} {m['forces_rmse_meV_per_A']:9.2f} "
                    f"{m['forces_mae_meV_per_A']:9.2f} {m.get('stress_rmse_GPa', float('nan')):8.4f} "
                    f"{m.get('stress_mae_GPa', float('nan')):8.4f}")
    return "\n".join(rows)


def format_uncertainty(metrics: dict) -> str:
    """The force-uncertainty lines of a committee's metrics, one per split."""
    rows = [f"{'set':6s} {'atoms':>6s} {'mean σ':>9s} {'max σ':>9s} {'rms |ΔF|':>9s} {'rank corr':>9s}",
            f"{'':6s} {'':>6s} {'meV/Å':>9s} {'meV/Å':>9s} {'meV/Å':>9s} {'σ vs |ΔF|':>9s}"]
    for name in ("train", "val", "test"):
        m = metrics.get("force_uncertainty", {}).get(name)
        if not m:
            continue
        rows.append(f"{name:6s} {m['n_atoms']:6d} {m['sigma_mean_meV_per_A']:9.2f} {m['sigma_max_meV_per_A']:9.2f} "
                    f"{m['force_error_rms_meV_per_A']:9.2f} {m['spearman_sigma_vs_error']:9.3f}")
    return "\n".join(rows)


def format_efg_summary(metrics: dict, output: Optional[str] = None) -> str:
    """Size, training time and per-split, per-species errors of an EFG model fit; with ``output``,
    a last line naming the checkpoint written."""
    lines = [f"EFG model: {metrics['n_parameters']} parameters, cutoff {metrics['cutoff']} Å, "
             f"{metrics['epochs_run']} epochs ({metrics['time_train_s']:.1f} s), best epoch {metrics['best_epoch']}"]
    for split in ("train", "val", "test"):
        m = metrics.get(split, {})
        if not m.get("n_atoms"):
            continue
        parts = [f"{split:5s} component RMSE {m['component_rmse_V_per_A2']:.4f} V/Å² "
                 f"({100 * m['relative_component_rmse']:.2f} % of label std)"]
        for element, s in m["species"].items():
            text = f"{element}: RMSE {s['component_rmse_V_per_A2']:.4f}, eta MAE {s['eta_mae']:.3f}"
            if "cq_mae_MHz" in s:
                text += f", C_Q({s['isotope']}) MAE {s['cq_mae_MHz']:.4g} MHz ({100 * s['relative_cq_mae']:.2f} %)"
            parts.append(text)
        lines.append("; ".join(parts))
    if output:
        lines.append(f"checkpoint written to {output}")
    return "\n".join(lines)
