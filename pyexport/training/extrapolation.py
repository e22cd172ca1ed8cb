"""What a potential fit stores for outside its data: the radii of the repulsive core (the
shortest distance of each species pair in the data, :class:`pyexport.models.pair.CoreRepulsion`)
and the active set of the extrapolation grade (:mod:`pyexport.models.grade`)."""
from typing import List, Sequence

import numpy as np
import torch

from ..models.cluster_basis import ClusterDescriptor
from ..models.grade import build_active_set
from .batches import batches, make_batch
from .data import Prepared


def species_features(descriptor: ClusterDescriptor, items: Sequence[Prepared], max_atoms: int = 4000
                     ) -> List[np.ndarray]:
    """The invariants of every atom of ``items``, grouped by species: a list over species of
    (n_s, n_features) float64 arrays (what the active set is chosen from)."""
    per_species: List[List[np.ndarray]] = [[] for _ in range(descriptor.n_species)]
    with torch.no_grad():
        for group in batches(items, max_atoms):
            batch = make_batch(group)
            src, dst = batch.edge_index[0], batch.edge_index[1]
            edge_vec = batch.pos.index_select(0, dst) - batch.pos.index_select(0, src)
            features = descriptor(edge_vec, batch.species, batch.edge_index, batch.n_local).numpy()
            species = batch.species[: batch.n_local].numpy()
            for s in range(descriptor.n_species):
                per_species[s].append(features[species == s])
    return [np.concatenate(parts) if parts else np.zeros((0, descriptor.n_features)) for parts in per_species]

def fit_active_set(descriptor: ClusterDescriptor, train_items: Sequence[Prepared], elements: Sequence[str],
                   rtol: float = 1e-6) -> dict:
    """The extrapolation grade's active set (:func:`pyexport.models.grade.build_active_set`, principal
    directions above ``rtol``) of the training structures' atoms."""
    features = species_features(descriptor, train_items)
    missing = [e for e, f in zip(elements, features) if len(f) == 0]
    if missing:
        raise ValueError(f"no training atoms of {missing}: no active set (fit with --no-active-set)")
    return build_active_set(features, elements, rtol)

def shortest_pair_distances(prepared: Sequence[Prepared], n_species: int) -> List[List[float]]:
    """(S, S) Å: the shortest distance between atoms of each pair of species over all edges of
    ``prepared`` (every split: the core must be zero on all of the data); 0 for pairs that never
    come within the cutoff (no core)."""
    shortest = np.full((n_species, n_species), np.inf)
    for item in prepared:
        src, dst = item.edge_index[0], item.edge_index[1]
        r = torch.linalg.norm(item.pos.index_select(0, dst) - item.pos.index_select(0, src), dim=1).numpy()
        np.minimum.at(shortest, (item.species.index_select(0, src).numpy(), item.species.index_select(0, dst).numpy()), r)
    shortest = np.minimum(shortest, shortest.T)
    return np.where(np.isfinite(shortest), shortest, 0.0).tolist()


def sliver_channels(shortest, cutoffs, elements: Sequence[str], fraction: float = 0.1) -> List[dict]:
    """Species pairs whose data reach only the outer ``fraction`` of the pair's cutoff: the
    shortest distance r_min (``shortest`` (S, S) Å, 0 = never within the cutoff) lies inside the
    cutoff R (``cutoffs`` (S, S) Å) but above (1 − fraction)·R. The pair's radial functions are
    then fitted on the sliver [r_min, R] and extrapolate wildly below it (MAPbI3's Pb–Pb channel
    at 5.5 Å with the data at 5.20–5.5 Å dug a hole of −2·10⁵ eV at 4 Å). Either leave the channel
    empty (a pair cutoff below r_min: the repulsive core acts alone there) or add data closer in.
    ``[{"pair": "A-B", "r_min_A": ..., "cutoff_A": ...}]``, each pair once."""
    shortest, cutoffs = np.asarray(shortest, dtype=float), np.asarray(cutoffs, dtype=float)
    found = []
    for i, a in enumerate(elements):
        for j in range(i, len(elements)):
            r, cut = shortest[i, j], cutoffs[i, j]
            if 0.0 < r < cut and r > (1.0 - fraction) * cut:
                found.append({"pair": f"{a}-{elements[j]}", "r_min_A": float(r), "cutoff_A": float(cut)})
    return found
