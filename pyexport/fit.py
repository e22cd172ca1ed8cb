"""Fitting the ``cluster`` and ``cluster-nn`` potentials (:mod:`pyexport.models.cluster`), for
``pyexport fit`` (whose command line is :mod:`pyexport.cli.fit`).

Pipeline (:func:`run_fit`): labelled structures -> split into train / validation / test by
structure -> closed-form ridge fit of the linear ``cluster`` model -> for ``cluster-nn``, Adam
(then optionally L-BFGS) on the MLP residual with early stopping -> metrics -> checkpoint.

The steps live in :mod:`pyexport.training`, one concept per module:

- :mod:`~pyexport.training.config`: :class:`FitConfig` and the defaults of every option;
- :mod:`~pyexport.training.data`: labelled structures, the split, contract inputs (``prepare``);
- :mod:`~pyexport.training.batches`: structures as one graph, energies / forces / stresses of a model;
- :mod:`~pyexport.training.loss`: the loss (weights of its energy, force and stress terms);
- :mod:`~pyexport.training.metrics`: predictions and their RMSE / MAE;
- :mod:`~pyexport.training.design` and :mod:`~pyexport.training.ridge`: the linear fit;
- :mod:`~pyexport.training.nn` and :mod:`~pyexport.training.early_stopping`: the network's training;
- :mod:`~pyexport.training.extrapolation`: core radii and the active set of the grade;
- :mod:`~pyexport.training.checkpoints`: the checkpoint schema, its safe reader, models from it.
"""
import copy
import logging
import os
import time
from dataclasses import asdict
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from .models.cluster import build_energy_model
from .models.cluster_basis import ClusterBasis
from .models.grade import active_set_summary
from .training.checkpoints import make_checkpoint
from .training.config import FitConfig
from .training.data import (Structure, at_most_atoms, elements_of, hash_files, prepare, read_structures,
                            split_indices)
from .training.extrapolation import fit_active_set, shortest_pair_distances, sliver_channels
from .training.metrics import split_metrics
from .training.nn import start_nn, train_nn
from .training.ridge import fit_linear


def fit_inputs(config, structures=None):
    """What every fit starts from: the structures (read from ``config.data`` unless given), the
    data hash, element order, cluster basis, the seeded train/val/test split and the prepared
    neighbour data. Returns (structures, data_hash, elements, basis, splits, prepared)."""
    if structures is None:
        if not config.data:
            raise ValueError("no data files given")
        structures = read_structures(config.data)
    structures = at_most_atoms(structures, config.max_atoms)
    data_hash = hash_files(config.data) if config.data and all(os.path.isfile(p) for p in config.data) else ""
    elements = list(config.elements) if config.elements else elements_of(structures)
    basis = ClusterBasis.preset(config.basis, cutoff=config.cutoff)
    if config.basis_overrides or config.pair_cutoffs:
        basis = ClusterBasis.from_dict({**basis.as_dict(), **config.basis_overrides,
                                        "pair_cutoffs": dict(config.pair_cutoffs)})
    basis.cutoff_table(elements)  # a pair of elements the data lacks is an error before any work
    splits = split_indices(len(structures), config.split, config.seed)
    prepared = prepare(structures, elements, basis.cutoff)
    return structures, data_hash, elements, basis, splits, prepared

def run_fit(config: FitConfig, structures: Optional[Sequence[Structure]] = None) -> Tuple[dict, dict]:
    """Read, split, fit, evaluate; return ``(checkpoint, metrics)`` (nothing is written here).

    ``structures`` may be passed directly (then ``config.data`` only names them for the hash)."""
    if config.model not in ("cluster", "cluster-nn"):
        raise ValueError(f"model must be 'cluster' or 'cluster-nn', got {config.model!r}")
    if config.dtype not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {config.dtype!r}")
    t0 = time.perf_counter()
    structures, data_hash, elements, basis, splits, prepared = fit_inputs(config, structures)
    t_read = time.perf_counter() - t0

    torch.manual_seed(config.seed)
    model = build_energy_model(config.model, len(elements), basis, config.nn.hidden, elements=elements)
    report = {"weights": asdict(config.weights), "split": list(config.split), "seed": config.seed,
              "split_sizes": {k: len(v) for k, v in splits.items()},
              "split_sources": {k: [structures[i].source for i in v] for k, v in splits.items()},
              "n_features_per_species": model.descriptor.n_features, "time_prepare_s": t_read}
    report.update(fit_linear(model, prepared, splits, config.weights, config.lambdas, config.progress,
                             config.lambda_tolerance))
    metrics = {"model": config.model, "elements": elements, "cutoff": basis.cutoff,
               "pair_cutoffs": dict(basis.pair_cutoffs), "n_features_per_species": model.descriptor.n_features,
               "lambda": report["lambda"], "max_atoms": config.max_atoms, "n_structures": len(structures)}
    if config.model == "cluster-nn":
        metrics["linear_start"] = split_metrics(model, prepared, splits)
        start_nn(model, [prepared[i] for i in splits["train"]], metrics["linear_start"]["train"])
        report["nn"] = {**asdict(config.nn), **train_nn(model, prepared, splits, config.weights, config.nn,
                                                        config.seed, config.progress)}
    metrics.update(split_metrics(model, prepared, splits))
    if config.dtype == "float32":
        metrics["float32"] = split_metrics(copy.deepcopy(model).to(torch.float32), prepared, splits)
    metrics["n_parameters"] = int(sum(p.numel() for p in model.parameters()))
    shortest, cutoffs = shortest_pair_distances(prepared, len(elements)), basis.cutoff_table(elements)
    slivers = sliver_channels(shortest, cutoffs, elements)
    for s in slivers:
        logging.getLogger(__name__).warning(
            "pair %s: the data come no closer than %.3f Å, inside its cutoff %.3g Å: its terms are fitted on that "
            "sliver and extrapolate below it; set --pair-cutoff %s=R with R < %.3g Å (the core then acts alone "
            "there) or add data at shorter %s distances", s["pair"], s["r_min_A"], s["cutoff_A"], s["pair"],
            s["r_min_A"], s["pair"])
    metrics["sliver_pair_channels"] = slivers
    core = None
    if config.core_repulsion:
        # at most the pair's cutoff: LAMMPS hands the model no longer edge of that pair, so a core
        # reaching beyond it would switch on with a step in the energy
        radii = np.minimum(shortest, cutoffs)
        core = {"r_core_A": radii.tolist(), "strength_eV": float(config.core_strength)}
        metrics["core_repulsion"] = {"strength_eV": core["strength_eV"],
                                     "r_core_A": {f"{a}-{b}": core["r_core_A"][i][j]
                                                  for i, a in enumerate(elements) for j, b in enumerate(elements) if j >= i}}
    active_set = None
    if config.active_set:
        t_active = time.perf_counter()
        active_set = fit_active_set(model.descriptor, [prepared[i] for i in splits["train"]], elements,
                                    config.active_set_rtol)
        report["time_active_set_s"] = time.perf_counter() - t_active
        metrics["active_set"] = active_set_summary(active_set)
    report["time_total_s"] = time.perf_counter() - t0
    ckpt = make_checkpoint(model, config.model, elements, basis, config.dtype, config.nn.hidden, metrics,
                           data_hash, config.data, report)
    ckpt["core_repulsion"] = core
    ckpt["active_set"] = active_set
    return ckpt, metrics
