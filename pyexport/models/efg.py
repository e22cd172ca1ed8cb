"""Equivariant, strictly local EFG model (e3nn): per-atom output one ``2e`` irrep -> V (3, 3) V/Å².

Architecture (one interaction, so that every output of atom i depends only on atoms within
``cutoff`` of i and one LAMMPS ghost shell is enough)::

    edge ij:   R_cl(r_ij; s_i, s_j) · Y_lm(r̂_ij)                  l = 0 … lmax, C channels
    centre i:  A_i = (1/n_avg) Σ_j R Y                            C × (0e + 1o + 2e + 3o + …)
               B1_i, B2_i = two Linear(A_i ⊕ onehot(s_i))         C_B × (0e + 1o + 2e + …)
               P_i = B1_i ⊗ B2_i, channel by channel              C_B × 0e ⊕ C_B × 2e (body order 3)
               T_i = [A_i(2e) ⊕ P_i(2e)]                          C + C_B tensors (2e)
               g_i = MLP(A_i(0e) ⊕ P_i(0e) ⊕ onehot(s_i))          C + C_B invariant gates
               x_i = σ_{s_i} · Σ_k g_ik T_ik                      one 2e (5 numbers)
               V_i = Σ_m x_im Q_m                                 symmetric traceless 3 × 3

- ``R_cl`` is a radial MLP on a Bessel basis whose hidden layer is multiplied by a learned
  embedding of the species pair (s_i, s_j), and whose outputs are multiplied by the envelope
  ``u(r/rc) = 1 − 10x³ + 15x⁴ − 6x⁵``, which goes to zero with its first and second derivatives at
  ``r = rc``: the model is C² in the atom positions, including atoms crossing the cutoff.
- The gates ``g`` are invariant (functions of scalars only) and the tensors ``T`` equivariant,
  so ``x`` transforms exactly as a ``2e`` irrep: equivariance under proper and improper
  rotations is exact, not learned. Species enter through the pair embedding, the one-hot
  scalars of B1, B2 and of the gate MLP, and the per-species output scale ``σ_s`` (V/Å², the
  rms label component of the species, set from the training data).
- ``Q`` (5, 3, 3) is the orthonormal basis of symmetric traceless tensors in which e3nn's ``2e``
  components live (``o3.ReducedTensorProducts("ij=ji", i="1o")``, the ``0e`` trace part
  dropped). In e3nn 0.6 the ``1o`` components are Cartesian (x, y, z) in that order, the Wigner
  matrix of ``1o`` is the rotation matrix itself, so ``V(R x) = R V(x) Rᵀ`` holds with Cartesian
  R; ``tests/test_efg_model.py`` checks it for proper and improper R.

The module's ``forward(edge_vec, species, edge_index, n_local) -> (n_local, 3, 3)`` is the per-atom
EFG model of :class:`pyexport.contract.EFGModule`. Build with :func:`build_efg_model`, script with
:func:`script_efg_model` (e3nn's compile), wrap and export with :func:`efg_contract_module`.
"""
import contextlib
import math
from dataclasses import asdict, dataclass
from typing import Dict, List, Sequence

import torch
from e3nn import o3
from e3nn.util.jit import compile as e3nn_compile
from e3nn.util.jit import compile_mode

from ..contract import EFGModule

MODEL_NAME = "efg"
#: edges per chunk of the neighbour sum (a speed setting: results do not depend on it)
EDGE_CHUNK = 4096


@dataclass
class EFGHyperparameters:
    """Everything that fixes the architecture (the checkpoint stores these)."""

    n_species: int
    cutoff: float = 6.0            #: Å
    lmax: int = 3                  #: largest l of the spherical harmonics and features (2 … 4)
    n_radial: int = 8              #: Bessel functions of the radial basis
    channels: int = 8              #: C, channels per l of the density A
    product_channels: int = 8      #: C_B, channels per l of the tensor product
    radial_hidden: int = 32        #: width of the radial MLP
    gate_hidden: int = 32          #: width of the gate MLP
    avg_neighbors: float = 1.0     #: n_avg, divides the neighbour sum (set from the data)

    def __post_init__(self):
        if int(self.n_species) < 1:
            raise ValueError(f"n_species must be >= 1, got {self.n_species}")
        if not float(self.cutoff) > 0.0:
            raise ValueError(f"cutoff must be positive (Å), got {self.cutoff}")
        if not 2 <= int(self.lmax) <= 6:
            raise ValueError(f"lmax must be between 2 and 6 (the output is l = 2), got {self.lmax}")
        for name in ("n_radial", "channels", "product_channels", "radial_hidden", "gate_hidden"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not float(self.avg_neighbors) > 0.0:
            raise ValueError(f"avg_neighbors must be positive, got {self.avg_neighbors}")

    def as_dict(self) -> dict:
        return asdict(self)


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    # e3nn builds its Clebsch-Gordan coefficients and change-of-basis constants in the default
    # dtype; building them in float32 and casting would leave ~1e-7 equivariance errors.
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def natural_irreps(multiplicity: int, lmax: int) -> o3.Irreps:
    """``mul × (0e + 1o + 2e + …)`` up to ``lmax``: the parities spherical harmonics have."""
    return o3.Irreps([(multiplicity, (l, (-1) ** l)) for l in range(lmax + 1)])


def traceless_symmetric_basis() -> torch.Tensor:
    """(5, 3, 3) float64 orthonormal basis Q_m of symmetric traceless tensors in e3nn's ``2e``
    component order: ``V = Σ_m x_m Q_m`` maps a ``2e`` irrep x to its Cartesian tensor."""
    with _default_dtype(torch.float64):
        rtp = o3.ReducedTensorProducts("ij=ji", i="1o")
    if str(rtp.irreps_out) != "1x0e+1x2e":
        raise RuntimeError(f"unexpected decomposition of symmetric 3x3 tensors: {rtp.irreps_out}")
    return rtp.change_of_basis[1:].to(torch.float64).clone()


def smooth_envelope(x: torch.Tensor) -> torch.Tensor:
    """``1 − 10x³ + 15x⁴ − 6x⁵`` for x = r/rc < 1: value, slope and curvature vanish at x = 1."""
    x = x.clamp(max=1.0)
    x3 = x * x * x
    return 1.0 - x3 * (10.0 - x * (15.0 - 6.0 * x))


@compile_mode("script")
class RadialWeights(torch.nn.Module):
    """Edge weights R (E, C, lmax + 1) from distances r (E,) Å and the species of both ends."""

    def __init__(self, n_species: int, cutoff: float, n_radial: int, hidden: int, channels: int,
                 lmax: int):
        super().__init__()
        self.cutoff = float(cutoff)
        self.n_species = n_species
        self.channels = channels
        self.n_l = lmax + 1
        self.register_buffer("frequencies", math.pi / cutoff * torch.arange(1, n_radial + 1))
        self.first = torch.nn.Linear(n_radial, hidden)
        self.pair_embedding = torch.nn.Embedding(n_species * n_species, hidden)
        torch.nn.init.normal_(self.pair_embedding.weight, mean=1.0, std=0.3)
        self.out = torch.nn.Linear(hidden, channels * self.n_l)

    def forward(self, r: torch.Tensor, s_centre: torch.Tensor, s_neighbour: torch.Tensor) -> torch.Tensor:
        # Bessel functions sin(nπr/rc)/r, scaled by rc so that they are O(1).
        basis = torch.sin(r.unsqueeze(1) * self.frequencies) / r.unsqueeze(1) * self.cutoff
        pair = self.pair_embedding(s_centre * self.n_species + s_neighbour)
        h = torch.nn.functional.silu(self.first(basis)) * pair
        w = self.out(h) * smooth_envelope(r / self.cutoff).unsqueeze(1)
        return w.view(-1, self.channels, self.n_l)


def channelwise_product(irreps_b: o3.Irreps, channels: int) -> o3.TensorProduct:
    """Channel-wise tensor product B1_c ⊗ B2_c -> ``channels × 0e + channels × 2e``: every
    pair of irreps (l1, l2) whose product contains 0e or 2e, one learned weight per path and
    channel (e3nn ``uuu`` mode). Channels are mixed by the linear maps that make B1 and B2, so
    the fully connected product (channels² times the work) adds little."""
    irreps_out = o3.Irreps(f"{channels}x0e + {channels}x2e")
    instructions = []
    for i1, (_, ir1) in enumerate(irreps_b):
        for i2, (_, ir2) in enumerate(irreps_b):
            for k, (_, ir_out) in enumerate(irreps_out):
                if ir_out in ir1 * ir2:
                    instructions.append((i1, i2, k, "uuu", True))
    return o3.TensorProduct(irreps_b, irreps_b, irreps_out, instructions)


@compile_mode("script")
class EFGModel(torch.nn.Module):
    """Per-atom EFG model: ``forward(edge_vec (E, 3) Å, species (N,), edge_index (2, E), n_local)
    -> (n_local, 3, 3)`` V/Å², symmetric and traceless (see the module docstring)."""

    def __init__(self, hp: EFGHyperparameters):
        super().__init__()
        self.n_species = int(hp.n_species)
        self.lmax = int(hp.lmax)
        self.channels = int(hp.channels)
        self.inv_avg_neighbors = 1.0 / float(hp.avg_neighbors)
        self.edge_chunk = EDGE_CHUNK
        self.density_dim = self.channels * (self.lmax + 1) ** 2
        c, cb, s = self.channels, int(hp.product_channels), self.n_species

        self.sh = o3.SphericalHarmonics(o3.Irreps.spherical_harmonics(self.lmax), normalize=True,
                                        normalization="component")
        self.radial = RadialWeights(s, hp.cutoff, hp.n_radial, hp.radial_hidden, c, self.lmax)
        irreps_a = natural_irreps(c, self.lmax)
        irreps_b_in = irreps_a + o3.Irreps(f"{s}x0e")
        irreps_b = natural_irreps(cb, self.lmax)
        self.mix_left = o3.Linear(irreps_b_in, irreps_b)
        self.mix_right = o3.Linear(irreps_b_in, irreps_b)
        self.product = channelwise_product(irreps_b, cb)
        self.n_tensors = c + cb
        self.gate = torch.nn.Sequential(
            torch.nn.Linear(c + cb + s, hp.gate_hidden), torch.nn.SiLU(),
            torch.nn.Linear(hp.gate_hidden, hp.gate_hidden), torch.nn.SiLU(),
            torch.nn.Linear(hp.gate_hidden, self.n_tensors))
        self.cb = cb
        self.register_buffer("species_scale", torch.ones(s))
        self.register_buffer("basis", traceless_symmetric_basis().to(torch.get_default_dtype()))

    def set_species_scale(self, scale: torch.Tensor) -> None:
        """Per-species output scale σ_s (V/Å²), e.g. the rms label component of each species."""
        if scale.shape != self.species_scale.shape or not bool(torch.all(scale > 0)):
            raise ValueError(f"species scale must be {tuple(self.species_scale.shape)} positive numbers, "
                             f"got {scale.tolist()}")
        self.species_scale.copy_(scale.to(self.species_scale))

    def density(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                n_local: int) -> torch.Tensor:
        """A (n_local, C·(lmax+1)²) in e3nn layout ``C×0e + C×1o + …``."""
        a = torch.zeros((n_local, self.density_dim), dtype=edge_vec.dtype, device=edge_vec.device)
        n_edges = edge_vec.shape[0]
        # Edges in chunks, so that the per-edge temporaries stay in cache (about 2x faster on a
        # CPU for 20,000 edges than one pass over all edges).
        for start in range(0, n_edges, self.edge_chunk):
            size = min(self.edge_chunk, n_edges - start)
            src = edge_index[0].narrow(0, start, size)
            dst = edge_index[1].narrow(0, start, size)
            vec = edge_vec.narrow(0, start, size)
            y = self.sh(vec)                                                        # (e, M)
            w = self.radial(torch.linalg.norm(vec, dim=1), species.index_select(0, src),
                            species.index_select(0, dst))                           # (e, C, lmax+1)
            # l block by l block, (e, C, 2l+1) flattened channel-major: e3nn's layout
            blocks: List[torch.Tensor] = []
            for l in range(self.lmax + 1):
                block = w.narrow(2, l, 1) * y.narrow(1, l * l, 2 * l + 1).unsqueeze(1)
                blocks.append(block.reshape(size, self.channels * (2 * l + 1)))
            a = a.index_add(0, src, torch.cat(blocks, dim=1))
        return a * self.inv_avg_neighbors

    def forward(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                n_local: int) -> torch.Tensor:
        c = self.channels
        s_local = species[:n_local]
        a = self.density(edge_vec, species, edge_index, n_local)
        onehot = torch.nn.functional.one_hot(s_local, self.n_species).to(a.dtype)
        a_species = torch.cat([a, onehot], dim=1)
        p = self.product(self.mix_left(a_species), self.mix_right(a_species))
        a_scalar = a[:, :c]
        a_tensor = a[:, 4 * c:9 * c].view(n_local, c, 5)     # the 2e block follows 0e and 1o
        p_scalar = p[:, :self.cb]
        p_tensor = p[:, self.cb:].view(n_local, self.cb, 5)
        gates = self.gate(torch.cat([a_scalar, p_scalar, onehot], dim=1))
        x = (gates.unsqueeze(2) * torch.cat([a_tensor, p_tensor], dim=1)).sum(1)   # (n_local, 5)
        x = x * self.species_scale.index_select(0, s_local).unsqueeze(1)
        return torch.einsum("nm,mab->nab", x, self.basis)


def build_efg_model(hp: EFGHyperparameters, dtype: str = "float64", seed: int = 0) -> EFGModel:
    """A freshly initialised :class:`EFGModel` (random weights from ``seed``) in ``dtype``."""
    if dtype not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        with _default_dtype(torch.float64):
            model = EFGModel(hp)
    finally:
        torch.random.set_rng_state(generator_state)
    return model.to(torch.float64 if dtype == "float64" else torch.float32)


def model_from_state(hp: EFGHyperparameters, state_dict: Dict[str, torch.Tensor], dtype: str = "float64"
                     ) -> EFGModel:
    """An :class:`EFGModel` with trained ``state_dict`` (stored in float64) in ``dtype``."""
    with _default_dtype(torch.float64):
        model = EFGModel(hp)
    model.load_state_dict(state_dict)
    return model.to(torch.float64 if dtype == "float64" else torch.float32).eval()


def script_efg_model(model: EFGModel) -> torch.jit.ScriptModule:
    """TorchScript of ``model`` through e3nn's compile (a deep copy; ``model`` is untouched)."""
    model = model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return e3nn_compile(model, in_place=False)


def efg_contract_module(model: EFGModel, elements: Sequence[str], cutoff: float,
                        dtype: str = "float64", scripted: bool = True) -> EFGModule:
    """The contract ``efg`` module around ``model``; with ``scripted`` the inner model is already
    TorchScript (e3nn compile), which :func:`pyexport.contract.export_model` needs."""
    if dtype not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    model = model.to(torch_dtype).eval()
    inner = script_efg_model(model) if scripted else model
    return EFGModule(inner, list(elements), float(cutoff), dtype=dtype).eval()


