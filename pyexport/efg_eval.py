"""Evaluate a contract ``efg`` model on ASE structures: EFG tensors (V/Å²) per atom.

Example::

    from pyexport.contract import load_model
    from pyexport.efg_eval import predict_efg
    model, meta = load_model("efg.pt", kind="efg")
    tensors = predict_efg(model, frames)          # list of (N_k, 3, 3) float64 arrays, V/Å²

Several frames are joined into one disjoint graph per model call (``batch_atoms`` owned atoms at
most), which is what makes evaluating a trajectory fast: one TorchScript call per batch instead
of one per frame. Joining does not change any atom's result, since no edge links two frames.

The layout of a joined graph follows the contract: all owned atoms of all frames first (frame
by frame), then all image rows (frame by frame); edges are renumbered accordingly and kept in
frame order, so per-edge data computed frame by frame (e.g. edge vectors) concatenates in the
same order.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch

from .contract import ContractError, ContractInputs, build_inputs


@dataclass
class JoinedInputs:
    """Contract inputs of several structures as one disjoint graph."""

    pos: torch.Tensor          # (R, 3) float64, Å: all owned atoms, then all image rows
    species: torch.Tensor      # (R,) int64
    edge_index: torch.Tensor   # (2, E) int64, frame order
    n_local: int               # owned atoms of all frames
    n_atoms: List[int]         # owned atoms of each frame

    def as_args(self):
        return self.pos, self.species, self.edge_index, self.n_local


def join_inputs(inputs: Sequence[ContractInputs]) -> JoinedInputs:
    """One disjoint contract graph from per-structure inputs (see the module docstring)."""
    if not inputs:
        raise ValueError("join_inputs: no structures given")
    n_owned = np.array([inp.n_local for inp in inputs], dtype=np.int64)
    n_ghost = np.array([inp.pos.shape[0] - inp.n_local for inp in inputs], dtype=np.int64)
    owned_offset = np.concatenate([[0], np.cumsum(n_owned)[:-1]])
    ghost_offset = int(n_owned.sum()) + np.concatenate([[0], np.cumsum(n_ghost)[:-1]])
    edges = []
    for inp, o_off, g_off in zip(inputs, owned_offset, ghost_offset):
        ei = inp.edge_index
        # an owned row k goes to o_off + k, an image row k (k >= n_local) to g_off + k - n_local
        edges.append(torch.where(ei < inp.n_local, ei + int(o_off), ei + int(g_off - inp.n_local)))
    pos = torch.cat([inp.pos[:inp.n_local] for inp in inputs] + [inp.pos[inp.n_local:] for inp in inputs])
    species = torch.cat([inp.species[:inp.n_local] for inp in inputs]
                        + [inp.species[inp.n_local:] for inp in inputs])
    return JoinedInputs(pos=pos, species=species, edge_index=torch.cat(edges, dim=1),
                        n_local=int(n_owned.sum()), n_atoms=[int(n) for n in n_owned])


def frame_groups(n_atoms: Sequence[int], batch_atoms: int,
                 batch_frames: Optional[int] = None) -> List[List[int]]:
    """Consecutive frame indices grouped so that each group has at most ``batch_atoms`` atoms
    and ``batch_frames`` frames (a frame larger than ``batch_atoms`` forms a group of its own)."""
    if batch_atoms < 1:
        raise ValueError(f"batch_atoms must be >= 1, got {batch_atoms}")
    if batch_frames is not None and batch_frames < 1:
        raise ValueError(f"batch_frames must be >= 1, got {batch_frames}")
    max_frames = len(n_atoms) if batch_frames is None else batch_frames
    groups: List[List[int]] = []
    count = 0
    for k, n in enumerate(n_atoms):
        if groups and count + n <= batch_atoms and len(groups[-1]) < max_frames:
            groups[-1].append(k)
            count += n
        else:
            groups.append([k])
            count = n
    return groups


def model_cutoff_elements(model):
    """``(cutoff Å, elements)`` of a contract module; a clear error for anything else."""
    for key in ("kind", "cutoff", "elements"):
        if not hasattr(model, key):
            raise ContractError(f"model has no contract attribute {key!r}; pass a module loaded "
                                f"with pyexport.contract.load_model or an EFGModule")
    if model.kind != "efg":
        raise ContractError(f"model kind is {model.kind!r}, expected 'efg'")
    return float(model.cutoff), list(model.elements)


def predict_efg(model, atoms_list: Sequence, batch_atoms: int = 4000,
                batch_frames: Optional[int] = None,
                inputs: Optional[Sequence[ContractInputs]] = None) -> List[np.ndarray]:
    """EFG tensors of every atom of every structure: list of (N_k, 3, 3) float64 arrays, V/Å².

    ``model``: a contract ``efg`` module, exported (:func:`pyexport.contract.load_model`) or in
    memory (:class:`pyexport.contract.EFGModule`). ``atoms_list``: ASE ``Atoms`` (periodic or
    not; image atoms are added for periodic directions). Frames are joined into disjoint graphs
    of at most ``batch_atoms`` owned atoms and ``batch_frames`` frames per model call
    (``batch_frames=1`` evaluates frame by frame; a few thousand atoms per call is the fast
    range on a CPU). ``inputs``, if given, are the precomputed :func:`pyexport.contract.build_inputs` of
    the frames (same order), e.g. when the same frames are evaluated with several models.
    """
    cutoff, elements = model_cutoff_elements(model)
    atoms_list = list(atoms_list)
    if inputs is None:
        inputs = [build_inputs(atoms, cutoff, elements) for atoms in atoms_list]
    elif len(inputs) != len(atoms_list):
        raise ValueError(f"inputs: {len(inputs)} given for {len(atoms_list)} structures")
    out: List[np.ndarray] = []
    with torch.no_grad():
        for group in frame_groups([inp.n_local for inp in inputs], batch_atoms, batch_frames):
            joined = join_inputs([inputs[k] for k in group])
            efg = model(*joined.as_args())["efg"]
            if tuple(efg.shape) != (joined.n_local, 3, 3):
                raise ContractError(f"model output 'efg' has shape {tuple(efg.shape)}, "
                                    f"expected ({joined.n_local}, 3, 3)")
            out.extend(t.numpy().astype(np.float64, copy=False)
                       for t in torch.split(efg.detach(), joined.n_atoms))
    return out
