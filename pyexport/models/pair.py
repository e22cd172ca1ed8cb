"""Analytic pair potentials under the contract.

They exist as external truth: LAMMPS has them natively (``pair_style morse``), so a contract
model of the same function run through ``pair_style mlff`` must reproduce LAMMPS's own numbers;
and a pair spring model has an analytic harmonic answer for the phonopy baseline.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch


def _pair_table(name: str, value, dtype: torch.dtype) -> torch.Tensor:
    """A per-species-pair parameter as a symmetric (n_species, n_species) tensor, or a clear error."""
    t = torch.as_tensor(value, dtype=dtype)
    if t.ndim != 2 or t.shape[0] != t.shape[1] or not torch.allclose(t, t.T):
        raise ValueError(f"{name} must be a symmetric (n_species, n_species) matrix")
    return t


def _half_bonds_per_atom(bond: torch.Tensor, edge_index: torch.Tensor, n_local: int) -> torch.Tensor:
    """(n_local,) energies: half of each edge's pair energy to its centre (both directions are
    edges, so every bond is counted once in total)."""
    return torch.zeros(n_local, dtype=bond.dtype, device=bond.device).index_add(0, edge_index[0], 0.5 * bond)


class MorsePair(torch.nn.Module):
    """Per-atom energy of a truncated (unshifted) Morse pair potential, eV.

    φ(r) = D0 [exp(-2α(r - r0)) - 2 exp(-α(r - r0))] for r < cutoff, as LAMMPS ``pair_style morse``
    without ``pair_modify shift``. Parameters per species pair: ``d0`` (eV), ``alpha`` (1/Å),
    ``r0`` (Å), each (n_species, n_species) symmetric. Each atom gets half of each bond.
    """

    def __init__(self, d0, alpha, r0, dtype: torch.dtype = torch.float64):
        super().__init__()
        for name, value in (("d0", d0), ("alpha", alpha), ("r0", r0)):
            self.register_buffer(name, _pair_table(name, value, dtype))

    def forward(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                n_local: int) -> torch.Tensor:
        si = species.index_select(0, edge_index[0])
        sj = species.index_select(0, edge_index[1])
        r = torch.linalg.norm(edge_vec, dim=1)
        d0 = self.d0[si, sj]
        x = torch.exp(-self.alpha[si, sj] * (r - self.r0[si, sj]))
        bond = d0 * (x * x - 2.0 * x)
        return _half_bonds_per_atom(bond, edge_index, n_local)


class HarmonicSprings(torch.nn.Module):
    """Per-atom energy of central harmonic springs ½ k (r - r0)² between species pairs, eV.

    ``k`` (eV/Å²) and ``r0`` (Å) are (n_species, n_species) symmetric. With ``r0`` equal to the
    nearest-neighbour distance of a lattice, the lattice is an equilibrium and its phonons follow
    analytically from ``k``.
    """

    def __init__(self, k, r0, dtype: torch.dtype = torch.float64):
        super().__init__()
        for name, value in (("k", k), ("r0", r0)):
            self.register_buffer(name, _pair_table(name, value, dtype))

    def forward(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                n_local: int) -> torch.Tensor:
        si = species.index_select(0, edge_index[0])
        sj = species.index_select(0, edge_index[1])
        r = torch.linalg.norm(edge_vec, dim=1)
        bond = 0.5 * self.k[si, sj] * (r - self.r0[si, sj]) ** 2
        return _half_bonds_per_atom(bond, edge_index, n_local)


class EmbeddedDensity(torch.nn.Module):
    """A smooth EAM-like many-body model for three species (parameters fixed, not fitted):

    E_i = Σ_j ½ φ(r_ij) + F_s(ρ_i), ρ_i = Σ_j w_{s_j} f(r_ij), smooth at the cutoff.

    Many-body (E_i depends non-additively on all neighbours), so ghost forces and the virial are
    exercised the way a real ML potential exercises them; used by tests and benchmarks.
    """

    def __init__(self, cutoff: float, dtype=torch.float64):
        super().__init__()
        self.cutoff = cutoff
        self.register_buffer("w", torch.tensor([0.7, 1.3, 1.0], dtype=dtype))
        self.register_buffer("a", torch.tensor([-0.9, -1.6, -1.1], dtype=dtype))
        self.register_buffer("b", torch.tensor([0.05, 0.12, 0.08], dtype=dtype))
        self.register_buffer("eps", torch.tensor([[0.03, 0.05, 0.04], [0.05, 0.08, 0.06],
                                                  [0.04, 0.06, 0.05]], dtype=dtype))

    def forward(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                n_local: int) -> torch.Tensor:
        r = torch.linalg.norm(edge_vec, dim=1)
        x = r / self.cutoff
        fc = (1.0 - x * x) ** 3          # C² at the cutoff
        si = species.index_select(0, edge_index[0])
        sj = species.index_select(0, edge_index[1])
        phi = self.eps[si, sj] * (3.4 / r) ** 6 * fc
        rho = torch.zeros(n_local, dtype=r.dtype, device=r.device).index_add(
            0, edge_index[0], self.w[sj] * torch.exp(-0.8 * (r - 3.0)) * fc)
        s_local = species[:n_local]
        embed = self.a[s_local] * torch.sqrt(rho + 0.1) + self.b[s_local] * rho * rho
        pair = torch.zeros(n_local, dtype=r.dtype, device=r.device).index_add(0, edge_index[0], 0.5 * phi)
        return pair + embed


class CoreRepulsion(torch.nn.Module):
    """Repulsive core below the shortest distances of the training data, eV.

    A fitted many-body polynomial is unconstrained where the data has no examples; at
    contacts shorter than any it was trained on it can turn attractive and let atoms collapse
    in MD. This term is zero (with zero first and second derivatives) for r ≥ r_core of the
    species pair, and grows without bound below it:

        φ(r) = A x³ / (1 − x)⁶,   x = (r_core − r) / r_core,   r < r_core

    so it changes nothing on the training set when ``r_core`` is the shortest distance seen
    there, and dominates any polynomial hole deeper inside (≈ A·1.1 at x = 0.4).
    ``r_core`` (n_species, n_species) Å, symmetric, 0 for no core; ``strength`` A in eV.
    ``pyexport fit --core-repulsion`` takes r_core from the data
    (:func:`pyexport.training.extrapolation.shortest_pair_distances`), capped at the pair's cutoff
    (LAMMPS passes no longer edge of the pair, so a larger r_core would switch on with a step).
    """

    def __init__(self, r_core, strength: float = 100.0, dtype: torch.dtype = torch.float64):
        super().__init__()
        self.register_buffer("r_core", _pair_table("r_core", r_core, dtype))
        self.strength = float(strength)

    def forward(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                n_local: int) -> torch.Tensor:
        si = species.index_select(0, edge_index[0])
        sj = species.index_select(0, edge_index[1])
        r = torch.linalg.norm(edge_vec, dim=1)
        rc = self.r_core[si, sj]
        x = torch.clamp((rc - r) / torch.clamp(rc, min=1e-12), min=0.0, max=0.999)
        bond = self.strength * x ** 3 / (1.0 - x) ** 6
        return _half_bonds_per_atom(bond, edge_index, n_local)

    def energy_and_edge_gradient(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                                 n_local: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Atom energies (n_local,) eV and dE/dr_ij (E, 3) eV/Å, written out: half of
        φ'(r) r̂ per edge, φ'(r) = A (3x²/(1-x)⁶ + 6x³/(1-x)⁷) dx/dr, dx/dr = -1/r_core inside
        the clamp's range (0 ≤ x ≤ 0.999, as autograd through the clamp), else 0."""
        si = species.index_select(0, edge_index[0])
        sj = species.index_select(0, edge_index[1])
        r = torch.linalg.norm(edge_vec, dim=1)
        rc = torch.clamp(self.r_core[si, sj], min=1e-12)
        raw = (self.r_core[si, sj] - r) / rc
        x = torch.clamp(raw, min=0.0, max=0.999)
        gap = 1.0 - x
        bond = self.strength * x ** 3 / gap ** 6
        slope = self.strength * (3.0 * x * x / gap ** 6 + 6.0 * x ** 3 / gap ** 7) / rc
        slope = torch.where((raw >= 0.0) & (raw <= 0.999), slope, torch.zeros_like(slope))
        dE_dr = (-0.5 * slope / r).unsqueeze(1) * edge_vec
        return _half_bonds_per_atom(bond, edge_index, n_local), dE_dr


class WithCore(torch.nn.Module):
    """A per-atom energy model plus a :class:`CoreRepulsion` (same interface, energies added)."""

    def __init__(self, model: torch.nn.Module, core: CoreRepulsion):
        super().__init__()
        self.model = model
        self.core = core

    def forward(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                n_local: int) -> torch.Tensor:
        return self.model(edge_vec, species, edge_index, n_local) + self.core(edge_vec, species, edge_index, n_local)

    def energy_and_features(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                            n_local: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """The wrapped model's energies plus the core, and its features (for models that have
        them: ``cluster``, ``cluster-nn``)."""
        energy, features = self.model.energy_and_features(edge_vec, species, edge_index, n_local)
        return energy + self.core(edge_vec, species, edge_index, n_local), features

    def energy_and_edge_gradient(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                                 n_local: int, with_features: bool = True
                                 ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Energies, features and dE/dr_ij (E, 3) of the wrapped model (which must have this
        method: ``cluster``, ``cluster-nn``) plus the core's."""
        energy, features, grad = self.model.energy_and_edge_gradient(edge_vec, species, edge_index, n_local,
                                                                     with_features)
        core_energy, core_grad = self.core.energy_and_edge_gradient(edge_vec, species, edge_index, n_local)
        return energy + core_energy, features, grad + core_grad


def symmetric_table(values: dict, elements: Sequence[str], default: float = 0.0) -> list:
    """(n, n) nested list from {("A", "B"): value}; (A, B) and (B, A) are the same pair."""
    n = len(elements)
    table = [[default] * n for _ in range(n)]
    index = {e: k for k, e in enumerate(elements)}
    for (a, b), v in values.items():
        table[index[a]][index[b]] = table[index[b]][index[a]] = float(v)
    return table
