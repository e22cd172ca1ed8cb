"""The ``cluster`` and ``cluster-nn`` potentials: energy models on the invariants of the cluster
expansion (:mod:`pyexport.models.cluster_basis`, where the descriptor and its physics are).

Models
------
- :class:`ClusterLinear` (``cluster``): ``E_i = Σ_k c_{s_i,k} B_{i,k} + e0_{s_i}``, fitted in
  closed form (:mod:`pyexport.fit`).
- :class:`ClusterNN` (``cluster-nn``): the same linear term plus a per-species MLP on the
  standardised invariants, started from the linear fit with a zero last layer.

Both follow the energy-model interface of :class:`pyexport.contract.PotentialModule`
(``forward(edge_vec, species, edge_index, n_local) -> (n_local,) eV``), are TorchScript-scriptable
and strictly local, and run in float64 (default) or float32 (``model.to(torch.float32)``).

Both also have ``energy_and_edge_gradient`` -> (atom energies, invariants, dE/dr_ij (E, 3)),
which the contract wrappers use for forces and virials instead of autograd: the energy is linear
in the invariants, so dE/dB is the coefficient row of each atom's species (plus, for
``cluster-nn``, the MLPs' gradient, which autograd takes through the small MLP graph only), and
the descriptor's hand-written backward (:meth:`ClusterDescriptor.edge_gradient`) carries it to
the edges. Autograd through the whole descriptor stays the reference (the wrappers'
``autograd_forces`` flag; ``tests/test_analytic_forces.py`` holds the two to 1e-10).
"""
from typing import List, Optional, Sequence, Tuple

import torch

from .cluster_basis import ClusterBasis, ClusterDescriptor


# --------------------------------------------------------------------------------------------
# Energy models
# --------------------------------------------------------------------------------------------
def _linear_readout(features: torch.Tensor, species: torch.Tensor, coef: torch.Tensor, e0: torch.Tensor
                    ) -> torch.Tensor:
    """``Σ_k coef[s_i, k] B_{i,k} + e0[s_i]``: one (N, K) x (K, S) matmul, then the own column
    (cheaper than gathering an (N, K) coefficient array per atom)."""
    every = torch.matmul(features, coef.transpose(0, 1))
    return every.gather(1, species.unsqueeze(1)).squeeze(1) + e0.index_select(0, species)


class ClusterLinear(torch.nn.Module):
    """``cluster``: ``E_i = Σ_k coef[s_i, k] B_{i,k} + e0[s_i]`` (eV)."""

    def __init__(self, n_species: int, basis: ClusterBasis, elements: Optional[Sequence[str]] = None):
        super().__init__()
        self.descriptor = ClusterDescriptor(n_species, basis, elements)
        self.coef = torch.nn.Parameter(torch.zeros(n_species, self.descriptor.n_features, dtype=torch.float64))
        self.e0 = torch.nn.Parameter(torch.zeros(n_species, dtype=torch.float64))

    def forward(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                n_local: int) -> torch.Tensor:
        return self.energy_and_features(edge_vec, species, edge_index, n_local)[0]

    def energy_and_features(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                            n_local: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Atom energies (n_local,) eV and the invariants B (n_local, n_features) they are
        linear in (what the extrapolation grade measures, :mod:`pyexport.models.grade`)."""
        features = self.descriptor(edge_vec, species, edge_index, n_local)
        return _linear_readout(features, species[:n_local], self.coef, self.e0), features

    def energy_and_edge_gradient(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                                 n_local: int, with_features: bool = True
                                 ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Atom energies (n_local,) eV, invariants (n_local, n_features; (0, n_features) unless
        ``with_features``) and dE/dr_ij (E, 3) eV/Å of the total energy, without autograd:
        dE/dB_i = coef[s_i], and the energy Σ_k coef B_k comes out of the same backward
        (:meth:`ClusterDescriptor.base_gradient`), so the invariants are formed only when asked
        for (the extrapolation grade reads them)."""
        state = self.descriptor.base_state(edge_vec, species, edge_index, n_local)
        s = species[:n_local]
        grad, linear = self.descriptor.edge_gradient(state, self.coef.index_select(0, s))
        if with_features:
            features = self.descriptor.invariants(state.base)
        else:
            features = torch.zeros((0, self.descriptor.n_features), dtype=edge_vec.dtype, device=edge_vec.device)
        return linear + self.e0.index_select(0, s), features, grad


class SpeciesMLP(torch.nn.Module):
    """One MLP (SiLU) from standardised invariants to an energy, eV."""

    def __init__(self, n_in: int, hidden: Sequence[int]):
        super().__init__()
        layers: List[torch.nn.Module] = []
        width = n_in
        for h in hidden:
            layers += [torch.nn.Linear(width, int(h), dtype=torch.float64), torch.nn.SiLU()]
            width = int(h)
        last = torch.nn.Linear(width, 1, dtype=torch.float64)
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)
        layers.append(last)
        self.net = torch.nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class ClusterNN(torch.nn.Module):
    """``cluster-nn``: ``E_i = Σ_k coef[s_i,k] B_{i,k} + e0[s_i] + ε · MLP_{s_i}((B_i - μ_{s_i}) / σ_{s_i})``.

    The linear part starts from the ``cluster`` fit and the MLPs from a zero last layer, so the
    untrained network is the linear model; ``feature_mean`` and ``feature_scale`` (S, K) are
    buffers set from the training set (:meth:`set_standardisation`), and the output scale ε (eV)
    is the size of what is left to learn (the linear fit's force error times 1 Å), so that
    optimiser steps of the usual size make energy changes of the right size.
    """

    def __init__(self, n_species: int, basis: ClusterBasis, hidden: Sequence[int] = (64, 64),
                 elements: Optional[Sequence[str]] = None):
        super().__init__()
        self.descriptor = ClusterDescriptor(n_species, basis, elements)
        k = self.descriptor.n_features
        self.coef = torch.nn.Parameter(torch.zeros(n_species, k, dtype=torch.float64))
        self.e0 = torch.nn.Parameter(torch.zeros(n_species, dtype=torch.float64))
        self.register_buffer("feature_mean", torch.zeros(n_species, k, dtype=torch.float64))
        self.register_buffer("feature_scale", torch.ones(n_species, k, dtype=torch.float64))
        self.register_buffer("output_scale", torch.ones((), dtype=torch.float64))
        self.mlps = torch.nn.ModuleList([SpeciesMLP(k, hidden) for _ in range(n_species)])

    def set_standardisation(self, mean: torch.Tensor, std: torch.Tensor, floor: float = 1e-8) -> None:
        """Per-species mean and standard deviation (S, K) of the training invariants; features
        with std below ``floor`` (never varying, e.g. absent species channels) are not scaled up."""
        scale = torch.where(std > floor, 1.0 / std, torch.zeros_like(std))
        self.feature_mean.copy_(mean)
        self.feature_scale.copy_(scale)

    def forward(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                n_local: int) -> torch.Tensor:
        return self.energy_and_features(edge_vec, species, edge_index, n_local)[0]

    def energy_and_features(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                            n_local: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Atom energies (n_local,) eV and the invariants B (n_local, n_features) the linear
        part and the MLPs read (the extrapolation grade is measured on them)."""
        features = self.descriptor(edge_vec, species, edge_index, n_local)
        s = species[:n_local]
        energy = _linear_readout(features, s, self.coef, self.e0)
        x = (features - self.feature_mean.index_select(0, s)) * self.feature_scale.index_select(0, s)
        for k, mlp in enumerate(self.mlps):
            idx = torch.nonzero(s == k).squeeze(1)
            if idx.numel() > 0:
                energy = energy.index_add(0, idx, self.output_scale * mlp(x.index_select(0, idx)))
        return energy, features

    def energy_and_edge_gradient(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                                 n_local: int, with_features: bool = True
                                 ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Atom energies, invariants and dE/dr_ij (E, 3) eV/Å as :class:`ClusterLinear`'s, with
        dE/dB = coef[s_i] + ε σ_{s_i} ∂MLP/∂x: autograd runs through the MLPs only (their input
        detached), the descriptor's backward is hand-written. Needs grad mode (as the autograd
        path does). The MLPs read the invariants, so they are always formed (``with_features``
        is there for the common interface)."""
        state = self.descriptor.base_state(edge_vec, species, edge_index, n_local)
        features = self.descriptor.invariants(state.base)
        s = species[:n_local]
        energy = _linear_readout(features, s, self.coef, self.e0)
        scale = self.feature_scale.index_select(0, s)
        x = ((features - self.feature_mean.index_select(0, s)) * scale).detach().requires_grad_(True)
        total = torch.zeros((), dtype=features.dtype, device=features.device)
        for k, mlp in enumerate(self.mlps):
            idx = torch.nonzero(s == k).squeeze(1)
            if idx.numel() > 0:
                e_k = self.output_scale * mlp(x.index_select(0, idx))
                energy = energy.index_add(0, idx, e_k.detach())
                total = total + e_k.sum()
        feature_grad = self.coef.index_select(0, s)
        if total.requires_grad:
            dx = torch.autograd.grad([total], [x], allow_unused=True)[0]
            if dx is not None:
                feature_grad = feature_grad + dx * scale
        return energy.detach(), features, self.descriptor.edge_gradient(state, feature_grad.detach())[0]


MODEL_TYPES = ("cluster", "cluster-nn")


def build_energy_model(model_type: str, n_species: int, basis: ClusterBasis, hidden: Sequence[int] = (64, 64),
                       elements: Optional[Sequence[str]] = None) -> torch.nn.Module:
    """A fresh (zero-coefficient) ``cluster`` or ``cluster-nn`` energy model in float64;
    ``elements`` (symbols, index = species id) are needed when the basis has pair cutoffs."""
    if model_type == "cluster":
        return ClusterLinear(n_species, basis, elements)
    if model_type == "cluster-nn":
        return ClusterNN(n_species, basis, hidden, elements)
    raise ValueError(f"unknown model type {model_type!r}; choose from {MODEL_TYPES}")
