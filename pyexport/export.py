"""Checkpoints into model files, and what a model or checkpoint file holds.

- :func:`export_checkpoint`: script the checkpoint of ``pyexport fit`` or ``pyexport fit-efg``
  into the contract's TorchScript file (:mod:`pyexport.contract`); a potential is read back and
  compared with the in-memory model on a small test structure.
- :func:`describe`: the contract attributes and metadata of an exported model, or the summary of
  a checkpoint (``pyexport inspect``).
"""
from typing import Optional

import numpy as np


def export_potential_checkpoint(ckpt: dict, output: str, dtype: Optional[str]) -> dict:
    """Script and write a potential checkpoint; returns the archive's metadata. The written file
    is read back and compared with the in-memory model on a small test structure."""
    from .contract import export_model, load_model
    from .training.checkpoints import potential_from_checkpoint, provenance

    module = potential_from_checkpoint(ckpt, dtype)
    export_model(module, output, provenance=provenance(ckpt))
    loaded, meta = load_model(output, kind="potential")
    meta["export_check_max_force_difference"] = _compare_on_test_structure(module, loaded, ckpt)
    return meta


def _compare_on_test_structure(eager, loaded, ckpt) -> float:
    """Max |ΔF| (eV/Å) between the in-memory and the reloaded model on a jittered simple-cubic
    structure of all the model's elements."""
    from ase import Atoms

    from .contract import build_inputs

    elements = ckpt["elements"]
    spacing = 2.6
    grid = np.array([(i, j, k) for i in range(3) for j in range(3) for k in range(3)], dtype=float)
    rng = np.random.default_rng(0)
    atoms = Atoms([elements[n % len(elements)] for n in range(len(grid))],
                  positions=(grid + rng.uniform(-0.1, 0.1, grid.shape)) * spacing,
                  cell=np.eye(3) * 3 * spacing, pbc=True)
    inputs = build_inputs(atoms, ckpt["cutoff"], elements)
    a = eager(*inputs.as_args())
    b = loaded(*inputs.as_args())
    return float((a["forces"] - b["forces"]).abs().max())


def export_efg_checkpoint(ckpt: dict, output: str, dtype: Optional[str]) -> dict:
    """Export a ``pyexport fit-efg`` checkpoint as a contract ``efg`` model."""
    from .contract import export_model, module_metadata
    from .fit_efg import build_efg_module_from_checkpoint, efg_provenance

    scripted = export_model(build_efg_module_from_checkpoint(ckpt, dtype), output,
                            provenance=efg_provenance(ckpt))
    return module_metadata(scripted)


#: Exporters by checkpoint kind (:mod:`pyexport.training.checkpoints`); a new kind adds its own.
EXPORTERS = {"potential": export_potential_checkpoint, "efg": export_efg_checkpoint}


def export_checkpoint(path: str, output: str, dtype: Optional[str] = None, active_set: bool = True) -> dict:
    """Write the model of checkpoint ``path`` (any kind) to ``output``; returns the file's metadata
    (for a potential with ``export_check_max_force_difference``, eV/Å). ``active_set=False`` leaves
    a potential's active set out: the same energies and forces in a much smaller file (the active
    set is a (K, r) matrix per species, 30 MB for the five species of the MAPbI3 example against
    0.2 MB for the rest), without the ``extrapolation_grade`` output."""
    from .training.checkpoints import read_checkpoint

    ckpt = read_checkpoint(path)
    if not active_set:
        if ckpt["kind"] != "potential":
            raise ValueError(f"{path}: a {ckpt['kind']} checkpoint has no active set to leave out")
        if not ckpt.get("active_set"):
            raise ValueError(f"{path}: this potential was fitted without an active set; nothing to leave out")
        ckpt = {**ckpt, "active_set": None, "active_set_left_out": True}
    return EXPORTERS[ckpt["kind"]](ckpt, output, dtype)


def describe(path: str) -> dict:
    """Contract attributes + metadata.json of an exported model, or the summary of a checkpoint
    (``kind``, ``summary``, ``fit``: the fit or training report, ``metrics``)."""
    from .contract import ContractError, METADATA_KEYS, OPTIONAL_METADATA_KEYS, load_model
    from .training.checkpoints import UnsafeCheckpointError, read_checkpoint

    try:
        module, meta = load_model(path)
        keys = METADATA_KEYS + tuple(k for k in OPTIONAL_METADATA_KEYS if hasattr(module, k))
        attributes = {k: getattr(module, k) for k in keys}
        attributes["elements"] = list(attributes["elements"])
        return {"file": path, "type": "exported model", "attributes": attributes,
                "metadata": {k: v for k, v in meta.items() if k not in keys}}
    except ContractError as exc:
        model_error = str(exc)
    try:
        ckpt = read_checkpoint(path)
    except UnsafeCheckpointError:
        raise
    except (ValueError, FileNotFoundError) as exc:
        raise ValueError(f"{model_error}; and not a pyexport checkpoint either ({exc})") from None
    report = ckpt["fit"] if ckpt["kind"] == "potential" else ckpt["training"]
    return {"file": path, "type": "checkpoint", "kind": ckpt["kind"],
            "summary": {"model_type": ckpt.get("model_type", ckpt.get("model")),
                        **{k: ckpt[k] for k in ("elements", "cutoff", "dtype", "hyperparameters", "data_hash",
                                                "data_files", "pyexport_version")}},
            "fit": {k: v for k, v in report.items() if k not in ("split_sources", "nn", "history")},
            "metrics": ckpt["metrics"]}
