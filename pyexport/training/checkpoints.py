"""Checkpoints of every fit (``pyexport fit``, ``committee``-free; ``pyexport fit-efg``): one
schema, one safe reader.

A checkpoint is a ``torch.save`` of plain data (dicts, lists, numbers, strings, tensors) with a
common header::

    {"format": "pyexport-checkpoint", "format_version": 2, "kind": "potential" | "efg", ...}

and a body that belongs to its kind (a potential's ``model_type``, ``hyperparameters``,
``state_dict``, ``metrics``, ``fit``, ...; an EFG model's, :mod:`pyexport.fit_efg`).
:func:`read_checkpoint` reads any of them with ``torch.load(weights_only=True)`` (a file holding
other Python objects is refused before any of its code can run) and returns it with its
``kind``; the checkpoints of format version 1 (``"format": "pyexport-potential-checkpoint"``, or
``"model": "efg"``) are read as well.

This module also turns a potential checkpoint into its model (:func:`model_from_checkpoint`,
:func:`potential_from_checkpoint`); the EFG model's counterparts are in :mod:`pyexport.fit_efg`.
"""
import os
import re
from typing import Optional, Sequence

import numpy as np
import torch

from ..contract import GradedPotentialModule, PotentialModule
from ..models.cluster import build_energy_model
from ..models.cluster_basis import ClusterBasis
from ..models.grade import ExtrapolationGrade
from ..models.pair import CoreRepulsion, WithCore

CHECKPOINT_FORMAT = "pyexport-checkpoint"
CHECKPOINT_VERSION = 2

#: The kinds of checkpoint and the command that writes each (for error messages).
KINDS = {"potential": "pyexport fit", "efg": "pyexport fit-efg"}

#: Headers of format version 1, by kind: before the common header, each kind had its own.
_VERSION_1 = {"potential": ("format", "pyexport-potential-checkpoint"), "efg": ("model", "efg")}


class UnsafeCheckpointError(ValueError):
    """A checkpoint file holding Python objects other than tensors and plain data: unpickling
    them could run code from the file, so it is refused."""


def checkpoint_header(kind: str) -> dict:
    """The common header of a checkpoint of ``kind`` (``potential`` or ``efg``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown checkpoint kind {kind!r} (known: {sorted(KINDS)})")
    return {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, "kind": kind}


def _plain_data(obj):
    """``obj`` with numpy scalars and arrays turned into Python numbers and lists (tensors, dicts,
    lists, tuples, numbers and strings kept), so that ``torch.load(weights_only=True)`` reads it."""
    if isinstance(obj, dict):
        return {k: _plain_data(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain_data(v) for v in obj)
    if isinstance(obj, (np.ndarray, np.generic)):
        return obj.tolist()
    return obj


def write_checkpoint(ckpt: dict, path: str) -> None:
    """Write a checkpoint as plain data (dicts, lists, numbers, strings, tensors): what
    :func:`read_checkpoint_file` reads without unpickling arbitrary objects."""
    torch.save(_plain_data(ckpt), path)


def read_checkpoint_file(path: str):
    """The object in a torch checkpoint file, with errors naming the file (missing, unreadable);
    :func:`read_checkpoint` checks that it is a checkpoint. Only tensors and plain data are
    unpickled (``weights_only=True``): a file with anything else is refused with
    :class:`UnsafeCheckpointError` before any of its code can run."""
    import pickle

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)|Unsupported operand \S+", str(exc))
        what = f" ({found.group(1) or found.group(0)})" if found else ""
        raise UnsafeCheckpointError(
            f"{path}: refused: the file holds Python objects other than tensors and plain data{what}; "
            f"unpickling them could run code from the file. pyexport checkpoints hold plain data only: "
            f"refit if this is an old one, and never load files of unknown origin") from None
    except Exception as exc:
        raise ValueError(f"{path}: not a pyexport checkpoint ({type(exc).__name__}: {exc})") from None


def _kind_of(ckpt) -> Optional[str]:
    """The kind of a checkpoint object (current or version-1 header), or None."""
    if not isinstance(ckpt, dict):
        return None
    if ckpt.get("format") == CHECKPOINT_FORMAT:
        return ckpt.get("kind")
    for kind, (key, value) in _VERSION_1.items():
        if ckpt.get(key) == value:
            return kind
    return None


def _what(kind: Optional[str]) -> str:
    if kind == "efg":
        return "an EFG checkpoint (written by `pyexport fit-efg`)"
    if kind == "potential":
        return "a pyexport potential checkpoint (written by `pyexport fit`)"
    return "a pyexport checkpoint (written by `pyexport fit` or `pyexport fit-efg`)"


def read_checkpoint(path: str, kind: Optional[str] = None) -> dict:
    """The checkpoint at ``path`` (of ``kind`` if given; any kind otherwise), with ``"kind"`` set;
    a clear error naming the file for anything else."""
    ckpt = read_checkpoint_file(path)
    found = _kind_of(ckpt)
    if found not in KINDS or (kind is not None and found != kind):
        raise ValueError(f"{path}: not {_what(kind)}")
    version = ckpt.get("format_version")
    expected = CHECKPOINT_VERSION if ckpt.get("format") == CHECKPOINT_FORMAT else 1
    if version != expected:
        raise ValueError(f"{path}: checkpoint format version {version} is not supported")
    return {**ckpt, "kind": found}


# --------------------------------------------------------------------------------------------
# Potential checkpoints (pyexport fit)
# --------------------------------------------------------------------------------------------
def make_checkpoint(model: torch.nn.Module, model_type: str, elements: Sequence[str], basis: ClusterBasis,
                    dtype: str, hidden: Sequence[int], metrics: dict, data_hash: str, data_files: Sequence[str],
                    fit_report: dict) -> dict:
    """The checkpoint of a fitted potential (float64 state as fitted)."""
    from .. import __version__

    return {**checkpoint_header("potential"), "model_type": model_type,
            "elements": list(elements), "cutoff": float(basis.cutoff), "dtype": dtype,
            "hyperparameters": {"basis": basis.as_dict(), "hidden": list(hidden)},
            "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "metrics": metrics, "data_hash": data_hash, "data_files": [os.fspath(p) for p in data_files],
            "fit": fit_report, "pyexport_version": __version__}


def load_checkpoint(path: str) -> dict:
    """A checkpoint written by ``pyexport fit``; a clear error for anything else."""
    return read_checkpoint(path, "potential")


def model_from_checkpoint(ckpt: dict) -> torch.nn.Module:
    """The float64 energy model of a checkpoint, with its fitted state."""
    basis = ClusterBasis.from_dict(ckpt["hyperparameters"]["basis"])
    model = build_energy_model(ckpt["model_type"], len(ckpt["elements"]), basis, ckpt["hyperparameters"]["hidden"],
                               elements=ckpt["elements"])
    model.load_state_dict(ckpt["state_dict"])
    core = ckpt.get("core_repulsion")
    if core:
        model = WithCore(model, CoreRepulsion(core["r_core_A"], core["strength_eV"]))
    return model.eval()

def potential_from_checkpoint(ckpt: dict, dtype: Optional[str] = None) -> torch.nn.Module:
    """The contract module of a checkpoint, in the checkpoint's dtype or ``dtype``: a
    :class:`GradedPotentialModule` when the checkpoint has an active set, else a
    :class:`PotentialModule`."""
    dtype = dtype or ckpt["dtype"]
    model = model_from_checkpoint(ckpt)
    if dtype == "float32":
        model = model.to(torch.float32)
    for p in model.parameters():
        p.requires_grad_(False)
    if ckpt.get("active_set"):
        grade = ExtrapolationGrade(ckpt["active_set"])
        if dtype == "float32":
            grade = grade.to(torch.float32)
        return GradedPotentialModule(model, grade, ckpt["elements"], ckpt["cutoff"], dtype=dtype)
    return PotentialModule(model, ckpt["elements"], ckpt["cutoff"], dtype=dtype)

def provenance(ckpt: dict) -> dict:
    """What ``pyexport export`` writes next to the contract keys in ``metadata.json``."""
    from .. import __version__

    return {"model_type": ckpt["model_type"], "hyperparameters": ckpt["hyperparameters"],
            "data_hash": ckpt["data_hash"], "data_files": ckpt["data_files"], "metrics": ckpt["metrics"],
            "fit": {k: v for k, v in ckpt["fit"].items() if k != "history"},
            "package": "pyexport", "package_version": __version__,
            "trained_with_version": ckpt.get("pyexport_version"),
            **({"active_set_left_out": True} if ckpt.get("active_set_left_out") else {})}
