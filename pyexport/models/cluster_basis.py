"""The descriptor of the ``cluster`` and ``cluster-nn`` potentials (:mod:`pyexport.models.cluster`):
a symmetry-adapted polynomial cluster expansion of each atom's local environment.
:class:`ClusterBasis` holds its hyperparameters, :class:`ClusterDescriptor` computes the
invariants.

Descriptor (ACE/MTP style, complete to body order 4)
----------------------------------------------------
For a centre atom i and each neighbour j within the cutoff r_c (edge vector r_ij = r_j - r_i):

- radial functions ``g_n(r) = T_n(ξ(r)) f_c(r)``: Chebyshev polynomials ``T_n`` of the distance
  mapped to ``ξ ∈ [-1, 1]`` by ``ξ(r) = 2 (1 - exp(-λ r/r_c)) / (1 - exp(-λ)) - 1`` (λ =
  ``radial_scale``; λ > 0 puts more resolution at short distances, λ = 0 is linear in r), times
  the envelope ``f_c(r) = (1 - (r/r_c)²)³``, whose value, first and second derivative vanish at
  r_c: energies, forces and force derivatives are continuous when a neighbour crosses the cutoff.
  Every g_n is bounded by 1 for all 0 ≤ r ≤ r_c, so nothing blows up at short distances.
- per-species-pair cutoffs: r_c above is ``r_c(s_i, s_j)``, the cutoff of the pair of species of
  the edge's two atoms (``ClusterBasis.pair_cutoffs``, symmetric; pairs not listed use the global
  ``cutoff``, which is the largest and the one the neighbour list and LAMMPS use). Both the ξ map
  and the envelope use it, so a stiff short bond (C-H 1.09 Å in CH3NH3+) gets all the radial
  functions inside its own short range, and an edge beyond its pair cutoff contributes exactly 0,
  as smoothly as at the global cutoff.
- real spherical harmonics ``Y_lm(r̂)``, normalised so that their mean square over the sphere
  is 1 (``Y_00 = 1``).
- the atomic base, one channel per neighbour species ``s`` and radial index ``n``:
  ``A_{i,(s,n),lm} = Σ_{j of species s} g_n(r_ij) Y_lm(r̂_ij)``.
  With the readout depending on the centre species, every radial function is effectively a
  species-pair radial channel: the coefficient of ``g_n`` for the pair (s_i, s_j) is free.

Invariants (rotations, reflections, permutations of like neighbours), with c = (s, n) channels:

- body order 2: ``B2_{c} = A_{c,00}``, n < ``n_radial_2``;
- body order 3: ``B3_{c1 c2 l} = Σ_m A_{c1 lm} A_{c2 lm}``, c1 ≤ c2, n < ``n_radial_3``,
  l ≤ ``l_max_3``;
- body order 4: ``B4 = Σ_{m1 m2 m3} G^{l1 l2 l3}_{m1 m2 m3} A_{c1 l1 m1} A_{c2 l2 m2} A_{c3 l3 m3}``
  with the real Gaunt tensor G (the integral of three real harmonics over the sphere, which is
  the one rotation-invariant coupling of l1 ⊗ l2 ⊗ l3), n < ``n_radial_4``, l ≤ ``l_max_4``, one
  feature per multiset {(l1,c1), (l2,c2), (l3,c3)}. Only l1 + l2 + l3 even: the odd couplings
  are pseudoscalars (they change sign under a reflection) and G vanishes for them anyway.

Sums over neighbours make every feature invariant to permutations of like neighbours; products of
one, two and three A's make body orders 2, 3 and 4. For three factors the coupling of
(l1, l2, l3) to a scalar is unique, so the set is complete within its truncation (n, l box).
"""
import math
from dataclasses import asdict, dataclass, field, fields, replace
from itertools import product
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

# --------------------------------------------------------------------------------------------
# Hyperparameters
# --------------------------------------------------------------------------------------------
@dataclass
class ClusterBasis:
    """Size of the cluster basis. Distances in Å.

    ``pair_cutoffs`` maps species pairs ``"A-B"`` (element symbols, order-insensitive: ``"H-C"``
    is ``"C-H"``) to their own cutoff, 0 < r ≤ ``cutoff``; pairs not listed use ``cutoff``.
    Empty (the default) is the single-cutoff basis."""

    cutoff: float = 6.0
    n_radial_2: int = 8
    n_radial_3: int = 6
    l_max_3: int = 4
    n_radial_4: int = 2
    l_max_4: int = 2
    radial_scale: float = 2.0
    pair_cutoffs: Dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        if not self.cutoff > 0:
            raise ValueError(f"cutoff must be positive (Å), got {self.cutoff}")
        for name in ("n_radial_2", "n_radial_3", "n_radial_4", "l_max_3", "l_max_4"):
            value = getattr(self, name)
            if int(value) != value or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value}")
            setattr(self, name, int(value))
        if self.n_radial_2 < 1:
            raise ValueError("n_radial_2 must be at least 1 (the 2-body features)")
        if self.radial_scale < 0:
            raise ValueError(f"radial_scale must be >= 0, got {self.radial_scale}")
        self.pair_cutoffs = self._checked_pair_cutoffs(self.pair_cutoffs)

    def _checked_pair_cutoffs(self, values) -> Dict[str, float]:
        """``values`` as {key: float Å}, each key a well-formed pair given once, each value in
        (0, cutoff]."""
        if not isinstance(values, dict):
            raise ValueError(f"pair_cutoffs must be a mapping 'A-B' -> cutoff (Å), got {values!r}")
        out: Dict[str, float] = {}
        seen: Dict[Tuple[str, str], str] = {}
        for key, value in values.items():
            pair = tuple(sorted(pair_symbols(key)))
            if pair in seen:
                raise ValueError(f"pair cutoff {key!r}: the pair is already given as {seen[pair]!r}")
            seen[pair] = key
            try:
                r = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"pair cutoff {key!r}: expected a distance in Å, got {value!r}") from None
            if not 0.0 < r <= self.cutoff:
                raise ValueError(f"pair cutoff {key}={value} Å is out of range: it must be > 0 and at most "
                                 f"the global cutoff {self.cutoff} Å (the largest, used by the neighbour list)")
            out[key] = r
        return out

    @classmethod
    def preset(cls, name: str, cutoff: float = 6.0):
        """Named basis sizes; ``medium`` is the default. Features per species for 3 species:
        tiny 103, small 404, medium 1369, large 2430."""
        presets = {
            "tiny": dict(n_radial_2=4, n_radial_3=2, l_max_3=2, n_radial_4=1, l_max_4=1),
            "small": dict(n_radial_2=6, n_radial_3=4, l_max_3=3, n_radial_4=1, l_max_4=2),
            "medium": dict(n_radial_2=8, n_radial_3=6, l_max_3=4, n_radial_4=2, l_max_4=2),
            "large": dict(n_radial_2=10, n_radial_3=6, l_max_3=4, n_radial_4=3, l_max_4=2),
        }
        if name not in presets:
            raise ValueError(f"unknown basis size {name!r}; choose from {sorted(presets)}")
        return cls(cutoff=cutoff, **presets[name])

    def as_dict(self) -> dict:
        return asdict(self)

    def cutoff_table(self, elements: Sequence[str]) -> np.ndarray:
        """(S, S) Å: the cutoff of every pair of ``elements`` (symmetric); ``cutoff`` where no
        pair cutoff is given. A key naming an element outside ``elements`` is an error."""
        index = {symbol: k for k, symbol in enumerate(elements)}
        table = np.full((len(elements), len(elements)), float(self.cutoff))
        for key, r in self.pair_cutoffs.items():
            a, b = pair_symbols(key)
            unknown = [s for s in (a, b) if s not in index]
            if unknown:
                raise ValueError(f"pair cutoff {key!r}: element {unknown[0]!r} is not one of the model's "
                                 f"elements {list(elements)}")
            table[index[a], index[b]] = table[index[b], index[a]] = r
        return table

    @classmethod
    def from_dict(cls, values: dict) -> "ClusterBasis":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown cluster basis parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


def pair_symbols(key) -> Tuple[str, str]:
    """The two element symbols of a pair key ``"A-B"`` (e.g. ``"C-H"``, ``"I-I"``)."""
    parts = key.split("-") if isinstance(key, str) else []
    symbols = [p.strip() for p in parts]
    if len(symbols) != 2 or not all(s.isalpha() and s[:1].isupper() for s in symbols):
        raise ValueError(f"pair cutoff key {key!r}: expected two element symbols joined by '-', e.g. 'C-H'")
    return symbols[0], symbols[1]


# --------------------------------------------------------------------------------------------
# Radial and angular functions
# --------------------------------------------------------------------------------------------
class RadialBasis(torch.nn.Module):
    """``g_n(r) = T_n(ξ(r)) (1 - (r/r_c)²)³`` for n < n_max, zero beyond r_c. (E,) Å -> (E, n_max).

    r_c is the per-edge cutoff (E,) Å passed to :meth:`forward` (the cutoff of each edge's
    species pair), or ``cutoff`` for every edge when none is passed."""

    n_max: int
    cutoff: float
    scale: float

    def __init__(self, n_max: int, cutoff: float, scale: float):
        super().__init__()
        self.n_max = int(n_max)
        self.cutoff = float(cutoff)
        self.scale = float(scale)

    def forward(self, r: torch.Tensor, cutoff: Optional[torch.Tensor] = None) -> torch.Tensor:
        if cutoff is None:
            x = r / self.cutoff
        else:
            x = r / cutoff
        if self.scale > 0.0:
            xi = 2.0 * (1.0 - torch.exp(-self.scale * x)) / (1.0 - math.exp(-self.scale)) - 1.0
        else:
            xi = 2.0 * x - 1.0
        inside = x < 1.0
        envelope = torch.where(inside, (1.0 - x * x) ** 3, torch.zeros_like(x))
        cheb: List[torch.Tensor] = [torch.ones_like(xi), xi]
        for n in range(2, self.n_max):
            cheb.append(2.0 * xi * cheb[n - 1] - cheb[n - 2])
        return torch.stack(cheb[: self.n_max], dim=1) * envelope.unsqueeze(1)

    def with_derivative(self, r: torch.Tensor, cutoff: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``g_n(r)`` and ``dg_n/dr`` (1/Å), both (E, n_max), for per-edge cutoffs (E,) Å: the
        chain rule through ξ(x), the Chebyshev recursion (T'_n = 2 T_{n-1} + 2 ξ T'_{n-1} -
        T'_{n-2}) and the envelope, written out (no autograd)."""
        inv_cut = 1.0 / cutoff
        x = r * inv_cut
        if self.scale > 0.0:
            decay = torch.exp(-self.scale * x)
            norm = 2.0 / (1.0 - math.exp(-self.scale))
            xi = norm * (1.0 - decay) - 1.0
            dxi_dr = (norm * self.scale) * decay * inv_cut
        else:
            xi = 2.0 * x - 1.0
            dxi_dr = 2.0 * inv_cut
        inside = x < 1.0
        one_minus = 1.0 - x * x
        envelope = torch.where(inside, one_minus ** 3, torch.zeros_like(x))
        denv_dr = torch.where(inside, -6.0 * x * one_minus * one_minus * inv_cut, torch.zeros_like(x))
        cheb: List[torch.Tensor] = [torch.ones_like(xi), xi]
        dcheb: List[torch.Tensor] = [torch.zeros_like(xi), torch.ones_like(xi)]
        for n in range(2, self.n_max):
            cheb.append(2.0 * xi * cheb[n - 1] - cheb[n - 2])
            dcheb.append(2.0 * cheb[n - 1] + 2.0 * xi * dcheb[n - 1] - dcheb[n - 2])
        t = torch.stack(cheb[: self.n_max], dim=1)
        dt = torch.stack(dcheb[: self.n_max], dim=1)
        g = t * envelope.unsqueeze(1)
        dg = dt * (dxi_dr * envelope).unsqueeze(1) + t * denv_dr.unsqueeze(1)
        return g, dg


def _sh_normalisation(l_max: int) -> List[float]:
    """Factors making ``Q_l^|m|(z) Re/Im (x + iy)^|m|`` real harmonics of mean square 1 on the
    sphere, in the order index = l² + l + m."""
    norms: List[float] = []
    for l in range(l_max + 1):
        for m in range(-l, l + 1):
            k = abs(m)
            ratio = math.factorial(l - k) / math.factorial(l + k)
            norms.append(math.sqrt((2 * l + 1) * ratio * (1.0 if m == 0 else 2.0)))
    return norms


class SphericalHarmonics(torch.nn.Module):
    """Real spherical harmonics of unit vectors, (E, 3) -> (E, (l_max+1)²), index l² + l + m.

    Written as polynomials in (x, y, z): ``P_l^m(cos θ) e^{imφ} = Q_l^m(z) (x + iy)^m`` with
    ``Q_l^m = d^m P_l / dz^m`` from the Legendre recursion, so there is no singularity at the
    poles. m > 0 takes the real part, m < 0 the imaginary part (no Condon-Shortley phase; every
    invariant here is built from these same functions, so the convention cancels).
    """

    l_max: int

    def __init__(self, l_max: int):
        super().__init__()
        self.l_max = int(l_max)
        self.register_buffer("norm", torch.tensor(_sh_normalisation(self.l_max), dtype=torch.float64))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        x = u[:, 0]
        y = u[:, 1]
        z = u[:, 2]
        n_lm = (self.l_max + 1) * (self.l_max + 1)
        cols: List[torch.Tensor] = [z for _ in range(n_lm)]
        re_m = torch.ones_like(z)   # Re (x + iy)^m
        im_m = torch.zeros_like(z)  # Im (x + iy)^m
        q_mm = torch.ones_like(z)   # Q_m^m = (2m - 1)!!
        for m in range(self.l_max + 1):
            if m > 0:
                re_new = x * re_m - y * im_m
                im_m = x * im_m + y * re_m
                re_m = re_new
                q_mm = q_mm * float(2 * m - 1)
            q_prev = torch.zeros_like(z)
            q_l = q_mm
            for l in range(m, self.l_max + 1):
                if l == m + 1:
                    q_prev, q_l = q_l, float(2 * m + 1) * z * q_mm
                elif l > m + 1:
                    q_prev, q_l = q_l, (float(2 * l - 1) * z * q_l - float(l + m - 1) * q_prev) / float(l - m)
                if m == 0:
                    cols[l * l + l] = q_l
                else:
                    cols[l * l + l + m] = q_l * re_m
                    cols[l * l + l - m] = q_l * im_m
        return torch.stack(cols, dim=1) * self.norm.to(u.dtype)

    def vjp(self, u: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """``Σ_lm grad_lm ∂Y_lm/∂u`` (E, 3) for ``grad`` (E, (l_max+1)² - 1) = dE/dY_lm of the
        columns l ≥ 1 (Y_00 is constant), with Y_lm taken as the polynomial of (x, y, z) that
        :meth:`forward` evaluates (the caller projects out the radial part).

        With Y_{l,±m} = N Q_l^m(z) (Re | Im)(x + iy)^m: ∂_z Q_l^m = Q_l^{m+1}, ∂_x (x + iy)^m =
        m (x + iy)^{m-1} and ∂_y (x + iy)^m = i m (x + iy)^{m-1}, so every partial derivative is a
        product of the same Q's and powers the forward pass computes. Loop m carries Q_l^m and
        (x + iy)^{m-1}: the x, y derivatives of columns ±m and the z derivative of columns
        ±(m-1)."""
        x = u[:, 0]
        y = u[:, 1]
        z = u[:, 2]
        g = grad * self.norm[1:].to(u.dtype)
        gx = torch.zeros_like(z)
        gy = torch.zeros_like(z)
        gz = torch.zeros_like(z)
        re_m = torch.ones_like(z)
        im_m = torch.zeros_like(z)
        q_mm = torch.ones_like(z)
        for m in range(1, self.l_max + 1):
            re_prev = re_m
            im_prev = im_m
            re_m = x * re_prev - y * im_prev
            im_m = x * im_prev + y * re_prev
            q_mm = q_mm * float(2 * m - 1)
            q_prev = torch.zeros_like(z)
            q_l = q_mm
            s_plus = torch.zeros_like(z)     # Σ_l Q_l^m g_{l,m}
            s_minus = torch.zeros_like(z)    # Σ_l Q_l^m g_{l,-m}
            z_plus = torch.zeros_like(z)     # Σ_l Q_l^m g_{l,m-1}
            z_minus = torch.zeros_like(z)    # Σ_l Q_l^m g_{l,-(m-1)}
            for l in range(m, self.l_max + 1):
                if l == m + 1:
                    q_prev, q_l = q_l, float(2 * m + 1) * z * q_mm
                elif l > m + 1:
                    q_prev, q_l = q_l, (float(2 * l - 1) * z * q_l - float(l + m - 1) * q_prev) / float(l - m)
                col = l * l + l - 1          # column of (l, 0) in grad
                s_plus = s_plus + q_l * g[:, col + m]
                s_minus = s_minus + q_l * g[:, col - m]
                z_plus = z_plus + q_l * g[:, col + m - 1]
                if m > 1:
                    z_minus = z_minus + q_l * g[:, col - m + 1]
            gx = gx + float(m) * (s_plus * re_prev + s_minus * im_prev)
            gy = gy + float(m) * (s_minus * re_prev - s_plus * im_prev)
            gz = gz + z_plus * re_prev + z_minus * im_prev
        return torch.stack([gx, gy, gz], dim=1)


def gaunt_tensor(l1: int, l2: int, l3: int) -> np.ndarray:
    """Real Gaunt tensor ``G[m1, m2, m3] = (1/4π) ∫ Y_l1m1 Y_l2m2 Y_l3m3 dΩ`` of the harmonics of
    :class:`SphericalHarmonics`, (2l1+1, 2l2+1, 2l3+1), by a product quadrature that is exact for
    polynomials of this degree (Gauss-Legendre in cos θ, uniform in φ)."""
    degree = l1 + l2 + l3
    z, wz = np.polynomial.legendre.leggauss(degree // 2 + 2)
    n_phi = degree + 2
    phi = 2.0 * np.pi * np.arange(n_phi) / n_phi
    zz, pp = np.meshgrid(z, phi, indexing="ij")
    s = np.sqrt(1.0 - zz ** 2)
    u = np.stack([s * np.cos(pp), s * np.sin(pp), zz], axis=-1).reshape(-1, 3)
    weight = (np.repeat(wz, n_phi) / n_phi / 2.0)
    with torch.no_grad():
        y = SphericalHarmonics(max(l1, l2, l3))(torch.from_numpy(u)).numpy()
    y1 = y[:, l1 * l1: (l1 + 1) ** 2]
    y2 = y[:, l2 * l2: (l2 + 1) ** 2]
    y3 = y[:, l3 * l3: (l3 + 1) ** 2]
    return np.einsum("q,qa,qb,qc->abc", weight, y1, y2, y3)


# --------------------------------------------------------------------------------------------
# Invariant blocks: functions of the atomic base A (a list over l of (N, C_l, 2l+1) tensors)
# --------------------------------------------------------------------------------------------
class TwoBody(torch.nn.Module):
    """``B2_c = A_{c,00}`` for the selected channels."""

    def __init__(self, channels: Sequence[int]):
        super().__init__()
        self.register_buffer("channels", torch.tensor(list(channels), dtype=torch.int64))

    def forward(self, base: List[torch.Tensor]) -> torch.Tensor:
        return base[0][:, :, 0].index_select(1, self.channels)

    def partials(self, base: List[torch.Tensor]) -> List[torch.Tensor]:
        return []

    def linearised(self, partials: List[torch.Tensor], tangent: List[torch.Tensor]) -> torch.Tensor:
        return self.forward(tangent)

    def add_base_gradient(self, base: List[torch.Tensor], grad: torch.Tensor, out: List[torch.Tensor]) -> torch.Tensor:
        """``out[l] += ∂(Σ_k grad_k B_k)/∂A_l`` for this block's features B (N, K_block), and
        return ``Σ_k grad_k B_k`` (N,) without forming B: a block of degree p in A is
        homogeneous, so Σ_k grad_k B_k = (1/p) A · ∂/∂A. The other blocks have the same method
        (the hand-written backward of the invariants)."""
        out[0] = out[0].index_add(1, self.channels, grad.unsqueeze(2))
        return (grad * base[0][:, :, 0].index_select(1, self.channels)).sum(dim=1)


class PowerSpectrum(torch.nn.Module):
    """``B3_{c1 c2} = Σ_m A_{c1 lm} A_{c2 lm}`` for channel pairs c1 ≤ c2 at one l."""

    l: int

    def __init__(self, l: int, channels: Sequence[int]):
        super().__init__()
        self.l = int(l)
        n = len(channels)
        pairs = [(a, b) for a in range(n) for b in range(a, n)]
        self.register_buffer("channels", torch.tensor(list(channels), dtype=torch.int64))
        self.register_buffer("pair_index", torch.tensor([a * n + b for a, b in pairs], dtype=torch.int64))

    def forward(self, base: List[torch.Tensor]) -> torch.Tensor:
        a = base[self.l].index_select(1, self.channels)
        gram = torch.matmul(a, a.transpose(1, 2))
        return gram.reshape(gram.shape[0], gram.shape[1] * gram.shape[2]).index_select(1, self.pair_index)

    def partials(self, base: List[torch.Tensor]) -> List[torch.Tensor]:
        return [base[self.l].index_select(1, self.channels)]

    def linearised(self, partials: List[torch.Tensor], tangent: List[torch.Tensor]) -> torch.Tensor:
        """Directional derivative along ``tangent`` (rows of ``partials`` = primal atoms)."""
        p = torch.matmul(tangent[self.l].index_select(1, self.channels), partials[0].transpose(1, 2))
        p = p + p.transpose(1, 2)
        return p.reshape(p.shape[0], p.shape[1] * p.shape[2]).index_select(1, self.pair_index)

    def add_base_gradient(self, base: List[torch.Tensor], grad: torch.Tensor, out: List[torch.Tensor]) -> torch.Tensor:
        """``out[l] += W A`` with W (N, C, C) the symmetric matrix of the pair weights:
        ∂B_{ab}/∂A_a = A_b and ∂B_{ab}/∂A_b = A_a (2 A_a on the diagonal); returns
        Σ grad B = ½ A · W A (degree 2)."""
        a = base[self.l].index_select(1, self.channels)
        n = a.shape[1]
        w = torch.zeros((a.shape[0], n * n), dtype=a.dtype, device=a.device)
        w = w.index_copy(1, self.pair_index, grad).reshape(a.shape[0], n, n)
        da = torch.matmul(w + w.transpose(1, 2), a)
        out[self.l] = out[self.l].index_add(1, self.channels, da)
        return 0.5 * (a * da).sum(dim=(1, 2))


class Bispectrum(torch.nn.Module):
    """``B4 = Σ G^{l1 l2 l3}_{m1 m2 m3} A_{c1 l1 m1} A_{c2 l2 m2} A_{c3 l3 m3}`` for l1 ≤ l2 ≤ l3
    (l1 + l2 + l3 even, triangle), one feature per multiset of (l, c) pairs."""

    l1: int
    l2: int
    l3: int

    def __init__(self, l1: int, l2: int, l3: int, channels: Sequence[Sequence[int]]):
        """``channels[k]``: indices of the same (s, n) channels in the base tensor of l_k."""
        super().__init__()
        self.l1, self.l2, self.l3 = int(l1), int(l2), int(l3)
        n = len(channels[0])
        triples = [(a, b, c) for a, b, c in product(range(n), repeat=3)
                   if (l1 < l2 or a <= b) and (l2 < l3 or b <= c)]
        for k, name in enumerate(("channels1", "channels2", "channels3")):
            self.register_buffer(name, torch.tensor(list(channels[k]), dtype=torch.int64))
        self.register_buffer("gaunt", torch.from_numpy(gaunt_tensor(l1, l2, l3)))
        self.register_buffer("triple_index",
                             torch.tensor([(a * n + b) * n + c for a, b, c in triples], dtype=torch.int64))

    def forward(self, base: List[torch.Tensor]) -> torch.Tensor:
        a1 = base[self.l1].index_select(1, self.channels1)
        a2 = base[self.l2].index_select(1, self.channels2)
        a3 = base[self.l3].index_select(1, self.channels3)
        n_atoms = a1.shape[0]
        n_chan = a1.shape[1]
        g = self.gaunt.to(a1.dtype)
        d1, d2, d3 = g.shape[0], g.shape[1], g.shape[2]
        # (N, c1, m2, m3) = Σ_m1 A1[c1, m1] G[m1, m2, m3]
        t = torch.matmul(a1.reshape(n_atoms * n_chan, d1), g.reshape(d1, d2 * d3)).reshape(n_atoms, n_chan, d2, d3)
        # (N, c1, c2, m3) = Σ_m2 A2[c2, m2] t[c1, m2, m3]
        t = torch.matmul(a2.unsqueeze(1), t)
        # (N, c1, c2, c3) = Σ_m3 t[c1, c2, m3] A3[c3, m3]
        t = torch.matmul(t.reshape(n_atoms, n_chan * n_chan, d3), a3.transpose(1, 2))
        return t.reshape(n_atoms, n_chan * n_chan * n_chan).index_select(1, self.triple_index)

    def partials(self, base: List[torch.Tensor]) -> List[torch.Tensor]:
        """The contractions of G with two of the three factors, (N, 2l_k+1, C, C) each."""
        a1 = base[self.l1].index_select(1, self.channels1)
        a2 = base[self.l2].index_select(1, self.channels2)
        a3 = base[self.l3].index_select(1, self.channels3)
        g = self.gaunt.to(a1.dtype)
        return [torch.einsum("abc,nib,njc->naij", g, a2, a3),
                torch.einsum("abc,nia,njc->nbij", g, a1, a3),
                torch.einsum("abc,nia,njb->ncij", g, a1, a2)]

    def linearised(self, partials: List[torch.Tensor], tangent: List[torch.Tensor]) -> torch.Tensor:
        """Directional derivative along ``tangent``: one term per factor (product rule)."""
        d1 = tangent[self.l1].index_select(1, self.channels1)
        d2 = tangent[self.l2].index_select(1, self.channels2)
        d3 = tangent[self.l3].index_select(1, self.channels3)
        rows, n = d1.shape[0], d1.shape[1]
        t1 = torch.matmul(d1, partials[0].reshape(rows, partials[0].shape[1], n * n)).reshape(rows, n, n, n)
        t2 = torch.matmul(d2, partials[1].reshape(rows, partials[1].shape[1], n * n)).reshape(rows, n, n, n).permute(0, 2, 1, 3)
        t3 = torch.matmul(d3, partials[2].reshape(rows, partials[2].shape[1], n * n)).reshape(rows, n, n, n).permute(0, 2, 3, 1)
        return (t1 + t2 + t3).reshape(rows, n * n * n).index_select(1, self.triple_index)

    def add_base_gradient(self, base: List[torch.Tensor], grad: torch.Tensor, out: List[torch.Tensor]) -> torch.Tensor:
        """The three factors' gradients of ``Σ_abc W_abc Σ G A1_a A2_b A3_c``, W (N, C, C, C)
        the triple weights (zero outside the stored multisets):
        ∂/∂A3_c = Σ_ab W_abc (G A1_a A2_b), ∂/∂A2_b = Σ_a (G A1_a) · X_ab, ∂/∂A1_a = G · Σ_b A2_b X_ab
        with X_ab = Σ_c W_abc A3_c; returns Σ grad B = A1 · ∂/∂A1
        (the form is linear in each factor)."""
        a1 = base[self.l1].index_select(1, self.channels1)
        a2 = base[self.l2].index_select(1, self.channels2)
        a3 = base[self.l3].index_select(1, self.channels3)
        rows, n = a1.shape[0], a1.shape[1]
        g = self.gaunt.to(a1.dtype)
        d1, d2, d3 = g.shape[0], g.shape[1], g.shape[2]
        w = torch.zeros((rows, n * n * n), dtype=a1.dtype, device=a1.device)
        w = w.index_copy(1, self.triple_index, grad).reshape(rows, n, n, n)
        # the per-atom factors are tiny (C ≤ 6 channels, 2l+1 ≤ 5): broadcast products and sums
        # beat batched matmuls of thousands of 3x5 matrices; the Gaunt contractions are big GEMMs
        x3 = (w.unsqueeze(4) * a3.reshape(rows, 1, 1, n, d3)).sum(dim=3)                # (N, a, b, m3)
        t1 = torch.matmul(a1.reshape(rows * n, d1), g.reshape(d1, d2 * d3)).reshape(rows, n, d2, d3)
        f12 = (a2.reshape(rows, 1, n, d2, 1) * t1.unsqueeze(2)).sum(dim=3)               # (N, a, b, m3)
        da3 = (w.unsqueeze(4) * f12.unsqueeze(3)).sum(dim=(1, 2))                        # (N, c, m3)
        da2 = (x3.unsqueeze(3) * t1.unsqueeze(2)).sum(dim=(1, 4))                        # (N, b, m2)
        z = (a2.reshape(rows, 1, n, d2, 1) * x3.unsqueeze(3)).sum(dim=2)                 # (N, a, m2, m3)
        da1 = torch.matmul(z.reshape(rows * n, d2 * d3), g.reshape(d1, d2 * d3).transpose(0, 1)).reshape(rows, n, d1)
        out[self.l1] = out[self.l1].index_add(1, self.channels1, da1)
        out[self.l2] = out[self.l2].index_add(1, self.channels2, da2)
        out[self.l3] = out[self.l3].index_add(1, self.channels3, da3)
        return (a1 * da1).sum(dim=(1, 2))


def _coupling_triples(l_max: int) -> List[Tuple[int, int, int]]:
    """(l1, l2, l3), l1 ≤ l2 ≤ l3 ≤ l_max, triangle and even sum (true scalars)."""
    return [(a, b, c) for a in range(l_max + 1) for b in range(a, l_max + 1) for c in range(b, l_max + 1)
            if c <= a + b and (a + b + c) % 2 == 0]


# --------------------------------------------------------------------------------------------
# Descriptor
# --------------------------------------------------------------------------------------------
class BaseState(NamedTuple):
    """What :meth:`ClusterDescriptor.edge_gradient` needs of the forward pass: the per-l base
    (the list of :meth:`ClusterDescriptor.atomic_base`), the edges' lengths (E,) Å, unit vectors
    (E, 3), radial derivatives dg/dr (E, n_base0) 1/Å, the padded (atom, slot) layout (radial
    functions of l > 0 (N, slots, S·n_base1), harmonics of l > 0 (N, slots, (l_max+1)² - 1)),
    each edge's row in that layout (E,), its neighbour's species (E,) and its row
    ``centre · S + neighbour species`` (E,) in per-(atom, species) tables."""
    base: List[torch.Tensor]
    r: torch.Tensor
    u: torch.Tensor
    dg_dr: torch.Tensor
    g_low: torch.Tensor
    y_pad: torch.Tensor
    padded: torch.Tensor
    neighbour_species: torch.Tensor
    centre_species: torch.Tensor


def _pair_cutoff_table(basis: ClusterBasis, n_species: int, elements: Optional[Sequence[str]]) -> np.ndarray:
    """(S, S) float64 Å for the descriptor: :meth:`ClusterBasis.cutoff_table`, or the global
    cutoff everywhere when there are no pair cutoffs and no elements."""
    if elements is None:
        if basis.pair_cutoffs:
            raise ValueError(f"pair cutoffs {basis.pair_cutoffs} need the model's element order: pass elements")
        return np.full((n_species, n_species), float(basis.cutoff))
    if len(elements) != n_species:
        raise ValueError(f"{len(elements)} elements {list(elements)} for a model of {n_species} species")
    return basis.cutoff_table(elements)


class ClusterDescriptor(torch.nn.Module):
    """Per-atom invariants B (n_local, n_features) of the cluster basis (module docstring).

    ``elements`` (symbols, index = species id) resolve the basis's ``pair_cutoffs`` into the (S, S)
    buffer ``pair_cutoff`` (Å); they are required when the basis has pair cutoffs. The buffer is not
    part of the state dict (it follows from the basis and the elements, which checkpoints hold),
    but it is scripted with the model and follows ``.to(dtype)``."""

    n_species: int
    n_base0: int
    n_base1: int
    l_max: int
    n_features: int
    block_sizes: List[int]

    def __init__(self, n_species: int, basis: ClusterBasis, elements: Optional[Sequence[str]] = None):
        super().__init__()
        self.n_species = int(n_species)
        self.basis = basis
        self.register_buffer("pair_cutoff", torch.from_numpy(_pair_cutoff_table(basis, self.n_species, elements)),
                             persistent=False)
        self.n_base0 = max(basis.n_radial_2, basis.n_radial_3, basis.n_radial_4)
        self.l_max = max(basis.l_max_3 if basis.n_radial_3 > 0 else 0,
                         basis.l_max_4 if basis.n_radial_4 > 0 else 0)
        self.n_base1 = max(basis.n_radial_3 if basis.l_max_3 > 0 else 0,
                           basis.n_radial_4 if basis.l_max_4 > 0 else 0)
        if self.n_base1 == 0:
            self.l_max = 0
        self.radial = RadialBasis(self.n_base0, basis.cutoff, basis.radial_scale)
        self.harmonics = SphericalHarmonics(self.l_max)

        blocks: List[torch.nn.Module] = [TwoBody(self._channels(0, basis.n_radial_2))]
        labels: List[str] = [f"B2 s{s} n{n}" for s in range(n_species) for n in range(basis.n_radial_2)]
        if basis.n_radial_3 > 0:
            for l in range(basis.l_max_3 + 1):
                block = PowerSpectrum(l, self._channels(l, basis.n_radial_3))
                blocks.append(block)
                labels += self._pair_labels(l, basis.n_radial_3)
        if basis.n_radial_4 > 0:
            for l1, l2, l3 in _coupling_triples(basis.l_max_4):
                chans = [self._channels(l, basis.n_radial_4) for l in (l1, l2, l3)]
                block = Bispectrum(l1, l2, l3, chans)
                blocks.append(block)
                labels += self._triple_labels((l1, l2, l3), basis.n_radial_4)
        self.blocks = torch.nn.ModuleList(blocks)
        self.labels = labels
        self.n_features = len(labels)
        self.block_sizes = [self._block_size(b) for b in blocks]

    @staticmethod
    def _block_size(block: torch.nn.Module) -> int:
        if isinstance(block, PowerSpectrum):
            return int(block.pair_index.numel())
        if isinstance(block, Bispectrum):
            return int(block.triple_index.numel())
        return int(block.channels.numel())

    def _channels(self, l: int, n_radial: int) -> List[int]:
        """Indices into the l-th base tensor of the channels (s, n < n_radial), s-major."""
        width = self.n_base0 if l == 0 else self.n_base1
        return [s * width + n for s in range(self.n_species) for n in range(n_radial)]

    def _pair_labels(self, l: int, n_radial: int) -> List[str]:
        chans = [(s, n) for s in range(self.n_species) for n in range(n_radial)]
        return [f"B3 l{l} s{chans[a][0]}n{chans[a][1]} s{chans[b][0]}n{chans[b][1]}"
                for a in range(len(chans)) for b in range(a, len(chans))]

    def _triple_labels(self, ls: Tuple[int, int, int], n_radial: int) -> List[str]:
        chans = [(s, n) for s in range(self.n_species) for n in range(n_radial)]
        k = len(chans)
        l1, l2, l3 = ls
        out = []
        for a, b, c in product(range(k), repeat=3):
            if (l1 < l2 or a <= b) and (l2 < l3 or b <= c):
                out.append(f"B4 l{l1}{l2}{l3} " + " ".join(f"s{chans[x][0]}n{chans[x][1]}" for x in (a, b, c)))
        return out

    def edge_cutoffs(self, species: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """The cutoff r_c(s_i, s_j) of every edge (i, j), (E,) Å."""
        pair = species.index_select(0, edge_index[0]) * self.n_species + species.index_select(0, edge_index[1])
        return self.pair_cutoff.reshape(-1).index_select(0, pair)

    def edge_functions(self, edge_vec: torch.Tensor, edge_cutoff: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per-edge radial functions (E, n_base0) and harmonics (E, (l_max+1)²) of edge vectors
        (E, 3) Å with cutoffs (E,) Å (:meth:`edge_cutoffs`)."""
        r = torch.linalg.norm(edge_vec, dim=1)
        return self.radial(r, edge_cutoff), self.harmonics(edge_vec / r.unsqueeze(1))

    def edge_products(self, edge_vec: torch.Tensor, edge_cutoff: torch.Tensor) -> torch.Tensor:
        """``g_n(r_e) Y_lm(r̂_e)`` per edge, (E, n_base0, (l_max+1)²) (used by the fit)."""
        g, y = self.edge_functions(edge_vec, edge_cutoff)
        return g.unsqueeze(2) * y.unsqueeze(1)

    def split_base(self, full: torch.Tensor) -> List[torch.Tensor]:
        """Per-l base tensors (N, C_l, 2l+1) from the full (N, S, n_base0, (l_max+1)²) base;
        channel c = s · n_l + n with n_0 = n_base0 and n_l = n_base1 for l > 0."""
        n_atoms = full.shape[0]
        out: List[torch.Tensor] = [full[:, :, :, 0].reshape(n_atoms, self.n_species * self.n_base0, 1)]
        for l in range(1, self.l_max + 1):
            part = full[:, :, : self.n_base1, l * l: (l + 1) * (l + 1)]
            out.append(part.reshape(n_atoms, self.n_species * self.n_base1, 2 * l + 1))
        return out

    def atomic_base(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                    n_local: int) -> List[torch.Tensor]:
        """``A_{i,(s,n),lm}`` as a list over l of (n_local, C_l, 2l+1).

        The neighbour sum is one batched matmul over a padded (atom, neighbour slot) layout,
        ``A_i = G_iᵀ Y_i`` with G_i (slots, S·n) holding each neighbour's radial functions in its
        species' columns: this never forms the (E, n, (l_max+1)²) product per edge, which costs
        several times more memory traffic than the matmul in both the forward and backward pass.
        The layout is that of :meth:`split_base`.
        """
        g, y = self.edge_functions(edge_vec, self.edge_cutoffs(species, edge_index))
        padded, neighbour_species, max_nb = self._padded_layout(edge_index, species, n_local)
        centre_species = edge_index[0] * self.n_species + neighbour_species
        return self._base_from_edges(g, y, padded, neighbour_species, centre_species, n_local, max_nb)[0]

    def _padded_layout(self, edge_index: torch.Tensor, species: torch.Tensor, n_local: int
                       ) -> Tuple[torch.Tensor, torch.Tensor, int]:
        """Each edge's row ``centre · max_nb + slot`` (E,) in the padded (atom, neighbour slot)
        layout, its neighbour's species (E,), and max_nb."""
        src = edge_index[0]
        n_edges = src.shape[0]
        counts = torch.bincount(src, minlength=n_local)
        max_nb = int(counts.max()) if n_edges > 0 else 1
        order = torch.argsort(src, stable=True)
        first = torch.cumsum(counts, 0) - counts
        slot = torch.empty_like(src)
        slot[order] = torch.arange(n_edges, dtype=src.dtype, device=src.device) - first.index_select(0, src.index_select(0, order))
        return src * max_nb + slot, species.index_select(0, edge_index[1]), max_nb

    def _base_from_edges(self, g: torch.Tensor, y: torch.Tensor, padded: torch.Tensor,
                         neighbour_species: torch.Tensor, centre_species: torch.Tensor, n_local: int,
                         max_nb: int) -> Tuple[List[torch.Tensor], torch.Tensor, torch.Tensor]:
        """The per-l base from per-edge radial functions (E, n_base0) and harmonics (E, n_lm),
        and the padded l > 0 factors (g_low, y_pad) its backward reuses (empty when l_max = 0).
        ``centre_species`` (E,) is each edge's row ``centre · S + neighbour species``."""
        # l = 0: Y_00 = 1, so A is the plain sum of the radial functions, row (centre, species)
        a0 = torch.zeros((n_local * self.n_species, self.n_base0), dtype=g.dtype, device=g.device)
        out: List[torch.Tensor] = [a0.index_add(0, centre_species, g).reshape(n_local, self.n_species * self.n_base0, 1)]
        g_low = torch.zeros((0,), dtype=g.dtype, device=g.device)
        y_pad = torch.zeros((0,), dtype=g.dtype, device=g.device)
        if self.l_max > 0:
            # l > 0: one matmul for all l, split along m (a split's gradient is one cat, whereas
            # slicing one tensor several times costs a zero-filled full-size gradient per slice)
            n_lm = y.shape[1] - 1
            y_pad = torch.zeros((n_local * max_nb, n_lm), dtype=y.dtype, device=y.device)
            y_pad = y_pad.index_put((padded,), y[:, 1:]).reshape(n_local, max_nb, n_lm)
            g_low = torch.zeros((n_local * max_nb, self.n_species, self.n_base1), dtype=g.dtype, device=g.device)
            g_low = g_low.index_put((padded, neighbour_species), g[:, : self.n_base1]).reshape(
                n_local, max_nb, self.n_species * self.n_base1)
            rest = torch.matmul(g_low.transpose(1, 2), y_pad)
            sizes = [2 * l + 1 for l in range(1, self.l_max + 1)]
            out.extend(torch.split(rest, sizes, dim=2))
        return out, g_low, y_pad

    def base_state(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                   n_local: int) -> BaseState:
        """The atomic base and what its hand-written backward (:meth:`edge_gradient`) needs; the
        same numbers as :meth:`atomic_base`, plus dg/dr. No autograd graph is needed."""
        r = torch.linalg.norm(edge_vec, dim=1)
        u = edge_vec / r.unsqueeze(1)
        g, dg_dr = self.radial.with_derivative(r, self.edge_cutoffs(species, edge_index))
        y = self.harmonics(u)
        padded, neighbour_species, max_nb = self._padded_layout(edge_index, species, n_local)
        centre_species = edge_index[0] * self.n_species + neighbour_species
        base, g_low, y_pad = self._base_from_edges(g, y, padded, neighbour_species, centre_species, n_local, max_nb)
        return BaseState(base, r, u, dg_dr, g_low, y_pad, padded, neighbour_species, centre_species)

    def base_gradient(self, base: List[torch.Tensor], feature_grad: torch.Tensor
                      ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """∂(Σ_k feature_grad_ik B_ik)/∂A as a list over l of (N, C_l, 2l+1), from the blocks'
        hand-written backward (the invariants are polynomials of degree ≤ 3 in A), and
        Σ_k feature_grad_ik B_ik (N,) itself, without forming B (the blocks are homogeneous)."""
        out: List[torch.Tensor] = [torch.zeros_like(b) for b in base]
        parts = torch.split(feature_grad, self.block_sizes, dim=1)
        total = torch.zeros(feature_grad.shape[0], dtype=feature_grad.dtype, device=feature_grad.device)
        k = 0
        for block in self.blocks:
            total = total + block.add_base_gradient(base, parts[k], out)
            k += 1
        return out, total

    def edge_gradient(self, state: BaseState, feature_grad: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """dE/dr_ij (E, 3) for E = Σ_ik feature_grad_ik B_ik (feature_grad (N, n_features), e.g.
        the linear readout's coefficients of each atom's species), and Σ_k feature_grad_ik B_ik
        (N,) (:meth:`base_gradient`; the linear model's energies less e0): the backward of
        :meth:`base_state` written out. The base A_i = Σ_j g(r_ij) ⊗ Y(r̂_ij) gives, per edge,
        dE/dg_n = Σ_lm D_{i,(s_j,n),lm} Y_lm and dE/dY_lm = Σ_n D_{i,(s_j,n),lm} g_n (D = dE/dA),
        as two batched matmuls over the padded layout of the forward pass; then
        dE/dr_ij = (Σ_n dE/dg_n g_n') r̂ + (1 - r̂ r̂ᵀ) ∇_u E / r."""
        dbase, linear = self.base_gradient(state.base, feature_grad)
        n_local = feature_grad.shape[0]
        # l = 0: the centre's row of the neighbour's species
        dg = dbase[0].reshape(n_local * self.n_species, self.n_base0).index_select(0, state.centre_species)
        radial = (dg * state.dg_dr).sum(dim=1)
        grad = state.u * radial.unsqueeze(1)
        if self.l_max > 0:
            drest = torch.cat(dbase[1:], dim=2)                                    # (N, S·n1, n_lm)
            max_nb = state.y_pad.shape[1]
            n_lm = state.y_pad.shape[2]
            dy = torch.matmul(state.g_low, drest).reshape(n_local * max_nb, n_lm).index_select(0, state.padded)
            dg_low = torch.matmul(state.y_pad, drest.transpose(1, 2)).reshape(
                n_local * max_nb * self.n_species, self.n_base1)
            dg_low = dg_low.index_select(0, state.padded * self.n_species + state.neighbour_species)
            radial_low = (dg_low * state.dg_dr[:, : self.n_base1]).sum(dim=1)
            du = self.harmonics.vjp(state.u, dy)
            du = du - (du * state.u).sum(dim=1, keepdim=True) * state.u
            grad = grad + state.u * radial_low.unsqueeze(1) + du / state.r.unsqueeze(1)
        return grad, linear

    def invariants(self, base: List[torch.Tensor]) -> torch.Tensor:
        """(N, n_features) from the per-l base tensors; a polynomial in A, row by row."""
        parts: List[torch.Tensor] = []
        for block in self.blocks:
            parts.append(block(base))
        return torch.cat(parts, dim=1)

    def partials(self, base: List[torch.Tensor]) -> List[List[torch.Tensor]]:
        """Per-atom precontractions for :meth:`linearised_invariants` (one list per block)."""
        return [block.partials(base) for block in self.blocks]

    def linearised_invariants(self, partials: List[List[torch.Tensor]], tangent: List[torch.Tensor]) -> torch.Tensor:
        """Directional derivatives (M, n_features) of the invariants of M atoms, whose
        :meth:`partials` rows are given, along base tangents (M, C_l, 2l+1). Exact (the
        invariants are polynomials of degree ≤ 3 in A) and used by the linear fit for
        force and stress rows; not part of the scripted model."""
        return torch.cat([block.linearised(p, tangent) for block, p in zip(self.blocks, partials)], dim=1)

    def forward(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                n_local: int) -> torch.Tensor:
        return self.invariants(self.atomic_base(edge_vec, species, edge_index, n_local))


def feature_count(n_species: int, basis: ClusterBasis) -> Dict[str, int]:
    """Features per centre species by body order (pair cutoffs do not change them)."""
    desc = ClusterDescriptor(n_species, replace(basis, pair_cutoffs={}))
    counts = {"B2": 0, "B3": 0, "B4": 0}
    for label in desc.labels:
        counts[label[:2]] += 1
    counts["total"] = desc.n_features
    return counts
