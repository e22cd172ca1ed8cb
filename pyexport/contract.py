"""The efgmd model contract: the one description of what an exported model file is, and its code.

One file format, two consumers: the LAMMPS plugin (C++) and the Python side (ASE calculator, EFG
post-processor). An exported model is a TorchScript module with

    forward(pos, species, edge_index, n_local) -> Dict[str, Tensor]

- ``pos``        (N, 3) float64, Å: the ``n_local`` owned atoms first, then ghost/image atoms.
- ``species``    (N,) int64, index into the model's ``elements``.
- ``edge_index`` (2, E) int64, pairs (i, j) with i < n_local, |r_j - r_i| < cutoff, j any atom.
- potential outputs: ``energy`` (scalar, eV), ``atom_energy`` (n_local,), ``forces`` (N, 3) eV/Å
  (ghost rows too), ``virial`` (3, 3) eV = -Σ_edges r_ij ⊗ ∂E/∂r_ij, optionally ``atom_virial``
  (N, 6) eV in LAMMPS order xx yy zz xy xz yz.
- per-atom virial on request (optional): a model that has the bool attribute
  ``compute_atom_virial`` returns ``atom_virial`` only while it is True (its default, so a caller
  that does not know the switch gets what it always got); LAMMPS sets it to whether the step needs
  per-atom virials (``vflag_atom``). Models without the attribute (exported before it existed)
  return ``atom_virial`` on every call, and callers use it as before.
- committee potentials (optional, :class:`CommitteePotentialModule`): the outputs above are those
  of the committee mean, plus ``committee_forces`` (K, N, 3) eV/Å, each member's forces on every
  row (ghost rows too, summed home like ``forces``); the metadata attribute ``committee_size`` = K.
- extrapolation grade (optional, :class:`GradedPotentialModule`): the attribute
  ``active_set_size`` (int > 0) announces it; while the caller has set the bool attribute
  ``compute_extrapolation_grade`` to True, forward also returns ``extrapolation_grade`` (n_local,),
  dimensionless, ≥ 0: ≤ 1 for environments inside the training data's active set, 1–2 mild
  extrapolation, ≫ 2 an environment the fit never saw (:mod:`pyexport.models.grade`).
- per-species-pair cutoffs (optional): the buffer ``pair_cutoffs`` (S, S) float64 Å, symmetric,
  each ≤ ``cutoff``; the model needs no edge of species pair (a, b) longer than
  ``pair_cutoffs[a, b]`` (LAMMPS's neighbour list uses them). Absent means ``cutoff`` everywhere.
- EFG outputs: ``efg`` (n_local, 3, 3) V/Å², symmetric and traceless.
- locality: ``atom_energy[i]`` (and ``efg[i]``, the grade of i) depends only on the edges (i, j)
  and the positions and species of their atoms, never on which other atoms are owned or on
  ``n_local`` itself. Callers rely on it: LAMMPS (``pair_style mlff chunk N``) evaluates a rank's
  owned atoms in several calls, each with the chunk's atoms as the owned rows, and adds up
  energies, forces and virials.

All outputs are float64 whatever the model's internal ``dtype``. The scripted module carries the
metadata attributes of :data:`METADATA_KEYS`; the archive holds the same keys plus provenance in
``metadata.json``.

This module holds everything both sides must agree on: the wrappers that turn a per-atom energy
model or an EFG model into a contract module, export/load with metadata checks, and the building
of contract inputs from a periodic cell (image atoms), which every Python consumer uses.
"""
import json
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .neighbors import neighbor_pairs

CONTRACT_VERSION = 1
UNITS = "metal"
KINDS = ("potential", "efg")
DTYPES = {"float64": torch.float64, "float32": torch.float32}
METADATA_KEYS = ("contract_version", "kind", "elements", "cutoff", "dtype", "units")
#: Attributes a model may carry in addition (readers that do not know them ignore them).
OPTIONAL_METADATA_KEYS = ("committee_size", "active_set_size")
METADATA_FILE = "metadata.json"

POTENTIAL_OUTPUTS = ("energy", "atom_energy", "forces", "virial")
EFG_OUTPUTS = ("efg",)


class ContractError(ValueError):
    """A model file or a model output that does not follow the contract."""


# --------------------------------------------------------------------------------------------
# Wrappers: per-atom models -> contract modules
# --------------------------------------------------------------------------------------------
class PotentialModule(torch.nn.Module):
    """Wrap a per-atom energy model into a contract ``potential``.

    ``energy_model(edge_vec, species, edge_index, n_local) -> atom_energy`` takes the edge
    vectors ``edge_vec = pos[j] - pos[i]`` (E, 3) Å in the model dtype and returns the (n_local,)
    per-atom energies in eV. Forces and the virial follow from the gradient dE/dr_ij of the
    total energy with respect to the edge vectors, which makes the virial exact for any cell (no
    finite differences, no f·r sum over images) and keeps the model strictly local.

    The gradient is the energy model's own when it has ``energy_and_edge_gradient(edge_vec,
    species, edge_index, n_local, with_features) -> (atom_energy, features, dE/dr_ij)`` (the cluster models,
    hand-written), else one autograd backward pass. In training mode, or while the attribute
    ``autograd_forces`` is True, it is always autograd: the reference the tests compare with.
    ``atom_virial`` is returned while ``per_atom_virial`` (the model provides it at all) and
    ``compute_atom_virial`` (the caller wants it this call; True unless set) are both True.
    """

    contract_version: int
    kind: str
    elements: List[str]
    cutoff: float
    dtype: str
    units: str
    per_atom_virial: bool
    compute_atom_virial: bool
    autograd_forces: bool

    def __init__(self, energy_model: torch.nn.Module, elements: Sequence[str], cutoff: float,
                 dtype: str = "float64", per_atom_virial: bool = True):
        super().__init__()
        _init_potential(self, energy_model, elements, cutoff, dtype, per_atom_virial)

    def forward(self, pos: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                n_local: int) -> Dict[str, torch.Tensor]:
        with_atom_virial = self.per_atom_virial and self.compute_atom_virial
        if hasattr(self.model, "energy_and_edge_gradient") and not (self.training or self.autograd_forces):
            edge_vec, src, dst = _edge_vectors(pos, edge_index, self.dtype, False)
            atom_energy, _, dE_dr = self.model.energy_and_edge_gradient(edge_vec, species, edge_index, n_local, False)
            return _potential_outputs(atom_energy, edge_vec, dE_dr, src, dst, pos.shape[0], with_atom_virial)
        edge_vec, src, dst = _edge_vectors(pos, edge_index, self.dtype, True)
        atom_energy = self.model(edge_vec, species, edge_index, n_local)
        return _energy_outputs(atom_energy, edge_vec, src, dst, pos.shape[0], with_atom_virial, self.training)


class GradedPotentialModule(torch.nn.Module):
    """A :class:`PotentialModule` that can also report the extrapolation grade of each owned atom.

    ``energy_model`` has ``energy_and_features(edge_vec, species, edge_index, n_local) ->
    (atom_energy (n_local,), features (n_local, K))`` (``cluster``, ``cluster-nn``, with or without
    a core); ``grade`` maps (features, species) to γ (n_local,)
    (:class:`pyexport.models.grade.ExtrapolationGrade`). The attribute ``active_set_size`` (> 0)
    announces the grade; the grade is computed, and returned as ``extrapolation_grade`` (n_local,)
    float64, only while the caller has set ``compute_extrapolation_grade = True``: the projection
    costs about 0.7 of a model step (``benchmarks/bench_grade_core.py``), so LAMMPS asks for it
    only on the steps where ``compute mlff/grade`` needs it. Energies, forces and virials are those of the plain
    :class:`PotentialModule` of the same energy model, bit for bit (the same analytic or autograd
    path and switches).
    """

    contract_version: int
    kind: str
    elements: List[str]
    cutoff: float
    dtype: str
    units: str
    per_atom_virial: bool
    compute_atom_virial: bool
    autograd_forces: bool
    active_set_size: int
    compute_extrapolation_grade: bool

    def __init__(self, energy_model: torch.nn.Module, grade: torch.nn.Module, elements: Sequence[str],
                 cutoff: float, dtype: str = "float64", per_atom_virial: bool = True):
        super().__init__()
        if int(grade.size) < 1:
            raise ContractError(f"active_set_size must be a positive integer, got {grade.size}")
        _init_potential(self, energy_model, elements, cutoff, dtype, per_atom_virial)
        self.grade = grade
        self.active_set_size = int(grade.size)
        self.compute_extrapolation_grade = False

    def forward(self, pos: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                n_local: int) -> Dict[str, torch.Tensor]:
        with_atom_virial = self.per_atom_virial and self.compute_atom_virial
        if hasattr(self.model, "energy_and_edge_gradient") and not (self.training or self.autograd_forces):
            edge_vec, src, dst = _edge_vectors(pos, edge_index, self.dtype, False)
            atom_energy, features, dE_dr = self.model.energy_and_edge_gradient(
                edge_vec, species, edge_index, n_local, self.compute_extrapolation_grade)
            out = _potential_outputs(atom_energy, edge_vec, dE_dr, src, dst, pos.shape[0], with_atom_virial)
        else:
            edge_vec, src, dst = _edge_vectors(pos, edge_index, self.dtype, True)
            atom_energy, features = self.model.energy_and_features(edge_vec, species, edge_index, n_local)
            out = _energy_outputs(atom_energy, edge_vec, src, dst, pos.shape[0], with_atom_virial, self.training)
        if self.compute_extrapolation_grade:
            out["extrapolation_grade"] = self.grade(features.detach(), species[:n_local]).to(torch.float64)
        return out


def _init_potential(module: torch.nn.Module, energy_model: torch.nn.Module, elements: Sequence[str],
                    cutoff: float, dtype: str, per_atom_virial: bool) -> None:
    """What every single-model potential wrapper sets: its energy model, the contract metadata,
    the pair cutoffs, whether it returns ``atom_virial`` (and the per-call switch of it, on), and
    the autograd reference switch (off)."""
    _check_metadata_values("potential", elements, cutoff, dtype)
    module.model = energy_model
    _set_metadata(module, "potential", elements, cutoff, dtype)
    _set_pair_cutoffs(module, energy_model, cutoff)
    module.per_atom_virial = per_atom_virial
    module.compute_atom_virial = True
    module.autograd_forces = False


def _energy_outputs(atom_energy: torch.Tensor, edge_vec: torch.Tensor, src: torch.Tensor, dst: torch.Tensor,
                    n_all: int, per_atom_virial: bool, create_graph: bool) -> Dict[str, torch.Tensor]:
    """The contract outputs from atom energies that depend on ``edge_vec``: one backward pass
    gives dE/dr_ij (zero where the energy does not depend on an edge)."""
    grads = torch.autograd.grad([atom_energy.sum()], [edge_vec], create_graph=create_graph, allow_unused=True)
    dE_dr = grads[0]
    if dE_dr is None:
        dE_dr = torch.zeros_like(edge_vec)
    return _potential_outputs(atom_energy, edge_vec, dE_dr, src, dst, n_all, per_atom_virial)


def _edge_vectors(pos: torch.Tensor, edge_index: torch.Tensor, dtype: str, requires_grad: bool = True
                  ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Edge vectors r_ij = r_j - r_i (E, 3) Å in the model dtype, detached, and requiring grad
    when the forces and virial are to come from autograd; and the edge ends (src, dst)."""
    model_dtype = torch.float64 if dtype == "float64" else torch.float32
    pos = pos.to(model_dtype)
    src = edge_index[0]
    dst = edge_index[1]
    edge_vec = (pos.index_select(0, dst) - pos.index_select(0, src)).detach()
    if requires_grad:
        edge_vec.requires_grad_(True)
    return edge_vec, src, dst


def _edge_forces(dE_dr: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, n_all: int) -> torch.Tensor:
    """Forces (..., N, 3) from edge gradients (..., E, 3): F_i = -dE/dr_i; r_ij = r_j - r_i, so i
    gains +dE/dr_ij and j gains -dE/dr_ij. Leading dimensions are kept (committee members)."""
    dim = dE_dr.dim() - 2
    shape = list(dE_dr.shape[:dim]) + [n_all, 3]
    forces = torch.zeros(shape, dtype=dE_dr.dtype, device=dE_dr.device)
    forces.index_add_(dim, src, dE_dr)
    return forces.index_add_(dim, dst, dE_dr, alpha=-1.0)


def _potential_outputs(atom_energy: torch.Tensor, edge_vec: torch.Tensor, dE_dr: torch.Tensor,
                       src: torch.Tensor, dst: torch.Tensor, n_all: int, per_atom_virial: bool
                       ) -> Dict[str, torch.Tensor]:
    """The contract outputs of a potential from its atom energies and edge gradients dE/dr_ij."""
    out: Dict[str, torch.Tensor] = {
        "energy": atom_energy.sum().to(torch.float64),
        "atom_energy": atom_energy.to(torch.float64),
        "forces": _edge_forces(dE_dr, src, dst, n_all).to(torch.float64),
        "virial": (-(edge_vec.transpose(0, 1) @ dE_dr)).to(torch.float64),
    }
    if per_atom_virial:
        out["atom_virial"] = _split_edge_virial(edge_vec, dE_dr, src, dst, n_all).to(torch.float64)
    return out


class CommitteePotentialModule(torch.nn.Module):
    """Wrap a committee of K per-atom energy models into a contract ``potential`` whose outputs
    carry the committee's force disagreement.

    ``committee_model(edge_vec, species, edge_index, n_local) -> (K, n_local)`` eV returns every
    member's atom energies (computed together, e.g. from one shared descriptor). The module
    returns the contract outputs of the committee mean (energy, atom energies, forces, virials of
    the mean are the means of the members'), plus ``committee_forces`` (K, N, 3) eV/Å: every
    member's forces on all rows, ghosts included, so that a consumer folds them home exactly
    like ``forces`` before it compares the members. ``committee_size`` (K ≥ 2) is a metadata
    attribute. Member forces take one backward pass each (K passes through the shared graph).
    """

    contract_version: int
    kind: str
    elements: List[str]
    cutoff: float
    dtype: str
    units: str
    per_atom_virial: bool
    compute_atom_virial: bool
    committee_size: int

    def __init__(self, committee_model: torch.nn.Module, committee_size: int, elements: Sequence[str],
                 cutoff: float, dtype: str = "float64", per_atom_virial: bool = True):
        super().__init__()
        _check_metadata_values("potential", elements, cutoff, dtype)
        if int(committee_size) != committee_size or committee_size < 2:
            raise ContractError(f"committee_size must be an integer >= 2, got {committee_size}")
        self.model = committee_model
        _set_metadata(self, "potential", elements, cutoff, dtype)
        _set_pair_cutoffs(self, self.model, cutoff)
        self.per_atom_virial = per_atom_virial
        self.compute_atom_virial = True
        self.committee_size = int(committee_size)

    def forward(self, pos: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                n_local: int) -> Dict[str, torch.Tensor]:
        n_all = pos.shape[0]
        edge_vec, src, dst = _edge_vectors(pos, edge_index, self.dtype)
        member_energy = self.model(edge_vec, species, edge_index, n_local)
        if member_energy.shape[0] != self.committee_size:
            raise RuntimeError("committee model returned a different number of members than committee_size")
        member_grads: List[torch.Tensor] = []
        for k in range(self.committee_size):
            grads = torch.autograd.grad([member_energy[k].sum()], [edge_vec], retain_graph=True,
                                        create_graph=self.training, allow_unused=True)
            g = grads[0]
            if g is None:
                g = torch.zeros_like(edge_vec)
            member_grads.append(g)
        dE_dr_members = torch.stack(member_grads)                     # (K, E, 3)
        out = _potential_outputs(member_energy.mean(0), edge_vec, dE_dr_members.mean(0), src, dst,
                                 n_all, self.per_atom_virial and self.compute_atom_virial)
        out["committee_forces"] = _edge_forces(dE_dr_members, src, dst, n_all).to(torch.float64)
        return out


def _split_edge_virial(edge_vec: torch.Tensor, dE_dr: torch.Tensor, src: torch.Tensor,
                       dst: torch.Tensor, n_all: int) -> torch.Tensor:
    """Per-atom virial (N, 6), LAMMPS order xx yy zz xy xz yz: half of each edge's -r ⊗ dE/dr
    to each end, so the sum over all rows (ghosts included) is the global virial."""
    w = -0.5 * edge_vec.unsqueeze(2) * dE_dr.unsqueeze(1)
    w6 = torch.stack([w[:, 0, 0], w[:, 1, 1], w[:, 2, 2],
                      0.5 * (w[:, 0, 1] + w[:, 1, 0]),
                      0.5 * (w[:, 0, 2] + w[:, 2, 0]),
                      0.5 * (w[:, 1, 2] + w[:, 2, 1])], dim=1)
    atom_virial = torch.zeros((n_all, 6), dtype=w6.dtype, device=w6.device)
    return atom_virial.index_add(0, src, w6).index_add(0, dst, w6)


class EFGModule(torch.nn.Module):
    """Wrap a per-atom EFG model into a contract ``efg`` model.

    ``efg_model(edge_vec, species, edge_index, n_local) -> (n_local, 3, 3)`` V/Å².
    The wrapper only casts and names the output; symmetry and tracelessness are the model's job
    (an ``2e`` irrep mapped to a tensor has them exactly).
    """

    contract_version: int
    kind: str
    elements: List[str]
    cutoff: float
    dtype: str
    units: str

    def __init__(self, efg_model: torch.nn.Module, elements: Sequence[str], cutoff: float,
                 dtype: str = "float64"):
        super().__init__()
        _check_metadata_values("efg", elements, cutoff, dtype)
        self.model = efg_model
        _set_metadata(self, "efg", elements, cutoff, dtype)

    def forward(self, pos: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                n_local: int) -> Dict[str, torch.Tensor]:
        model_dtype = torch.float64 if self.dtype == "float64" else torch.float32
        pos = pos.to(model_dtype)
        edge_vec = pos.index_select(0, edge_index[1]) - pos.index_select(0, edge_index[0])
        efg = self.model(edge_vec, species, edge_index, n_local)
        return {"efg": efg.to(torch.float64)}


def _set_metadata(module: torch.nn.Module, kind: str, elements: Sequence[str], cutoff: float, dtype: str) -> None:
    """The contract's metadata attributes of a wrapper module (values checked by the caller)."""
    module.contract_version = CONTRACT_VERSION
    module.kind = kind
    module.elements = list(elements)
    module.cutoff = float(cutoff)
    module.dtype = dtype
    module.units = UNITS


def _set_pair_cutoffs(module: torch.nn.Module, energy_model: torch.nn.Module, cutoff: float) -> None:
    """The buffer ``pair_cutoffs`` (S, S) Å of a potential whose energy model's descriptor has
    per-species-pair cutoffs (``descriptor.pair_cutoff`` of the cluster models, also inside
    :class:`~pyexport.models.pair.WithCore`, whose core reaches no further than its ``r_core``);
    nothing when every pair has ``cutoff``."""
    inner = getattr(energy_model, "model", energy_model)
    table = getattr(getattr(inner, "descriptor", None), "pair_cutoff", None)
    if table is None or bool((table >= cutoff).all()):
        return
    table = table.detach().to(torch.float64).clone()
    core = getattr(energy_model, "core", None)
    if core is not None:
        table = torch.maximum(table, core.r_core.detach().to(torch.float64))
    module.register_buffer("pair_cutoffs", table, persistent=False)


def _check_metadata_values(kind: str, elements: Sequence[str], cutoff: float, dtype: str) -> None:
    if kind not in KINDS:
        raise ContractError(f"kind must be one of {KINDS}, got {kind!r}")
    if dtype not in DTYPES:
        raise ContractError(f"dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
    if not elements or len(set(elements)) != len(elements):
        raise ContractError(f"elements must be a non-empty list of distinct symbols, got {list(elements)}")
    from ase.data import atomic_numbers
    unknown = [e for e in elements if e not in atomic_numbers]
    if unknown:
        raise ContractError(f"unknown element symbol(s) {unknown}")
    if not (float(cutoff) > 0.0):
        raise ContractError(f"cutoff must be positive (Å), got {cutoff}")


# --------------------------------------------------------------------------------------------
# Export and load
# --------------------------------------------------------------------------------------------
def module_metadata(module) -> dict:
    """The contract attributes of a (scripted or eager) contract module as a dict."""
    meta = {}
    for key in METADATA_KEYS:
        if not hasattr(module, key):
            raise ContractError(f"model has no contract attribute {key!r}")
        value = getattr(module, key)
        meta[key] = list(value) if key == "elements" else value
    for key in OPTIONAL_METADATA_KEYS:
        if hasattr(module, key):
            meta[key] = getattr(module, key)
    return meta


def export_model(module: torch.nn.Module, path: Union[str, os.PathLike], provenance: Optional[dict] = None
                 ) -> torch.jit.ScriptModule:
    """Script ``module`` (a :class:`PotentialModule` or :class:`EFGModule`), save it to ``path``
    with ``metadata.json`` (contract keys + ``provenance``) in the archive, and return the
    scripted module. The file is what ``pair_style mlff`` and :func:`load_model` read."""
    module = module.eval()
    scripted = module if isinstance(module, torch.jit.ScriptModule) else torch.jit.script(module)
    meta = module_metadata(scripted)
    meta.update(provenance or {})
    torch.jit.save(scripted, os.fspath(path),
                   _extra_files={METADATA_FILE: json.dumps(meta, indent=2, sort_keys=True, default=str)})
    return scripted


def read_metadata(path: Union[str, os.PathLike]) -> dict:
    """``metadata.json`` of an exported model archive (contract keys + provenance)."""
    extra = {METADATA_FILE: ""}
    torch.jit.load(os.fspath(path), map_location="cpu", _extra_files=extra)
    if not extra[METADATA_FILE]:
        raise ContractError(f"{path}: archive has no {METADATA_FILE}")
    return json.loads(extra[METADATA_FILE])


def load_model(path: Union[str, os.PathLike], kind: Optional[str] = None, device: str = "cpu"):
    """Load an exported model and check its contract attributes.

    Returns ``(module, metadata)`` where metadata holds the attributes and, when present, the
    archive's ``metadata.json`` provenance. Raises :class:`ContractError` naming the file for a
    missing or corrupt file, a wrong ``contract_version`` or a ``kind`` other than requested.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ContractError(f"{path}: model file not found")
    extra = {METADATA_FILE: ""}
    try:
        module = torch.jit.load(path, map_location=device, _extra_files=extra)
    except Exception as exc:  # torch raises RuntimeError subclasses with long backtraces
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ContractError(f"{path}: not a TorchScript model archive ({first_line})") from None
    try:
        meta = module_metadata(module)
    except ContractError as exc:
        raise ContractError(f"{path}: {exc}") from None
    if meta["contract_version"] != CONTRACT_VERSION:
        raise ContractError(f"{path}: contract_version {meta['contract_version']} is not supported "
                            f"(this efgmd reads version {CONTRACT_VERSION})")
    if kind is not None and meta["kind"] != kind:
        raise ContractError(f"{path}: model kind is {meta['kind']!r}, expected {kind!r}")
    if meta["units"] != UNITS:
        raise ContractError(f"{path}: model units are {meta['units']!r}, only {UNITS!r} is supported")
    if "committee_size" in meta and (not isinstance(meta["committee_size"], int) or meta["committee_size"] < 2):
        raise ContractError(f"{path}: committee_size must be an integer >= 2, got {meta['committee_size']!r}")
    if extra[METADATA_FILE]:
        provenance = json.loads(extra[METADATA_FILE])
        meta = {**provenance, **meta}
    module.eval()
    return module, meta


def check_outputs(outputs: Dict[str, torch.Tensor], kind: str, n_all: int, n_local: int,
                  committee_size: Optional[int] = None) -> None:
    """Raise :class:`ContractError` unless ``outputs`` have the keys and shapes of the contract
    (``committee_forces`` too when ``committee_size`` is given)."""
    required = POTENTIAL_OUTPUTS if kind == "potential" else EFG_OUTPUTS
    if committee_size is not None:
        required = required + ("committee_forces",)
    missing = [k for k in required if k not in outputs]
    if missing:
        raise ContractError(f"model outputs lack {missing}")
    shapes = {"energy": (), "atom_energy": (n_local,), "forces": (n_all, 3), "virial": (3, 3),
              "atom_virial": (n_all, 6), "efg": (n_local, 3, 3), "extrapolation_grade": (n_local,)}
    if committee_size is not None:
        shapes["committee_forces"] = (committee_size, n_all, 3)
    for key, shape in shapes.items():
        if key in outputs and tuple(outputs[key].shape) != shape:
            raise ContractError(f"output {key!r} has shape {tuple(outputs[key].shape)}, expected {shape}")
        if key in outputs and outputs[key].dtype != torch.float64:
            raise ContractError(f"output {key!r} is {outputs[key].dtype}, the contract says float64")


# --------------------------------------------------------------------------------------------
# Inputs from a periodic cell
# --------------------------------------------------------------------------------------------
@dataclass
class ContractInputs:
    """Contract inputs for one periodic structure.

    ``image_of`` (N,) maps every row of ``pos`` (owned atoms and images) to its atom in the
    structure, so per-row outputs fold back with ``np.add.at(f_atoms, image_of, f_rows)``.
    """

    pos: torch.Tensor          # (N, 3) float64, Å
    species: torch.Tensor      # (N,) int64
    edge_index: torch.Tensor   # (2, E) int64
    n_local: int
    image_of: np.ndarray       # (N,) int64

    def as_args(self):
        return self.pos, self.species, self.edge_index, self.n_local


def species_indices(symbols: Sequence[str], elements: Sequence[str], where: str = "structure"
                    ) -> np.ndarray:
    """(n,) int64 index of each symbol in ``elements``; a clear error for symbols the model lacks."""
    lookup = {e: k for k, e in enumerate(elements)}
    missing = sorted({s for s in symbols if s not in lookup})
    if missing:
        raise ContractError(f"{where} contains element(s) {missing} that the model does not have "
                            f"(model elements: {list(elements)})")
    return np.fromiter((lookup[s] for s in symbols), dtype=np.int64, count=len(symbols))


def build_inputs(atoms, cutoff: float, elements: Sequence[str]) -> ContractInputs:
    """Contract inputs for an ASE ``Atoms``: owned atoms, then the periodic images within
    ``cutoff`` of any owned atom, with every edge (i, j) where i is owned and |r_ij| < cutoff.

    Non-periodic directions get no images. Works for any triclinic cell and for cells smaller
    than the cutoff (an atom may then see several images of itself). The pairs come from the
    linked-cell search :func:`pyexport.neighbors.neighbor_pairs`.
    """
    species_local = species_indices(atoms.get_chemical_symbols(), elements)
    positions = np.asarray(atoms.get_positions(), dtype=np.float64)
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    n = len(atoms)
    if pbc.any() and abs(np.linalg.det(cell)) < 1e-12:
        raise ContractError("structure is periodic but its cell has zero volume")
    i, j, shifts = neighbor_pairs(positions, cell, pbc, cutoff)

    is_image = np.any(shifts != 0, axis=1)
    # One ghost row per distinct (atom, shift) pair, in a deterministic order.
    ghost_keys = np.concatenate([j[is_image, None], shifts[is_image]], axis=1)
    unique_keys, inverse = (np.unique(ghost_keys, axis=0, return_inverse=True)
                            if len(ghost_keys) else (np.zeros((0, 4), np.int64), np.zeros(0, np.int64)))
    inverse = np.asarray(inverse).reshape(-1)
    ghost_atom = unique_keys[:, 0].astype(np.int64)
    ghost_pos = positions[ghost_atom] + unique_keys[:, 1:].astype(np.float64) @ cell

    dst = j.astype(np.int64).copy()
    dst[is_image] = n + inverse
    order = np.lexsort((dst, i))
    edge_index = np.stack([i.astype(np.int64)[order], dst[order]])

    image_of = np.concatenate([np.arange(n, dtype=np.int64), ghost_atom])
    pos = np.concatenate([positions, ghost_pos])
    return ContractInputs(pos=torch.from_numpy(pos), species=torch.from_numpy(species_local[image_of]),
                          edge_index=torch.from_numpy(np.ascontiguousarray(edge_index)),
                          n_local=n, image_of=image_of)


def fold_to_atoms(rows: np.ndarray, image_of: np.ndarray, n_atoms: int) -> np.ndarray:
    """Sum per-row values (owned atoms and images) onto the structure's atoms: (n_atoms, ...)."""
    out = np.zeros((n_atoms,) + rows.shape[1:], dtype=rows.dtype)
    np.add.at(out, image_of, rows)
    return out
