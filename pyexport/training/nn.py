"""Training the ``cluster-nn`` potential: the MLP on standardised invariants starts from the
ridge fit (its output scale set by the linear fit's force error), then Adam with early stopping
on the validation loss and optional full-batch L-BFGS."""
import time
from typing import Dict, Sequence

import numpy as np
import torch

from ..models.cluster import ClusterNN
from .batches import batches, make_batch
from .config import LossWeights, NNTraining
from .data import Prepared
from .early_stopping import EarlyStopping
from .loss import batch_loss, mean_loss, row_counts


def standardise(model: ClusterNN, items: Sequence[Prepared]) -> None:
    """Set the per-species feature mean and standard deviation from ``items``."""
    s_count, k = model.descriptor.n_species, model.descriptor.n_features
    total = torch.zeros((s_count, k), dtype=torch.float64)
    square = torch.zeros((s_count, k), dtype=torch.float64)
    count = torch.zeros(s_count, dtype=torch.float64)
    with torch.no_grad():
        for p in items:
            src, dst = p.edge_index
            ev = (p.pos[dst] - p.pos[src]).to(torch.float64)
            b = model.descriptor(ev, p.species, p.edge_index, p.n_atoms)
            sp = p.species[: p.n_atoms]
            total.index_add_(0, sp, b)
            square.index_add_(0, sp, b * b)
            count.index_add_(0, sp, torch.ones_like(sp, dtype=torch.float64))
    n = count.clamp_min(1.0).unsqueeze(1)
    mean = total / n
    var = (square / n - mean * mean).clamp_min(0.0)
    model.set_standardisation(mean, var.sqrt())

def start_nn(model: ClusterNN, train_items: Sequence[Prepared], linear_train_metrics: dict) -> None:
    """Standardise the invariants on the training set and set the MLP output scale to the linear
    fit's force RMSE × 1 Å (the size of the energy left to learn, 0.1 meV at least)."""
    standardise(model, train_items)
    with torch.no_grad():
        model.output_scale.fill_(max(linear_train_metrics["forces_rmse_meV_per_A"] * 1e-3, 1e-4))

def train_nn(model: ClusterNN, prepared: Sequence[Prepared], splits: Dict[str, np.ndarray], weights: LossWeights,
             options: NNTraining, seed: int = 0, progress: bool = True) -> dict:
    """Adam on the MLPs (and the linear part when ``options.train_linear``) with early stopping on
    the validation loss, then ``options.lbfgs_steps`` full-batch L-BFGS steps; the state with the
    lowest validation loss is kept. Returns the training history."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_items = [prepared[i] for i in splits["train"]]
    val_batches = [make_batch(g) for g in batches([prepared[i] for i in splits["val"]], 4 * options.batch_atoms)]
    train_eval = [make_batch(g) for g in batches(train_items, 4 * options.batch_atoms)]
    for p in (model.coef, model.e0):
        p.requires_grad_(options.train_linear)
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=options.learning_rate)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, factor=0.5,
                                                           patience=max(1, options.patience // 3))
    stopping = EarlyStopping(model, mean_loss(model, val_batches, weights), options.patience)
    history = [{"epoch": 0, "val_loss": stopping.best_val}]
    t0 = time.perf_counter()
    bar = tqdm(range(1, options.epochs + 1), desc="cluster-nn", disable=not progress, unit="epoch")
    for epoch in bar:
        order = rng.permutation(len(train_items))
        running, n_batches = 0.0, 0
        for group in batches([train_items[i] for i in order], options.batch_atoms):
            optimiser.zero_grad()
            loss, _ = batch_loss(model, make_batch(group), weights, create_graph=True)
            loss.backward()
            optimiser.step()
            running += float(loss.detach())
            n_batches += 1
        val = mean_loss(model, val_batches, weights)
        scheduler.step(val)
        history.append({"epoch": epoch, "train_loss": running / max(n_batches, 1), "val_loss": val})
        stop = stopping.update(model, val, epoch)
        bar.set_postfix(train=f"{running / max(n_batches, 1):.3g}", val=f"{val:.3g}", best=f"{stopping.best_val:.3g}")
        if stop:
            break
    stopping.restore(model)
    best_val = stopping.best_val
    if options.lbfgs_steps > 0:
        lbfgs = torch.optim.LBFGS(params, lr=1.0, max_iter=options.lbfgs_steps, line_search_fn="strong_wolfe")
        train_batches = [make_batch(g) for g in batches(train_items, 4 * options.batch_atoms)]
        n_rows = row_counts(train_items)

        def closure():
            lbfgs.zero_grad()
            total = torch.zeros((), dtype=torch.float64)
            for batch in train_batches:
                # batch terms are batch means: weight them back to means over the whole set
                loss_terms = batch_loss(model, batch, weights, create_graph=True)[1]
                share = {"energy": len(batch.energy) / n_rows[0], "forces": batch.forces.numel() / n_rows[1],
                         "stress": 6 * int(batch.has_stress.sum()) / max(n_rows[2], 1)}
                part = sum(getattr(weights, k) * v * share[k] for k, v in loss_terms.items())
                part.backward()
                total = total + part.detach()
            return total

        lbfgs.step(closure)
        val = mean_loss(model, val_batches, weights)
        history.append({"epoch": "lbfgs", "val_loss": val})
        if val < best_val:
            best_val = val
        else:
            stopping.restore(model)
    for p in model.parameters():
        p.requires_grad_(True)
    return {"best_val_loss": best_val, "epochs_run": len([h for h in history if isinstance(h["epoch"], int)]) - 1,
            "history": history, "time_train_s": time.perf_counter() - t0,
            "final_train_loss": mean_loss(model, train_eval, weights)}
