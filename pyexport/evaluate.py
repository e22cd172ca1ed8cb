"""Errors of an exported potential on labelled structures (``pyexport eval``): predictions through
the file itself (the ASE calculator, :mod:`pyexport.calculator`), RMSE/MAE metrics, the
extrapolation grade where the model has an active set, and the parity plot."""
from typing import Sequence

import numpy as np

from .units import GPA_PER_EV_A3


def evaluate_file_model(model_path: str, structures: Sequence) -> dict:
    """Per-structure predictions of an exported model (through the ASE calculator, i.e. the
    file itself) and the RMSE/MAE metrics: ``{"metrics": {...}, "parity": {name: (ref, pred)}}``."""
    from .calculator import MLFFCalculator

    calc = MLFFCalculator(model_path)
    e_ref, e_pred, n_atoms, f_ref, f_pred, s_ref, s_pred, grade = [], [], [], [], [], [], [], []
    for st in structures:
        atoms = st.atoms.copy()
        atoms.calc = calc
        if calc.has_grade:
            grade.append(float(calc.get_property("extrapolation_grade", atoms).max()))
        e_pred.append(atoms.get_potential_energy())
        f_pred.append(atoms.get_forces())
        e_ref.append(st.energy)
        n_atoms.append(len(atoms))
        f_ref.append(st.forces)
        if st.stress is not None:
            s_ref.append(st.stress)
            s_pred.append(atoms.get_stress())

    n = np.array(n_atoms, dtype=float)
    de = (np.array(e_pred) - np.array(e_ref)) / n * 1000.0
    df = (np.concatenate(f_pred) - np.concatenate(f_ref)).ravel() * 1000.0
    metrics = {"n_structures": len(structures), "n_atoms": int(n.sum()), "n_stress": len(s_ref),
               "energy_rmse_meV_per_atom": float(np.sqrt(np.mean(de ** 2))),
               "energy_mae_meV_per_atom": float(np.mean(np.abs(de))),
               "forces_rmse_meV_per_A": float(np.sqrt(np.mean(df ** 2))),
               "forces_mae_meV_per_A": float(np.mean(np.abs(df)))}
    if grade:
        metrics["extrapolation_grade"] = {
            "max": max(grade), "median_of_structure_max": float(np.median(grade)),
            "structures_above_1": int(sum(g > 1.0 for g in grade)),
            "structures_above_2": int(sum(g > 2.0 for g in grade)),
            "per_structure_max": grade}
    parity = {"energy_per_atom_eV": (np.array(e_ref) / n, np.array(e_pred) / n),
              "forces_eV_per_A": (np.concatenate(f_ref).ravel(), np.concatenate(f_pred).ravel())}
    if s_ref:
        ds = (np.array(s_pred) - np.array(s_ref)).ravel() * GPA_PER_EV_A3
        metrics.update(stress_rmse_GPa=float(np.sqrt(np.mean(ds ** 2))), stress_mae_GPa=float(np.mean(np.abs(ds))))
        parity["stress_GPa"] = (np.array(s_ref).ravel() * GPA_PER_EV_A3, np.array(s_pred).ravel() * GPA_PER_EV_A3)
    return {"metrics": metrics, "parity": parity}


def plot_parity(parity: dict, metrics: dict, path: str, title: str) -> None:
    """Reference against model, one panel per quantity, the RMSE in each title; PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("energy_per_atom_eV", "E (eV/atom)", "energy_rmse_meV_per_atom", "meV/atom"),
              ("forces_eV_per_A", "F (eV/Å)", "forces_rmse_meV_per_A", "meV/Å"),
              ("stress_GPa", "S (GPa)", "stress_rmse_GPa", "GPa")]
    panels = [p for p in panels if p[0] in parity]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4))
    for ax, (key, label, rmse_key, unit) in zip(np.atleast_1d(axes), panels):
        ref, pred = parity[key]
        lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=0.8)
        ax.plot(ref, pred, ".", ms=2 if key == "forces_eV_per_A" else 4, alpha=0.6)
        ax.set_xlabel(f"reference {label}")
        ax.set_ylabel(f"model {label}")
        ax.set_title(f"RMSE {metrics[rmse_key]:.3g} {unit}")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
