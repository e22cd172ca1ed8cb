"""Design rows of the linear ``cluster`` model: every label of a structure as a row of a matrix
whose columns are the S·K feature coefficients, then the S reference energies.

The ``cluster`` energy is linear in its coefficients, so energy rows are the per-species sums of
invariants (and atom counts for ``e0``) divided by the atom count; force rows are
``-∂(Σ_i B_i)/∂r_a``; stress rows ``-W/V`` with the feature virial ``W = -Σ_edges r_e ⊗ ∂B/∂r_e``,
exactly as :class:`pyexport.contract.PotentialModule` computes them for the energy. The feature
derivatives are directional derivatives of the invariants along each edge vector (an edge moves
only its centre atom's base A, and the invariants are polynomials of degree ≤ 3 in A, so
:meth:`ClusterDescriptor.linearised_invariants` gives them exactly): the cost is about one
invariant evaluation per edge and direction, not a backward pass per feature.
"""
import math
from dataclasses import dataclass
from typing import List, Optional

import torch

from ..models.cluster_basis import ClusterDescriptor
from ..units import GPA_PER_EV_A3
from .batches import voigt
from .data import Prepared


@dataclass
class DesignRows:
    """Design rows of one structure, columns = S·K feature coefficients then S reference energies.

    ``energy`` (P,) per atom (eV/atom per unit coefficient), ``forces`` (3N, P) eV/Å, ``stress``
    (6, P) GPa (ASE Voigt order) or None for a non-periodic structure."""

    energy: torch.Tensor
    forces: torch.Tensor
    stress: Optional[torch.Tensor]

def _edge_tangents(descriptor: ClusterDescriptor, edge_vec: torch.Tensor, edge_cutoff: torch.Tensor,
                   neighbour_species: torch.Tensor) -> List[torch.Tensor]:
    """Per-l base tangents (3E, C_l, 2l+1): the change of A_i when edge e's vector (E, 3) Å moves
    along x, y, z (rows ordered e-major), non-zero only in the neighbour's species channels. The
    edge cutoffs (E,) Å depend on species only, so they are held fixed."""
    n_edges = edge_vec.shape[0]
    directions = torch.eye(3, dtype=edge_vec.dtype).unsqueeze(1).expand(3, n_edges, 3)

    def products(vec: torch.Tensor) -> torch.Tensor:
        return descriptor.edge_products(vec, edge_cutoff)

    d_phi = torch.func.vmap(lambda t: torch.func.jvp(products, (edge_vec,), (t,))[1])(directions)
    d_phi = d_phi.transpose(0, 1).reshape(3 * n_edges, *d_phi.shape[2:])   # (3E, n0, LM)
    full = torch.zeros((3 * n_edges, descriptor.n_species) + tuple(d_phi.shape[1:]), dtype=edge_vec.dtype)
    full[torch.arange(3 * n_edges), neighbour_species.repeat_interleave(3)] = d_phi
    return descriptor.split_base(full)

def design_rows(descriptor: ClusterDescriptor, item: Prepared, chunk_edges: int = 4096) -> DesignRows:
    """Energy, force and stress rows of one structure (see the module docstring)."""
    s_count = descriptor.n_species
    k = descriptor.n_features
    dtype = torch.float64
    n = item.n_atoms
    src, dst = item.edge_index[0], item.edge_index[1]
    edge_vec = (item.pos.index_select(0, dst) - item.pos.index_select(0, src)).to(dtype)
    edge_cutoff = descriptor.edge_cutoffs(item.species, item.edge_index).to(dtype)
    species_atoms = item.species[:n]
    with torch.no_grad():
        base = descriptor.atomic_base(edge_vec, item.species, item.edge_index, n)
        features = descriptor.invariants(base)
        partials = descriptor.partials(base)
    energy = torch.zeros((s_count, k), dtype=dtype).index_add(0, species_atoms, features).reshape(-1)
    counts = torch.bincount(species_atoms, minlength=s_count).to(dtype)
    energy_row = torch.cat([energy, counts]) / n

    forces = torch.zeros((n * s_count, 3, k), dtype=dtype)
    virial = torch.zeros((s_count, 3, 3, k), dtype=dtype)
    centre_species = species_atoms.index_select(0, src)
    atom_of_dst = item.image_of.index_select(0, dst)
    for start in range(0, edge_vec.shape[0], chunk_edges):
        sl = slice(start, start + chunk_edges)
        ev, c_src, c_dst, c_s = edge_vec[sl], src[sl], atom_of_dst[sl], centre_species[sl]
        tangents = _edge_tangents(descriptor, ev, edge_cutoff[sl], item.species.index_select(0, dst[sl]))
        rows = c_src.repeat_interleave(3)
        with torch.no_grad():
            d_feat = descriptor.linearised_invariants(
                [[q.index_select(0, rows) for q in block] for block in partials], tangents)
        d_feat = d_feat.reshape(ev.shape[0], 3, k)  # ∂B_src/∂r_e
        # F_a = -∂E/∂r_a with r_e = r_dst - r_src
        forces.index_add_(0, c_dst * s_count + c_s, -d_feat)
        forces.index_add_(0, c_src * s_count + c_s, d_feat)
        for sp in range(s_count):
            mask = c_s == sp
            if bool(mask.any()):
                virial[sp] -= torch.einsum("ea,ebk->abk", ev[mask], d_feat[mask])
    force_rows = forces.reshape(n, s_count, 3, k).permute(0, 2, 1, 3).reshape(3 * n, s_count * k)
    force_rows = torch.cat([force_rows, torch.zeros((3 * n, s_count), dtype=dtype)], dim=1)
    stress_rows = None
    if math.isfinite(item.volume):
        w = voigt(virial.permute(0, 3, 1, 2)).permute(2, 0, 1).reshape(6, s_count * k)
        stress_rows = torch.cat([-w / item.volume * GPA_PER_EV_A3, torch.zeros((6, s_count), dtype=dtype)], dim=1)
    return DesignRows(energy=energy_row, forces=force_rows, stress=stress_rows)
