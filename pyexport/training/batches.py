"""Several prepared structures as one graph (:class:`Batch`), and the energies, forces and
stresses of a model on it (:func:`batch_forward`), by the same autograd through edge vectors as
:class:`pyexport.contract.PotentialModule`."""
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
import torch

from ..units import GPA_PER_EV_A3
from .data import Prepared


@dataclass
class Batch:
    """Several structures as one contract graph: all owned atoms first, then all image rows."""

    pos: torch.Tensor
    species: torch.Tensor
    edge_index: torch.Tensor
    n_local: int
    atom_of_row: torch.Tensor        # (R,) owned-atom index of every row
    structure_of_atom: torch.Tensor  # (n_local,)
    structure_of_edge: torch.Tensor  # (E,)
    n_atoms: torch.Tensor            # (B,) float
    volume: torch.Tensor             # (B,)
    energy: torch.Tensor             # (B,) eV
    forces: torch.Tensor             # (n_local, 3) eV/Å
    stress: torch.Tensor             # (B, 6) GPa (zeros where absent)
    has_stress: torch.Tensor         # (B,) bool

def make_batch(items: Sequence[Prepared]) -> Batch:
    n_owned = [p.n_atoms for p in items]
    n_ghost = [p.pos.shape[0] - p.n_atoms for p in items]
    owned_offset = np.concatenate([[0], np.cumsum(n_owned)[:-1]]).astype(np.int64)
    total_owned = int(sum(n_owned))
    ghost_offset = total_owned + np.concatenate([[0], np.cumsum(n_ghost)[:-1]]).astype(np.int64)
    pos, species, atom_of_row, edges, s_atom, s_edge = [], [], [], [], [], []
    pos_ghost, species_ghost, atom_ghost = [], [], []
    for b, p in enumerate(items):
        n = p.n_atoms
        pos.append(p.pos[:n])
        species.append(p.species[:n])
        atom_of_row.append(p.image_of[:n] + int(owned_offset[b]))
        pos_ghost.append(p.pos[n:])
        species_ghost.append(p.species[n:])
        atom_ghost.append(p.image_of[n:] + int(owned_offset[b]))
        ei = p.edge_index
        remap = torch.where(ei < n, ei + int(owned_offset[b]), ei - n + int(ghost_offset[b]))
        edges.append(remap)
        s_atom.append(torch.full((n,), b, dtype=torch.int64))
        s_edge.append(torch.full((ei.shape[1],), b, dtype=torch.int64))
    stress = torch.stack([p.stress if p.stress is not None else torch.zeros(6, dtype=torch.float64) for p in items])
    return Batch(
        pos=torch.cat(pos + pos_ghost), species=torch.cat(species + species_ghost),
        edge_index=torch.cat(edges, dim=1), n_local=total_owned,
        atom_of_row=torch.cat(atom_of_row + atom_ghost), structure_of_atom=torch.cat(s_atom),
        structure_of_edge=torch.cat(s_edge),
        n_atoms=torch.tensor(n_owned, dtype=torch.float64),
        volume=torch.tensor([p.volume for p in items], dtype=torch.float64),
        energy=torch.tensor([p.energy for p in items], dtype=torch.float64),
        forces=torch.cat([p.forces for p in items]), stress=stress,
        has_stress=torch.tensor([p.stress is not None for p in items]))

def voigt(t: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 6) in ASE order xx yy zz yz xz xy (off-diagonals symmetrised)."""
    return torch.stack([t[..., 0, 0], t[..., 1, 1], t[..., 2, 2],
                        0.5 * (t[..., 1, 2] + t[..., 2, 1]), 0.5 * (t[..., 0, 2] + t[..., 2, 0]),
                        0.5 * (t[..., 0, 1] + t[..., 1, 0])], dim=-1)

def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The floating dtype of a model's parameters / buffers (float64 if it has none)."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.float64

def batch_forward(energy_model: torch.nn.Module, batch: Batch, create_graph: bool = False
                  ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-structure energies (B,) eV, forces (n_local, 3) eV/Å and stresses (B, 6) GPa, by the
    same autograd through edge vectors as :class:`pyexport.contract.PotentialModule`."""
    dtype = model_dtype(energy_model)
    src, dst = batch.edge_index[0], batch.edge_index[1]
    pos = batch.pos.to(dtype)
    edge_vec = (pos.index_select(0, dst) - pos.index_select(0, src)).detach().requires_grad_(True)
    atom_energy = energy_model(edge_vec, batch.species, batch.edge_index, batch.n_local)
    energy = torch.zeros(len(batch.n_atoms), dtype=dtype).index_add(0, batch.structure_of_atom, atom_energy)
    (de_dr,) = torch.autograd.grad(atom_energy.sum(), edge_vec, create_graph=create_graph)
    rows = torch.zeros((batch.pos.shape[0], 3), dtype=dtype).index_add(0, src, de_dr).index_add(0, dst, -de_dr)
    forces = torch.zeros((batch.n_local, 3), dtype=dtype).index_add(0, batch.atom_of_row, rows)
    w_edge = -(edge_vec.unsqueeze(2) * de_dr.unsqueeze(1))
    virial = torch.zeros((len(batch.n_atoms), 3, 3), dtype=dtype).index_add(0, batch.structure_of_edge, w_edge)
    stress = -voigt(virial) / batch.volume.to(dtype).unsqueeze(1) * GPA_PER_EV_A3
    return energy.double(), forces.double(), stress.double()

def batches(items: Sequence[Prepared], max_atoms: int) -> List[List[Prepared]]:
    """Consecutive groups of structures with at most ``max_atoms`` atoms each (at least one)."""
    groups, current, count = [], [], 0
    for p in items:
        if current and count + p.n_atoms > max_atoms:
            groups.append(current)
            current, count = [], 0
        current.append(p)
        count += p.n_atoms
    if current:
        groups.append(current)
    return groups
