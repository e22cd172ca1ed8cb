"""The loss of a potential fit, the same for the ridge fit and the network::

    L = w_E · mean_structures[(ΔE / N_atoms)²]        E in eV
      + w_F · mean_force_components[ΔF²]              F in eV/Å
      + w_S · mean_stress_components[ΔS²]             S in GPa (structures with a stress only)

Default weights ``w_E = 1000, w_F = 1, w_S = 0.1`` make 1 meV/atom of energy error cost as much
as ~32 meV/Å of force error and 0.1 GPa of stress error.
"""
from typing import Sequence, Tuple

import torch

from .batches import Batch, batch_forward
from .config import LossWeights
from .data import Prepared


def row_counts(items: Sequence[Prepared]) -> Tuple[int, int, int]:
    """Rows of the energy, force and stress terms of a set: structures, force components, stress
    components of the structures that have a stress."""
    return (len(items), 3 * sum(p.n_atoms for p in items), 6 * sum(p.stress is not None for p in items))


def batch_loss(energy_model, batch: Batch, weights: LossWeights, create_graph: bool) -> Tuple[torch.Tensor, dict]:
    e, f, s = batch_forward(energy_model, batch, create_graph=create_graph)
    de = (e - batch.energy) / batch.n_atoms
    df = f - batch.forces
    terms = {"energy": de.pow(2).mean(), "forces": df.pow(2).mean()}
    if bool(batch.has_stress.any()):
        terms["stress"] = (s[batch.has_stress] - batch.stress[batch.has_stress]).pow(2).mean()
    total = sum(getattr(weights, name) * value for name, value in terms.items())
    return total, terms

def mean_loss(energy_model, groups: Sequence[Batch], weights: LossWeights) -> float:
    """Loss over a whole set (each term averaged over all its rows, as in training)."""
    sums = {"energy": 0.0, "forces": 0.0, "stress": 0.0}
    counts = {"energy": 0, "forces": 0, "stress": 0}
    for batch in groups:
        e, f, s = (t.detach() for t in batch_forward(energy_model, batch))
        sums["energy"] += float(((e - batch.energy) / batch.n_atoms).pow(2).sum())
        sums["forces"] += float((f - batch.forces).pow(2).sum())
        counts["energy"] += len(batch.energy)
        counts["forces"] += batch.forces.numel()
        if bool(batch.has_stress.any()):
            sums["stress"] += float((s[batch.has_stress] - batch.stress[batch.has_stress]).pow(2).sum())
            counts["stress"] += int(batch.has_stress.sum()) * 6
    return sum(getattr(weights, k) * sums[k] / counts[k] for k in sums if counts[k])
