"""Extrapolation grade γ of a potential that is linear in per-atom features (``cluster``, and
``cluster-nn`` on the same invariants): how far an atom's environment lies outside the training data.

The MTP / ACE approach (Podryabinkin & Shapeev 2017; Lysogorskiy et al. 2023): for each species s,
the training atoms of that species give feature rows x_i (K features, plus the constant of the
species energy e0). A MaxVol *active set* picks the r rows A_s that span the largest volume; every
training row is then a combination x_i = c_i · A_s with all |c_ik| ≤ 1. The grade of any atom is

    γ_i = max_k |c_ik|,   c_i = x̃_i · P_s,   P_s = V_s A_s⁻¹,

so γ ≤ 1 inside the training data (interpolation), 1 < γ ≲ 2 mild extrapolation, γ ≫ 2 an
environment the fit never saw (the energy there is a guess). The features are scaled to unit RMS
over the training atoms first and projected onto the principal subspace of the training rows
(``rank`` directions, singular values above ``rtol`` times the largest), which makes A_s square
and invertible when features are linearly dependent on the data.

Why ``rtol = 1e-6`` by default and not machine precision: the polynomial invariants are strongly
correlated, and the training rows of the CsPbBr3 example span directions whose singular values
reach down to 1e-10 of the largest. An atom that moves slightly along such a direction gets a
γ of 20-60 although the fitted energy hardly depends on it (ridge regression leaves those
coefficients near zero). Measured on 13 CsPbBr3 frames from 600-900 K MD that the fit had not
seen (5,100 atoms, 7net-0 forces): with rtol 1e-10 max γ was 50 while the force error of the
γ > 5 atoms was only 2.3× that of the γ < 1 atoms (median 0.18 vs 0.08 eV/Å); with 1e-6 (rank
321-343 of 405) max γ was 9 with the same error ladder (0.08, 0.12, 0.14, 0.18 eV/Å for γ in
[0, 1), [1, 2), [2, 5), ≥ 5). The grade then ranks environments by error as well as before
without the spikes that stopped MD on harmless ones.

What is stored (and exported inside the TorchScript model, :class:`ExtrapolationGrade`) is, per
species, ``weight`` (K, r_max) and ``bias`` (r_max,) with γ = max |x W + b|: the scaling, the
projection and A⁻¹ folded together, zero-padded to the largest rank over species (a zero column
adds |0| to the max and changes nothing).
"""
from dataclasses import dataclass
from typing import Dict, Sequence

import numpy as np
import scipy.linalg
import torch


def maxvol(rows: np.ndarray, tol: float = 1e-9, max_swaps: int = 100_000) -> np.ndarray:
    """Indices of r rows of ``rows`` (n, r), n ≥ r, full column rank, whose r×r submatrix A has
    (locally) maximal |det|: every row is then a combination of them with coefficients ≤ 1 + tol
    in magnitude (Goreinov et al. 2010). Start from pivoted QR, then swap the row with the largest
    coefficient in until none exceeds 1 + tol; each swap multiplies |det A| by that coefficient,
    so the loop ends. The coefficient matrix C = rows A⁻¹ is updated by rank one per swap."""
    n, r = rows.shape
    if n < r:
        raise ValueError(f"maxvol needs at least as many rows as columns, got {n} rows of {r}")
    _, _, pivots = scipy.linalg.qr(rows.T, mode="economic", pivoting=True)
    chosen = np.array(pivots[:r])
    coef = np.linalg.solve(rows[chosen].T, rows.T).T          # (n, r): rows = coef @ A
    for _ in range(max_swaps):
        flat = int(np.argmax(np.abs(coef)))
        i, j = divmod(flat, r)
        if abs(coef[i, j]) <= 1.0 + tol:
            break
        # swap row i into slot j: C <- C - C[:, j] (C[i] - e_j) / C[i, j]
        col = coef[:, j].copy()
        row = coef[i].copy()
        row[j] -= 1.0
        coef -= np.outer(col / col[i], row)
        chosen[j] = i
    else:
        raise RuntimeError(f"maxvol did not converge in {max_swaps} swaps")
    return chosen


@dataclass
class SpeciesActiveSet:
    """The active set of one species: ``weight`` (K, r) and ``bias`` (r,) with γ = max|x W + b|,
    the training ``rows`` chosen (indices into that species' training atoms), the number of
    training atoms and the rank of their (scaled) feature matrix."""

    weight: np.ndarray
    bias: np.ndarray
    rows: np.ndarray
    n_atoms: int
    rank: int


def species_active_set(features: np.ndarray, rtol: float = 1e-6) -> SpeciesActiveSet:
    """Active set of the (n, K) training features of one species (module docstring)."""
    n, k = features.shape
    if n == 0:
        raise ValueError("no training atoms of this species: no active set")
    scale = np.sqrt(np.mean(features ** 2, axis=0))
    inv_scale = np.where(scale > 0.0, 1.0 / np.where(scale > 0.0, scale, 1.0), 0.0)
    scaled = np.concatenate([features * inv_scale, np.ones((n, 1))], axis=1)   # constant of e0
    _, sv, vt = np.linalg.svd(scaled, full_matrices=False)
    rank = int(np.sum(sv > rtol * sv[0]))
    basis = vt[:rank].T                                                        # (K+1, r)
    reduced = scaled @ basis                                                   # (n, r)
    rows = maxvol(reduced)
    projection = basis @ np.linalg.inv(reduced[rows])                          # (K+1, r)
    return SpeciesActiveSet(weight=inv_scale[:, None] * projection[:k], bias=projection[k].copy(),
                            rows=rows, n_atoms=n, rank=rank)


def build_active_set(features: Sequence[np.ndarray], elements: Sequence[str], rtol: float = 1e-6) -> dict:
    """The active set of every species from per-species training features (n_s, K), as the
    checkpoint stores it: ``weight`` (S, K, r_max) and ``bias`` (S, r_max) float64 tensors, the
    summary per element, and ``size`` (active rows over all species)."""
    sets = [species_active_set(f, rtol) for f in features]
    k = features[0].shape[1]
    r_max = max(s.rank for s in sets)
    weight = np.zeros((len(sets), k, r_max))
    bias = np.zeros((len(sets), r_max))
    for s, active in enumerate(sets):
        weight[s, :, : active.rank] = active.weight
        bias[s, : active.rank] = active.bias
    return {"weight": torch.from_numpy(weight), "bias": torch.from_numpy(bias),
            "size": int(sum(s.rank for s in sets)),
            "species": {e: {"training_atoms": s.n_atoms, "rank": s.rank} for e, s in zip(elements, sets)}}


def grade_numpy(features: np.ndarray, species: np.ndarray, active_set: dict) -> np.ndarray:
    """γ (n,) of feature rows (n, K) with species (n,) under a checkpoint's ``active_set``."""
    weight = active_set["weight"].numpy()
    bias = active_set["bias"].numpy()
    out = np.zeros(len(features))
    for s in range(weight.shape[0]):
        sel = species == s
        if sel.any():
            out[sel] = np.abs(features[sel] @ weight[s] + bias[s]).max(axis=1)
    return out


class ExtrapolationGrade(torch.nn.Module):
    """γ (n,) of per-atom features (n, K) and species (n,), in the features' dtype; TorchScript.

    ``size`` is the number of active rows over all species (the contract attribute
    ``active_set_size``)."""

    size: int

    def __init__(self, active_set: dict):
        super().__init__()
        self.register_buffer("weight", active_set["weight"].clone())
        self.register_buffer("bias", active_set["bias"].clone())
        self.size = int(active_set["size"])

    def forward(self, features: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        grade = torch.zeros(features.shape[0], dtype=features.dtype, device=features.device)
        for s in range(self.weight.shape[0]):
            idx = torch.nonzero(species == s).squeeze(1)
            if idx.numel() > 0:
                c = torch.matmul(features.index_select(0, idx), self.weight[s]) + self.bias[s]
                grade = grade.index_copy(0, idx, c.abs().amax(dim=1))
        return grade


def active_set_summary(active_set: Dict) -> dict:
    """What metrics and ``pyexport inspect`` show of an active set (no arrays)."""
    return {"size": active_set["size"], "species": active_set["species"]}
