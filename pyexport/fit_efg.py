"""Training the equivariant EFG model (:mod:`pyexport.models.efg`), for ``pyexport fit-efg``
(whose command line is :mod:`pyexport.cli.fit_efg`).

Pipeline: structures with per-atom EFG labels (``atoms.arrays["efg"]`` (N, 3, 3) V/Å², as
:func:`pyexport.data.read` gives them) -> split into train / validation / test by structure ->
Adam with early stopping on the validation loss -> metrics -> checkpoint (``model = "efg"``),
which ``pyexport export`` turns into a contract ``efg`` model through
:func:`build_efg_module_from_checkpoint`.

Loss (per batch)::

    L = Σ_i w_{s_i} ‖V_i^pred − V_i^label‖²_F / 9 / n_atoms        V in V/Å²

with per-species weights ``w_s``; by default ``w_s ∝ 1 / ⟨V²⟩_s``, the inverse mean square label
component of species s in the training set (the "variance" of an equivariant quantity, whose
mean over orientations is zero), normalised so that the mean weight over training atoms is 1.
Without it, small EFGs (Cs in CsPbBr3, ~15 × smaller than Br) would be ignored.

Labels must be symmetric and traceless within :data:`LABEL_TOLERANCE_V_A2` (what VASP prints
is, to its 3 decimals); they are projected onto the symmetric traceless part, which is all the
model can represent.

Metrics (``--metrics metrics.json``), per split: component RMSE and MAE in V/Å² (all atoms and
per species, with the label standard deviation for scale), C_Q MAE in MHz per isotope (the
default isotope of each element from :mod:`pyexport.nmr`, or ``--isotope``), and eta MAE per
species.
"""
import os
import time
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from .contract import ContractInputs, EFGModule, build_inputs, species_indices
from .efg_eval import frame_groups, join_inputs
from .models.efg import (MODEL_NAME, EFGHyperparameters, EFGModel, build_efg_model,
                         efg_contract_module, model_from_state)
from .training.checkpoints import checkpoint_header, read_checkpoint
from .training.config import EFGFitConfig, EFGTraining
from .training.data import at_most_atoms, elements_of, hash_files, read_labelled
from .training.data import split_indices as fit_split_indices
from .training.early_stopping import EarlyStopping

#: Largest asymmetry |V − Vᵀ|/2 or |trace|/3 (V/Å²) accepted in a label, plus 1e-3 of its
#: largest component; VASP prints EFGs to 0.001 V/Å², so its tables pass.
LABEL_TOLERANCE_V_A2 = 0.01


# --------------------------------------------------------------------------------------------
# Labelled data
# --------------------------------------------------------------------------------------------
@dataclass
class EFGStructure:
    """A structure with EFG labels: ``efg`` (N, 3, 3) V/Å², symmetric traceless."""

    atoms: object
    efg: np.ndarray
    source: str


def _source_label(atoms, where: str, index: int) -> str:
    src = atoms.info.get("source")
    if isinstance(src, dict):
        return f"{src.get('file', where)}:{src.get('step', index + 1)}"
    return f"{where}:{index + 1}"


def traceless_symmetric_labels(efg: np.ndarray, where: str) -> np.ndarray:
    """``efg`` (N, 3, 3) projected on its symmetric traceless part; an error naming ``where``
    and the atom when the part thrown away exceeds :data:`LABEL_TOLERANCE_V_A2`."""
    sym = 0.5 * (efg + np.swapaxes(efg, 1, 2))
    trace = np.trace(sym, axis1=1, axis2=2) / 3.0
    tol = LABEL_TOLERANCE_V_A2 + 1e-3 * np.abs(efg).max(axis=(1, 2))
    bad_sym = np.abs(efg - sym).max(axis=(1, 2)) > tol
    bad_trace = np.abs(trace) > tol
    for bad, what in ((bad_sym, "is not symmetric"), (bad_trace, "has a trace")):
        if bad.any():
            atom = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{where}: EFG label of atom {atom + 1} {what} "
                             f"(beyond {LABEL_TOLERANCE_V_A2} V/Å²): {efg[atom].tolist()}")
    return sym - trace[:, None, None] * np.eye(3)


def structures_from_frames(frames, where: str) -> List[EFGStructure]:
    """EFG-labelled structures from ASE Atoms with ``arrays["efg"]`` (N, 3, 3) V/Å²."""
    out = []
    for k, atoms in enumerate(frames):
        label = _source_label(atoms, where, k)
        if "efg" not in atoms.arrays:
            raise ValueError(f"{label}: structure has no per-atom EFG labels (arrays['efg'])")
        efg = np.asarray(atoms.arrays["efg"], dtype=np.float64)
        if efg.shape == (len(atoms), 9):
            efg = efg.reshape(len(atoms), 3, 3)
        if efg.shape != (len(atoms), 3, 3):
            raise ValueError(f"{label}: efg has shape {efg.shape}, expected ({len(atoms)}, 3, 3)")
        if not np.isfinite(efg).all():
            raise ValueError(f"{label}: EFG labels contain NaN or infinity")
        out.append(EFGStructure(atoms=atoms, efg=traceless_symmetric_labels(efg, label), source=label))
    return out


def read_efg_structures(paths: Sequence[str]) -> List[EFGStructure]:
    """All EFG-labelled structures of the data files, in file order (:func:`pyexport.data.read`)."""
    return read_labelled(paths, structures_from_frames)


def split_indices(n: int, val_fraction: float, test_fraction: float, seed: int) -> Dict[str, np.ndarray]:
    """Random split of ``n`` structures into train / val / test (:func:`pyexport.training.data.split_indices`;
    val gets at least one structure, as early stopping needs it)."""
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= f < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {f}")
    return fit_split_indices(n, (1.0 - val_fraction - test_fraction, val_fraction, test_fraction), seed)


# --------------------------------------------------------------------------------------------
# Graphs and batches
# --------------------------------------------------------------------------------------------
@dataclass
class EFGGraph:
    """Contract inputs of one structure with its edge vectors (E, 3) Å and labels (n, 3, 3)."""

    inputs: ContractInputs
    edge_vec: torch.Tensor
    efg: torch.Tensor
    source: str

    @property
    def n_atoms(self) -> int:
        return self.inputs.n_local


def prepare(structures: Sequence[EFGStructure], elements: Sequence[str], cutoff: float) -> List[EFGGraph]:
    """Neighbour lists (image atoms included) of every structure, built once."""
    out = []
    for st in structures:
        species_indices(st.atoms.get_chemical_symbols(), elements, where=st.source)
        inp = build_inputs(st.atoms, cutoff, elements)
        src, dst = inp.edge_index
        out.append(EFGGraph(inputs=inp, edge_vec=inp.pos.index_select(0, dst) - inp.pos.index_select(0, src),
                            efg=torch.from_numpy(st.efg), source=st.source))
    return out


@dataclass
class EFGBatch:
    edge_vec: torch.Tensor     # (E, 3) Å
    species: torch.Tensor      # (R,)
    edge_index: torch.Tensor   # (2, E)
    n_local: int
    efg: torch.Tensor          # (n_local, 3, 3) V/Å²
    n_atoms: List[int]


def make_batch(graphs: Sequence[EFGGraph]) -> EFGBatch:
    joined = join_inputs([g.inputs for g in graphs])
    return EFGBatch(edge_vec=torch.cat([g.edge_vec for g in graphs]), species=joined.species,
                    edge_index=joined.edge_index, n_local=joined.n_local,
                    efg=torch.cat([g.efg for g in graphs]), n_atoms=joined.n_atoms)


def batches_of(graphs: Sequence[EFGGraph], batch_frames: int, batch_atoms: int = 10 ** 9) -> List[EFGBatch]:
    groups = frame_groups([g.n_atoms for g in graphs], batch_atoms, batch_frames)
    return [make_batch([graphs[k] for k in group]) for group in groups]


def forward(model: torch.nn.Module, batch: EFGBatch) -> torch.Tensor:
    dtype = next(iter(model.parameters())).dtype
    return model(batch.edge_vec.to(dtype), batch.species, batch.edge_index, batch.n_local).to(torch.float64)


# --------------------------------------------------------------------------------------------
# Statistics of the labels
# --------------------------------------------------------------------------------------------
def species_mean_square(graphs: Sequence[EFGGraph], n_species: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean square label component ⟨V_ab²⟩ (V²/Å⁴) and atom count of every species."""
    total = torch.zeros(n_species, dtype=torch.float64)
    count = torch.zeros(n_species, dtype=torch.float64)
    for g in graphs:
        s = g.inputs.species[:g.n_atoms]
        total.index_add_(0, s, g.efg.pow(2).mean(dim=(1, 2)))
        count.index_add_(0, s, torch.ones(len(s), dtype=torch.float64))
    return total / count.clamp_min(1.0), count


def average_neighbours(graphs: Sequence[EFGGraph]) -> float:
    edges = sum(g.edge_vec.shape[0] for g in graphs)
    atoms = sum(g.n_atoms for g in graphs)
    return max(1.0, edges / max(atoms, 1))


def species_loss_weights(mean_square: torch.Tensor, count: torch.Tensor, elements: Sequence[str],
                         explicit: Optional[Mapping[str, float]] = None) -> torch.Tensor:
    """Per-species loss weights: ``explicit`` (element -> weight, every element named), or the
    inverse mean square label of each species normalised to a mean of 1 over training atoms.
    A species with no training atoms or all-zero labels gets the weight of the mean label."""
    if explicit:
        missing = [e for e in elements if e not in explicit]
        unknown = [e for e in explicit if e not in elements]
        if missing or unknown:
            raise ValueError(f"species weights must name exactly the elements {list(elements)} "
                             f"(missing {missing}, unknown {unknown})")
        w = torch.tensor([float(explicit[e]) for e in elements], dtype=torch.float64)
        if not bool(torch.all(w >= 0)) or float(w.sum()) == 0.0:
            raise ValueError(f"species weights must be >= 0 and not all zero, got {dict(explicit)}")
        return w
    overall = float((mean_square * count).sum() / count.sum().clamp_min(1.0))
    ms = torch.where((count > 0) & (mean_square > 0), mean_square,
                     torch.full_like(mean_square, max(overall, 1e-30)))
    w = 1.0 / ms
    return w / float((w * count).sum() / count.sum().clamp_min(1.0))


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------
def metric_isotopes(elements: Sequence[str], chosen: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """element -> isotope of the C_Q metrics, in ``elements`` order: ``chosen`` {element: isotope}
    (``--isotope Br=81Br``), every other element with a quadrupolar isotope at its default;
    resolved and checked by :func:`pyexport.nmr.resolve_isotopes` (the isotope must have a
    quadrupole moment and belong to its element, and the element must be in the data)."""
    from . import nmr

    resolved = nmr.resolve_isotopes(elements, chosen)
    return {element: resolved[element] for element in dict.fromkeys(elements) if element in resolved}


def efg_metrics(pred: Sequence[np.ndarray], label: Sequence[np.ndarray], symbols: Sequence[Sequence[str]],
                isotopes: Mapping[str, str]) -> dict:
    """Errors of predicted EFG tensors against labels (lists of (N_k, 3, 3) V/Å²).

    Component RMSE / MAE (V/Å²) over all 9 components, overall and per species, with the label
    standard deviation; per isotope the C_Q MAE (MHz) and mean |C_Q| of the labels; per species
    the eta MAE.
    """
    from . import nmr

    out: dict = {"n_structures": len(pred), "n_atoms": int(sum(len(p) for p in pred))}
    if not pred:
        return out
    p = np.concatenate(pred)
    y = np.concatenate(label)
    sym = np.concatenate([np.asarray(s) for s in symbols])
    d = (p - y).reshape(len(p), 9)

    def component_stats(mask):
        return {"component_rmse_V_per_A2": float(np.sqrt(np.mean(d[mask] ** 2))),
                "component_mae_V_per_A2": float(np.mean(np.abs(d[mask]))),
                "label_std_V_per_A2": float(np.std(y[mask])), "n_atoms": int(mask.sum())}

    out.update(component_stats(np.ones(len(p), dtype=bool)))
    out["relative_component_rmse"] = out["component_rmse_V_per_A2"] / max(out["label_std_V_per_A2"], 1e-300)
    out["species"] = {}
    for element in sorted(set(sym.tolist())):
        mask = sym == element
        stats = component_stats(mask)
        stats["eta_mae"] = float(np.mean(np.abs(nmr.eta(p[mask]) - nmr.eta(y[mask]))))
        stats["vzz_mae_V_per_A2"] = float(np.mean(np.abs(nmr.vzz(p[mask]) - nmr.vzz(y[mask]))))
        if element in isotopes:
            iso = isotopes[element]
            cq_p, cq_y = nmr.cq_mhz(p[mask], iso), nmr.cq_mhz(y[mask], iso)
            stats["isotope"] = iso
            stats["cq_mae_MHz"] = float(np.mean(np.abs(cq_p - cq_y)))
            stats["cq_mean_abs_MHz"] = float(np.mean(np.abs(cq_y)))
            stats["relative_cq_mae"] = stats["cq_mae_MHz"] / max(stats["cq_mean_abs_MHz"], 1e-300)
        out["species"][element] = stats
    return out


def predict_graphs(model: torch.nn.Module, graphs: Sequence[EFGGraph], batch_atoms: int = 4000) -> List[np.ndarray]:
    out: List[np.ndarray] = []
    with torch.no_grad():
        for batch in batches_of(graphs, batch_frames=len(graphs) or 1, batch_atoms=batch_atoms):
            out.extend(t.numpy() for t in torch.split(forward(model, batch), batch.n_atoms))
    return out


def split_metrics(model, graphs: Sequence[EFGGraph], splits: Mapping[str, np.ndarray],
                  isotopes: Mapping[str, str], elements: Sequence[str]) -> dict:
    out = {}
    for name, idx in splits.items():
        chosen = [graphs[k] for k in idx]
        symbols = [[elements[s] for s in g.inputs.species[:g.n_atoms].tolist()] for g in chosen]
        out[name] = efg_metrics(predict_graphs(model, chosen), [g.efg.numpy() for g in chosen], symbols, isotopes)
    return out


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def weighted_loss(pred: torch.Tensor, label: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Σ_i w_i ‖ΔV_i‖²_F / 9 / n (see the module docstring)."""
    return (weight * (pred - label).pow(2).mean(dim=(1, 2))).mean()


def _set_loss(model, batches: Sequence[EFGBatch], weights: torch.Tensor) -> float:
    total, n = 0.0, 0
    with torch.no_grad():
        for b in batches:
            w = weights.index_select(0, b.species[:b.n_local])
            total += float(weighted_loss(forward(model, b), b.efg, w)) * b.n_local
            n += b.n_local
    return total / max(n, 1)


def train(model: EFGModel, graphs: Sequence[EFGGraph], splits: Mapping[str, np.ndarray],
          weights: torch.Tensor, options: EFGTraining, seed: int = 0, progress: bool = True) -> dict:
    """Adam on all parameters, learning rate halved on validation plateaus, stopped after
    ``options.patience`` epochs without a better validation loss; the best state is kept."""
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    train_graphs = [graphs[k] for k in splits["train"]]
    val_batches = batches_of([graphs[k] for k in splits["val"]], batch_frames=64, batch_atoms=4000)
    optimiser = torch.optim.Adam(model.parameters(), lr=options.learning_rate)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimiser, factor=0.5, patience=max(1, options.patience // 4), min_lr=options.min_learning_rate)
    stopping = EarlyStopping(model, _set_loss(model, val_batches, weights), options.patience)
    history = [{"epoch": 0, "val_loss": stopping.best_val}]
    t0 = time.perf_counter()
    bar = tqdm(range(1, options.epochs + 1), desc="fit-efg", disable=not progress, unit="epoch")
    for epoch in bar:
        model.train()
        order = rng.permutation(len(train_graphs))
        running, n_atoms = 0.0, 0
        for batch in batches_of([train_graphs[k] for k in order], options.batch_frames):
            optimiser.zero_grad()
            w = weights.index_select(0, batch.species[:batch.n_local])
            loss = weighted_loss(forward(model, batch), batch.efg, w)
            loss.backward()
            optimiser.step()
            running += float(loss.detach()) * batch.n_local
            n_atoms += batch.n_local
        model.eval()
        val = _set_loss(model, val_batches, weights)
        scheduler.step(val)
        history.append({"epoch": epoch, "train_loss": running / max(n_atoms, 1), "val_loss": val,
                        "lr": optimiser.param_groups[0]["lr"]})
        stop = stopping.update(model, val, epoch)
        bar.set_postfix(train=f"{running / max(n_atoms, 1):.3g}", val=f"{val:.3g}", best=f"{stopping.best_val:.3g}")
        if stop:
            break
    stopping.restore(model)
    model.eval()
    return {"best_val_loss": stopping.best_val, "best_epoch": stopping.best_epoch, "epochs_run": len(history) - 1,
            "stopped_early": len(history) - 1 < options.epochs, "time_train_s": time.perf_counter() - t0,
            "history": history}


# --------------------------------------------------------------------------------------------
# The whole fit
# --------------------------------------------------------------------------------------------


def run_efg_fit(config: EFGFitConfig, structures: Optional[Sequence[EFGStructure]] = None
                ) -> Tuple[dict, dict, EFGModel]:
    """Read, split, train, evaluate: ``(checkpoint, metrics, model)``; nothing is written.

    ``structures`` may be passed directly (``config.data`` then only names the files hashed)."""
    t0 = time.perf_counter()
    if structures is None:
        if not config.data:
            raise ValueError("no data files given")
        structures = read_efg_structures(config.data)
    structures = at_most_atoms(structures, config.max_atoms)
    data_files = [os.fspath(p) for p in config.data]
    data_hash = hash_files(data_files) if data_files and all(os.path.isfile(p) for p in data_files) else ""
    elements = list(config.elements) if config.elements else elements_of(structures)
    isotopes = metric_isotopes(elements, config.isotopes)
    splits = split_indices(len(structures), config.val_fraction, config.test_fraction, config.seed)
    graphs = prepare(structures, elements, config.cutoff)
    train_graphs = [graphs[k] for k in splits["train"]]
    mean_square, count = species_mean_square(train_graphs, len(elements))
    weights = species_loss_weights(mean_square, count, elements, config.species_weights)
    t_prepare = time.perf_counter() - t0

    hp = EFGHyperparameters(n_species=len(elements), cutoff=config.cutoff, lmax=config.lmax,
                            n_radial=config.n_radial, channels=config.channels,
                            product_channels=config.product_channels, radial_hidden=config.hidden,
                            gate_hidden=config.hidden, avg_neighbors=average_neighbours(train_graphs))
    model = build_efg_model(hp, "float64", seed=config.seed)
    overall = float((mean_square * count).sum() / count.sum().clamp_min(1.0))
    scale = torch.where(mean_square > 0, mean_square, torch.full_like(mean_square, max(overall, 1e-30))).sqrt()
    model.set_species_scale(scale)
    report = train(model, graphs, splits, weights, config.training, config.seed, config.progress)
    metrics = {"model": MODEL_NAME, "elements": elements, "cutoff": config.cutoff, "isotopes": isotopes,
               "species_loss_weights": dict(zip(elements, weights.tolist())),
               "n_parameters": int(sum(p.numel() for p in model.parameters())),
               "time_prepare_s": t_prepare, "time_train_s": report["time_train_s"],
               "epochs_run": report["epochs_run"], "best_epoch": report["best_epoch"],
               "split_sizes": {k: len(v) for k, v in splits.items()},
               "max_atoms": config.max_atoms, "n_structures": len(structures)}
    metrics.update(split_metrics(model, graphs, splits, isotopes, elements))
    if config.dtype == "float32":
        model32 = model_from_state(hp, model.state_dict(), "float32")
        metrics["float32"] = split_metrics(model32, graphs, splits, isotopes, elements)
    ckpt = make_checkpoint(model, hp, elements, config, metrics, data_hash, data_files, splits,
                           [s.source for s in structures], report)
    return ckpt, metrics, model


def make_checkpoint(model: EFGModel, hp: EFGHyperparameters, elements: Sequence[str], config: EFGFitConfig,
                    metrics: dict, data_hash: str, data_files: Sequence[str], splits, sources, report) -> dict:
    from . import __version__

    return {**checkpoint_header("efg"), "model": MODEL_NAME, "elements": list(elements),
            "cutoff": float(hp.cutoff), "dtype": config.dtype, "hyperparameters": hp.as_dict(),
            "state_dict": {k: v.detach().to(torch.float64 if v.is_floating_point() else v.dtype).clone()
                           for k, v in model.state_dict().items()},
            "metrics": metrics, "data_hash": data_hash, "data_files": list(data_files),
            "training": {"epochs": config.training.epochs, "learning_rate": config.training.learning_rate,
                         "batch_frames": config.training.batch_frames, "patience": config.training.patience,
                         "seed": config.seed, "val_fraction": config.val_fraction,
                         "test_fraction": config.test_fraction,
                         "species_weights": metrics["species_loss_weights"],
                         "split_sources": {k: [sources[i] for i in v] for k, v in splits.items()},
                         "history": report["history"]},
            "pyexport_version": __version__}


def load_efg_checkpoint(path: str) -> dict:
    """A checkpoint written by ``pyexport fit-efg``; a clear error for anything else."""
    return read_checkpoint(path, "efg")


def efg_model_from_checkpoint(ckpt: dict, dtype: str = "float64") -> EFGModel:
    """The trained (eager) :class:`EFGModel` of a checkpoint in ``dtype``."""
    return model_from_state(EFGHyperparameters(**ckpt["hyperparameters"]), ckpt["state_dict"], dtype)


def build_efg_module_from_checkpoint(ckpt: dict, dtype: Optional[str] = None) -> EFGModule:
    """The contract ``efg`` module of a checkpoint (inner model already TorchScript, ready for
    :func:`pyexport.contract.export_model`), in the checkpoint's dtype or ``dtype``."""
    dtype = dtype or ckpt["dtype"]
    model = efg_model_from_checkpoint(ckpt, dtype)
    return efg_contract_module(model, ckpt["elements"], ckpt["cutoff"], dtype=dtype, scripted=True)


def efg_provenance(ckpt: dict) -> dict:
    """What ``pyexport export`` writes next to the contract keys in ``metadata.json``."""
    from . import __version__

    metrics = {k: v for k, v in ckpt["metrics"].items()}
    return {"model_type": MODEL_NAME, "hyperparameters": ckpt["hyperparameters"],
            "data_hash": ckpt["data_hash"], "data_files": ckpt["data_files"], "metrics": metrics,
            "training": {k: v for k, v in ckpt["training"].items() if k not in ("history", "split_sources")},
            "package": "pyexport", "package_version": __version__,
            "trained_with_version": ckpt.get("pyexport_version")}
