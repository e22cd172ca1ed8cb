"""Committees of ``cluster`` potentials: a force uncertainty that LAMMPS can see.

    pyexport committee fit data.extxyz --basis small --members 4 -o committee.pt

K linear ``cluster`` models (:class:`pyexport.models.cluster.ClusterLinear`) are fitted to K
bootstrap resamples of the training structures (drawn with replacement from the training split
of :func:`pyexport.training.data.split_indices`), each by the closed-form ridge fit of :mod:`pyexport.training.ridge`
at the λ that the fit on the whole training split chooses on the validation split. One pass over
the data builds every design row once; each member's least-squares problem takes the row blocks
of its resample, a structure drawn m times contributing its rows m times.

The K members share one descriptor, so the committee is one model (:class:`ClusterCommittee`)
whose coefficients are a (K, n_species, n_features) tensor. It is exported as one contract
model (:class:`pyexport.contract.CommitteePotentialModule`): the usual outputs are those of the
committee mean (for linear members, exactly the ``cluster`` model with averaged coefficients),
plus every member's forces ``committee_forces`` (K, N, 3) and the attribute ``committee_size``.

The uncertainty is DeePMD's model deviation of the forces, per atom (eV/Å)::

    σ_i = sqrt( (1/K) Σ_k |F_k,i − F̄_i|² ),   F̄_i = (1/K) Σ_k F_k,i

evaluated on the structure's atoms after image/ghost rows are summed home; the per-structure
(per-step) value is max_i σ_i. ``pair_style mlff`` computes the same numbers in LAMMPS (``compute
mlff/uncertainty``), :class:`pyexport.calculator.MLFFCalculator` returns σ as
``force_uncertainty``, and ``pyexport select --committee`` ranks MD frames by max_i σ_i.
"""
import os
import time
from dataclasses import asdict
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from .contract import (CommitteePotentialModule, ContractError, build_inputs, check_outputs, export_model,
                       fold_to_atoms, load_model)
from .models.cluster import ClusterLinear
from .models.cluster_basis import ClusterBasis, ClusterDescriptor

MODEL_TYPE = "cluster-committee"


# --------------------------------------------------------------------------------------------
# The committee model
# --------------------------------------------------------------------------------------------
class ClusterCommittee(torch.nn.Module):
    """K ``cluster`` models on one descriptor: ``E^k_i = Σ_f coef[k, s_i, f] B_{i,f} + e0[k, s_i]``.

    ``forward(edge_vec, species, edge_index, n_local)`` returns the (K, n_local) atom energies of
    every member, eV (the interface of :class:`pyexport.contract.CommitteePotentialModule`).
    ``elements`` (symbols, index = species id) are needed when the basis has pair cutoffs.
    """

    committee_size: int

    def __init__(self, n_species: int, basis: ClusterBasis, committee_size: int,
                 elements: Optional[Sequence[str]] = None):
        super().__init__()
        if int(committee_size) != committee_size or committee_size < 2:
            raise ValueError(f"a committee needs at least 2 members, got {committee_size}")
        self.basis = basis
        self.elements = None if elements is None else list(elements)
        self.descriptor = ClusterDescriptor(n_species, basis, elements)
        self.committee_size = int(committee_size)
        n_features = self.descriptor.n_features
        self.coef = torch.nn.Parameter(torch.zeros(self.committee_size, n_species, n_features, dtype=torch.float64))
        self.e0 = torch.nn.Parameter(torch.zeros(self.committee_size, n_species, dtype=torch.float64))

    def forward(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                n_local: int) -> torch.Tensor:
        features = self.descriptor(edge_vec, species, edge_index, n_local)          # (n, F)
        s = species[:n_local]
        n_members, n_species, n_features = self.coef.shape[0], self.coef.shape[1], self.coef.shape[2]
        n_atoms = features.shape[0]
        # one (n, F) x (F, K·S) matmul, then each atom's own species column per member
        every = torch.matmul(features, self.coef.reshape(n_members * n_species, n_features).transpose(0, 1))
        own = every.reshape(n_atoms, n_members, n_species).gather(
            2, s.view(n_atoms, 1, 1).expand(n_atoms, n_members, 1)).squeeze(2)      # (n, K)
        return own.transpose(0, 1) + self.e0.index_select(1, s)

    def member(self, k: int) -> ClusterLinear:
        """Member ``k`` as a stand-alone :class:`ClusterLinear` (float64)."""
        return self._linear(self.coef[k], self.e0[k])

    def mean_model(self) -> ClusterLinear:
        """The committee mean as a :class:`ClusterLinear`: averaged coefficients (float64)."""
        return self._linear(self.coef.mean(0), self.e0.mean(0))

    def _linear(self, coef: torch.Tensor, e0: torch.Tensor) -> ClusterLinear:
        model = ClusterLinear(self.descriptor.n_species, self.basis, self.elements)
        with torch.no_grad():
            model.coef.copy_(coef.detach().to(torch.float64))
            model.e0.copy_(e0.detach().to(torch.float64))
        return model.eval()


def committee_potential(committee: ClusterCommittee, elements: Sequence[str], dtype: str = "float64"
                        ) -> CommitteePotentialModule:
    """The contract module of a committee, in float64 or float32."""
    if dtype not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    if dtype == "float32":
        committee = committee.to(torch.float32)
    for p in committee.parameters():
        p.requires_grad_(False)
    return CommitteePotentialModule(committee.eval(), committee.committee_size, elements,
                                    committee.basis.cutoff, dtype=dtype)


# --------------------------------------------------------------------------------------------
# Uncertainty
# --------------------------------------------------------------------------------------------
def force_deviation(member_forces: np.ndarray) -> np.ndarray:
    """σ_i (n,) eV/Å = sqrt(mean_k |F_k,i − mean_k F_k,i|²) of member forces (K, n, 3) eV/Å."""
    member_forces = np.asarray(member_forces, dtype=np.float64)
    if member_forces.ndim != 3 or member_forces.shape[2] != 3:
        raise ValueError(f"member forces: expected shape (K, n, 3), got {member_forces.shape}")
    spread = member_forces - member_forces.mean(axis=0)
    return np.sqrt((spread ** 2).sum(axis=2).mean(axis=0))


def fold_committee_forces(rows: np.ndarray, image_of: np.ndarray, n_atoms: int) -> np.ndarray:
    """Member forces (K, N, 3) on contract rows (owned atoms and images) summed onto the
    structure's atoms: (K, n_atoms, 3) eV/Å."""
    folded = fold_to_atoms(np.moveaxis(np.asarray(rows), 0, 1), image_of, n_atoms)
    return np.ascontiguousarray(np.moveaxis(folded, 1, 0))


def committee_size_of(metadata: dict, path: str) -> int:
    """``committee_size`` of a loaded model's metadata; a clear error for a single model."""
    if "committee_size" not in metadata:
        raise ContractError(f"{path}: not a committee model (it has no committee_size attribute); "
                            "fit one with `pyexport committee fit`")
    return int(metadata["committee_size"])


class CommitteeEvaluator:
    """Per-atom force uncertainty σ_i of periodic structures with an exported committee file,
    through the same contract inputs as the ASE calculator."""

    def __init__(self, model_path, device: str = "cpu"):
        self.path = os.fspath(model_path)
        self.model, self.metadata = load_model(self.path, kind="potential", device=device)
        self.committee_size = committee_size_of(self.metadata, self.path)
        self.elements = list(self.metadata["elements"])
        self.cutoff = float(self.metadata["cutoff"])
        self.device = device

    def member_forces(self, atoms) -> np.ndarray:
        """(K, n_atoms, 3) eV/Å: every member's forces on the structure's atoms."""
        inputs = build_inputs(atoms, self.cutoff, self.elements)
        out = self.model(inputs.pos.to(self.device), inputs.species.to(self.device),
                         inputs.edge_index.to(self.device), inputs.n_local)
        out = {k: v.detach().cpu() for k, v in out.items()}
        check_outputs(out, "potential", inputs.pos.shape[0], inputs.n_local, self.committee_size)
        return fold_committee_forces(out["committee_forces"].numpy(), inputs.image_of, len(atoms))

    def force_uncertainty(self, atoms) -> np.ndarray:
        """σ_i (n_atoms,) eV/Å."""
        return force_deviation(self.member_forces(atoms))

    def max_force_uncertainty(self, atoms) -> float:
        """max_i σ_i, eV/Å: the per-structure uncertainty."""
        return float(self.force_uncertainty(atoms).max())


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------
def bootstrap_samples(n_train: int, members: int, seed: int) -> List[np.ndarray]:
    """``members`` resamples of ``n_train`` training structures, drawn with replacement
    (indices into the training split), from a random stream of their own."""
    rng = np.random.default_rng([int(seed), 0x5EED])
    return [np.sort(rng.integers(0, n_train, size=n_train)) for _ in range(members)]


def fit_committee(config, members: int, structures=None) -> Tuple[ClusterCommittee, dict, dict]:
    """Read, split, fit ``members`` bootstrap ``cluster`` models, evaluate.

    ``config`` is a :class:`pyexport.fit.FitConfig` (``model`` must be ``cluster``; the
    ``cluster-nn`` options are not used). Returns ``(committee, report, metrics)``: the fitted
    :class:`ClusterCommittee` (float64), the fit report (λ, resamples, timing) and the metrics
    (errors of the committee mean per split and the force uncertainty on validation and test).
    """
    from tqdm.auto import tqdm

    from .fit import fit_inputs
    from .training.design import design_rows
    from .training.loss import row_counts
    from .training.metrics import split_metrics
    from .training.ridge import LeastSquares, ridge_path

    if int(members) != members or members < 2:
        raise ValueError(f"--members must be at least 2 (a committee of one model has no disagreement), "
                         f"got {members}")
    if config.model != "cluster":
        raise ValueError(f"a committee is made of linear `cluster` models, got model {config.model!r}")
    t0 = time.perf_counter()
    structures, data_hash, elements, basis, splits, prepared = fit_inputs(config, structures)
    committee = ClusterCommittee(len(elements), basis, members, elements)
    t_prepare = time.perf_counter() - t0

    descriptor = committee.descriptor
    n_species, n_features = descriptor.n_species, descriptor.n_features
    n_columns = n_species * n_features + n_species
    train_items = [prepared[i] for i in splits["train"]]
    val_items = [prepared[i] for i in splits["val"]]
    if len(train_items) < 2:
        raise ValueError(f"a committee needs at least 2 training structures to resample, the split "
                         f"{list(config.split)} of {len(structures)} structures leaves {len(train_items)}")
    samples = bootstrap_samples(len(train_items), members, config.seed)
    draws = [np.bincount(sample, minlength=len(train_items)) for sample in samples]
    whole = LeastSquares(n_columns, config.weights, *row_counts(train_items))
    val = LeastSquares(n_columns, config.weights, *row_counts(val_items))
    member_eqs = [LeastSquares(n_columns, config.weights, *row_counts([train_items[i] for i in sample]))
                  for sample in samples]
    bar = tqdm(total=len(train_items) + len(val_items), desc="design rows", disable=not config.progress,
               unit="struct")
    for t, item in enumerate(train_items):
        rows = design_rows(descriptor, item)
        whole.add(rows, item)
        for eq, count in zip(member_eqs, draws):
            for _ in range(int(count[t])):   # a structure drawn m times weighs m times
                eq.add(rows, item)
        bar.update()
    for item in val_items:
        val.add(design_rows(descriptor, item), item)
        bar.update()
    bar.close()
    t_design = time.perf_counter() - t0 - t_prepare

    whole_coef, lam, scan = ridge_path(whole, val, config.lambdas, config.lambda_tolerance)
    member_coefs = [ridge_path(eq, val, [lam])[0] for eq in member_eqs]
    with torch.no_grad():
        for k, coef in enumerate(member_coefs):
            committee.coef[k].copy_(coef[: n_species * n_features].reshape(n_species, n_features))
            committee.e0[k].copy_(coef[n_species * n_features:])
    mean_coef = torch.stack(member_coefs).mean(0)
    sources = [st.source for st in structures]
    report = {
        "data_hash": data_hash, "weights": asdict(config.weights), "split": list(config.split), "seed": config.seed,
        "split_sizes": {k: len(v) for k, v in splits.items()},
        "split_sources": {k: [sources[i] for i in v] for k, v in splits.items()},
        "members": members, "bootstrap": "training structures drawn with replacement, as many as the training split",
        "bootstrap_sources": [[sources[splits["train"][i]] for i in sample] for sample in samples],
        "bootstrap_distinct_structures": [int((d > 0).sum()) for d in draws],
        "n_features_per_species": n_features, "n_columns": n_columns,
        "lambda": lam, "lambda_tolerance": config.lambda_tolerance, "lambda_scan": scan,
        "val_loss": {"whole_training_split": val.loss(whole_coef), "committee_mean": val.loss(mean_coef),
                     "members": [val.loss(c) for c in member_coefs]},
        "inactive_columns": [int((eq.r[:, : n_species * n_features].abs().sum(0) == 0).sum()) for eq in member_eqs],
        "time_prepare_s": t_prepare, "time_design_s": t_design,
    }
    metrics = {"model": MODEL_TYPE, "committee_size": members, "elements": elements, "cutoff": basis.cutoff,
               "pair_cutoffs": dict(basis.pair_cutoffs), "n_features_per_species": n_features, "lambda": lam}
    metrics.update(split_metrics(committee.mean_model(), prepared, splits))
    metrics["force_uncertainty"] = {name: uncertainty_metrics(committee, [prepared[i] for i in splits[name]])
                                    for name in ("val", "test") if len(splits[name])}
    metrics["n_parameters"] = int(sum(p.numel() for p in committee.parameters()))
    report["time_total_s"] = time.perf_counter() - t0
    return committee, report, metrics


def uncertainty_metrics(committee: ClusterCommittee, items) -> dict:
    """σ_i of the atoms of ``items`` next to the committee mean's actual force errors |ΔF_i|
    (meV/Å): a calibration check (σ and |ΔF| of similar size mean the spread is informative)."""
    from .training.metrics import predict

    member_forces = [predict(committee.member(k), items)["forces"] for k in range(committee.committee_size)]
    sigma, error = [], []
    for a, item in enumerate(items):
        stack = torch.stack([forces[a] for forces in member_forces]).numpy()      # (K, n, 3)
        sigma.append(force_deviation(stack))
        error.append(np.linalg.norm(stack.mean(axis=0) - item.forces.numpy(), axis=1))
    sigma, error = np.concatenate(sigma) * 1000.0, np.concatenate(error) * 1000.0
    return {"n_atoms": int(len(sigma)), "sigma_mean_meV_per_A": float(sigma.mean()),
            "sigma_max_meV_per_A": float(sigma.max()),
            "force_error_rms_meV_per_A": float(np.sqrt(np.mean(error ** 2))),
            "sigma_rms_meV_per_A": float(np.sqrt(np.mean(sigma ** 2))),
            "spearman_sigma_vs_error": _spearman(sigma, error)}


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation of two samples (nan for fewer than 3 values or a constant sample)."""
    if len(a) < 3:
        return float("nan")
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def committee_provenance(committee: ClusterCommittee, report: dict, metrics: dict,
                         data_files: Sequence[str]) -> dict:
    """What ``metadata.json`` of an exported committee holds next to the contract keys."""
    from . import __version__

    return {"model_type": MODEL_TYPE,
            "hyperparameters": {"basis": committee.basis.as_dict(), "members": committee.committee_size},
            "data_hash": report["data_hash"], "data_files": [os.fspath(p) for p in data_files], "metrics": metrics,
            "fit": {k: v for k, v in report.items() if k not in ("split_sources", "bootstrap_sources")},
            "package": "pyexport", "package_version": __version__}


def write_committee(committee: ClusterCommittee, elements: Sequence[str], path, dtype: str = "float64",
                    provenance: Optional[dict] = None) -> dict:
    """Export the committee to ``path`` (a contract ``potential`` with ``committee_forces``)
    and return the metadata read back from the file."""
    export_model(committee_potential(committee, elements, dtype), path, provenance=provenance)
    _, meta = load_model(path, kind="potential")
    return meta
