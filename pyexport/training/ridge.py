"""The closed-form ridge fit of the linear ``cluster`` model (and of the linear part of
``cluster-nn``).

Weighted design rows (:mod:`pyexport.training.design`) are reduced block by block to the
triangular factor of a QR decomposition (:class:`LeastSquares`: the conditioning of X, not of
XᵀX); columns are scaled to unit norm and the ridge problem is solved for a log grid of λ from
one SVD of that factor. The λ kept is the largest whose validation loss is within 2 %
(``lambda_tolerance``) of the lowest: equally accurate on held-out data, with smaller
coefficients.
"""
import math
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .config import DEFAULT_LAMBDAS, LossWeights
from .data import Prepared
from .design import DesignRows, design_rows
from .loss import row_counts


class LeastSquares:
    """The weighted least-squares problem ``min ||X c - y||²`` of one set, kept as the triangular
    factor R of ``[X | y]`` (R ᵀR = [X|y]ᵀ[X|y]), updated block by block with QR (TSQR).

    Unlike the normal equations XᵀX, R has the conditioning of X itself, so coefficients and
    losses stay accurate to near machine precision even for nearly dependent features; it costs
    about twice the floating-point work of accumulating XᵀX. Rows are scaled so that each loss
    term is a weighted mean over its rows (``n_energy``, ``n_force``, ``n_stress``: the numbers of
    rows of each term in the set).
    """

    def __init__(self, n_columns: int, weights: LossWeights, n_energy: int, n_force: int, n_stress: int,
                 block_rows: Optional[int] = None):
        self.n_columns = n_columns
        self.factor = torch.zeros((0, n_columns + 1), dtype=torch.float64)
        self.pending: List[torch.Tensor] = []
        self.n_pending = 0
        self.block_rows = block_rows or max(2 * (n_columns + 1), 512)
        self.scale = {"energy": math.sqrt(weights.energy / max(n_energy, 1)),
                      "forces": math.sqrt(weights.forces / max(n_force, 1)),
                      "stress": math.sqrt(weights.stress / max(n_stress, 1))}

    def add(self, rows: DesignRows, item: Prepared) -> None:
        xs = [rows.energy.unsqueeze(0) * self.scale["energy"], rows.forces * self.scale["forces"]]
        ys = [torch.tensor([item.energy / item.n_atoms], dtype=torch.float64) * self.scale["energy"],
              item.forces.reshape(-1) * self.scale["forces"]]
        if item.stress is not None and rows.stress is not None:
            xs.append(rows.stress * self.scale["stress"])
            ys.append(item.stress * self.scale["stress"])
        self.pending.append(torch.cat([torch.cat(xs), torch.cat(ys).unsqueeze(1)], dim=1))
        self.n_pending += self.pending[-1].shape[0]
        if self.n_pending >= self.block_rows:
            self._reduce()

    def _reduce(self) -> None:
        if self.pending:
            stacked = torch.cat([self.factor] + self.pending)
            self.factor = torch.linalg.qr(stacked, mode="r")[1]
            self.pending, self.n_pending = [], 0

    @property
    def r(self) -> torch.Tensor:
        """(≤ P+1, P+1) upper-triangular factor of [X | y]."""
        self._reduce()
        return self.factor

    def loss(self, coef: torch.Tensor) -> float:
        """``||X c - y||²`` (the weighted loss of the set), from R without cancellation."""
        r = self.r
        return float((r[:, : self.n_columns] @ coef - r[:, self.n_columns]).pow(2).sum())

def ridge_path(train: LeastSquares, val: LeastSquares, lambdas: Sequence[float], tolerance: float = 0.0
               ) -> Tuple[torch.Tensor, float, List[dict]]:
    """Ridge solutions ``min ||X c - y||² + λ ||D^½ c||²`` (D = diag XᵀX: the ridge acts on
    unit-scaled columns, so λ is relative) for every λ, from one SVD of the scaled R factor.

    Returns the coefficients of the chosen λ, that λ, and the scan. The chosen λ is the largest
    whose validation loss is within ``1 + tolerance`` of the lowest: as accurate on validation
    data, with smaller coefficients (fewer cancellations, tamer extrapolation in MD).
    Columns that are zero in the training data get zero coefficients."""
    r = train.r
    x, z = r[:, : train.n_columns], r[:, train.n_columns]
    norms = x.pow(2).sum(0).sqrt()
    scale = torch.where(norms > 0, 1.0 / norms, torch.zeros_like(norms))
    u, sigma, vt = torch.linalg.svd(x * scale, full_matrices=False)
    proj = u.T @ z
    scan, solutions = [], []
    for lam in sorted(lambdas):
        coef = scale * (vt.T @ (sigma / (sigma * sigma + lam) * proj))
        scan.append({"lambda": float(lam), "train_loss": train.loss(coef), "val_loss": val.loss(coef)})
        solutions.append(coef)
    lowest = min(entry["val_loss"] for entry in scan)
    chosen = max(k for k, entry in enumerate(scan) if entry["val_loss"] <= (1.0 + tolerance) * lowest)
    return solutions[chosen], scan[chosen]["lambda"], scan


def fit_linear(model: torch.nn.Module, prepared: Sequence[Prepared], splits: Dict[str, np.ndarray],
               weights: LossWeights, lambdas: Sequence[float] = DEFAULT_LAMBDAS, progress: bool = True,
               lambda_tolerance: float = 0.0) -> dict:
    """Closed-form ridge fit of ``model.coef`` and ``model.e0`` (a :class:`ClusterLinear` or the
    linear part of a :class:`ClusterNN`). Returns the fit report (λ, scan, timing)."""
    from tqdm.auto import tqdm

    descriptor = model.descriptor
    s_count, k = descriptor.n_species, descriptor.n_features
    n_columns = s_count * k + s_count
    train_items = [prepared[i] for i in splits["train"]]
    val_items = [prepared[i] for i in splits["val"]]
    eqs = {"train": LeastSquares(n_columns, weights, *row_counts(train_items)),
           "val": LeastSquares(n_columns, weights, *row_counts(val_items))}
    t0 = time.perf_counter()
    jobs = [("train", p) for p in train_items] + [("val", p) for p in val_items]
    for name, item in tqdm(jobs, desc="design rows", disable=not progress, unit="struct"):
        eqs[name].add(design_rows(descriptor, item), item)
    t1 = time.perf_counter()
    coef, lam, scan = ridge_path(eqs["train"], eqs["val"], lambdas, lambda_tolerance)
    t2 = time.perf_counter()
    with torch.no_grad():
        model.coef.copy_(coef[: s_count * k].reshape(s_count, k))
        model.e0.copy_(coef[s_count * k:])
    inactive = int((eqs["train"].r[:, : s_count * k].abs().sum(0) == 0).sum())
    best = min(scan, key=lambda entry: entry["val_loss"])["lambda"]
    edge = best in (min(lambdas), max(lambdas)) and len(lambdas) > 1
    return {"lambda": lam, "lambda_lowest_val_loss": best, "lambda_tolerance": lambda_tolerance,
            "lambda_at_grid_edge": edge, "lambda_scan": scan, "n_columns": n_columns,
            "inactive_columns": inactive, "time_design_s": t1 - t0, "time_solve_s": t2 - t1}
