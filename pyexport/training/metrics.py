"""Predictions of an energy model on prepared structures and their errors: RMSE and MAE of
energies (meV/atom), forces (meV/Å per component) and stresses (GPa per Voigt component)."""
from typing import Dict, Sequence

import numpy as np
import torch

from .batches import batch_forward, batches, make_batch
from .data import Prepared


def predict(energy_model: torch.nn.Module, items: Sequence[Prepared], max_atoms: int = 4000) -> dict:
    """Model predictions for ``items``: energies (B,), forces list of (n, 3), stresses (B, 6)."""
    energies, forces, stresses = [], [], []
    for group in batches(items, max_atoms):
        batch = make_batch(group)
        e, f, s = batch_forward(energy_model, batch)
        energies.append(e.detach())
        stresses.append(s.detach())
        forces.extend(torch.split(f.detach(), [p.n_atoms for p in group]))
    if not items:
        return {"energy": torch.zeros(0, dtype=torch.float64), "forces": [],
                "stress": torch.zeros((0, 6), dtype=torch.float64)}
    return {"energy": torch.cat(energies), "forces": forces, "stress": torch.cat(stresses)}

def error_metrics(items: Sequence[Prepared], pred: dict) -> dict:
    """RMSE and MAE of energies (meV/atom), forces (meV/Å per component) and stresses (GPa per
    Voigt component, structures that have a stress)."""
    out = {"n_structures": len(items), "n_atoms": int(sum(p.n_atoms for p in items)),
           "n_stress": int(sum(p.stress is not None for p in items))}
    if not items:
        return out
    n = torch.tensor([p.n_atoms for p in items], dtype=torch.float64)
    de = (pred["energy"] - torch.tensor([p.energy for p in items], dtype=torch.float64)) / n * 1000.0
    df = torch.cat([f - p.forces for f, p in zip(pred["forces"], items)]).reshape(-1) * 1000.0
    out.update(energy_rmse_meV_per_atom=float(de.pow(2).mean().sqrt()),
               energy_mae_meV_per_atom=float(de.abs().mean()),
               forces_rmse_meV_per_A=float(df.pow(2).mean().sqrt()), forces_mae_meV_per_A=float(df.abs().mean()))
    with_s = [k for k, p in enumerate(items) if p.stress is not None]
    if with_s:
        ds = torch.stack([pred["stress"][k] - items[k].stress for k in with_s]).reshape(-1)
        out.update(stress_rmse_GPa=float(ds.pow(2).mean().sqrt()), stress_mae_GPa=float(ds.abs().mean()))
    return out

def split_metrics(energy_model: torch.nn.Module, prepared: Sequence[Prepared], splits: Dict[str, np.ndarray]) -> dict:
    return {name: error_metrics([prepared[k] for k in idx], predict(energy_model, [prepared[k] for k in idx]))
            for name, idx in splits.items()}
