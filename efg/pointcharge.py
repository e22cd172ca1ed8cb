"""Electric-field gradient of a periodic lattice of point charges, by Ewald summation.

The classical baseline: every atom is a point charge (in units of e, one value per element or per
atom), and the EFG at a nucleus is that of all the other charges of the infinite crystal,
optionally scaled by the Sternheimer antishielding factor ``(1 − γ∞)`` of the nucleus. It is
what users know from the textbooks, and it gives the reference labels of the shipped example,
where no DFT EFG exists: those labels are point-charge EFGs, not first-principles ones.

Units and sign convention
-------------------------
Positions in Å, charges in e, EFG in V/Å². ``V_ab = ∂_a ∂_b φ`` at the nucleus, φ the
electrostatic potential of the other charges. A charge q at displacement r from the nucleus gives

    V_ab = q e/(4πε0) · (3 r_a r_b − r² δ_ab) / r⁵,   e/(4πε0) = 14.39964547 V·Å,

so a positive charge on the z axis gives V_zz = +2 q e/(4πε0) / r³ > 0. VASP's LEFG output uses
the same sign: in the shipped pymatgen OUTCAR (tests/data/pymatgen) every H has
V_zz ≈ +41.7 V/Å², its principal axis along the O–H bond, and a hydroxyl deuteron has a positive
V_zz in this convention (its measured C_Q is positive, and Q(2H) > 0). Point-charge and VASP
tensors can therefore be compared component by component, and both feed :mod:`pyexport.nmr` as they
are.

Ewald splitting
---------------
``1/r = erfc(αr)/r + erf(αr)/r``. With ``d = r_j + n − r_i`` (n a lattice vector):

- real space: ``Σ'_{j,n} q_j [d_a d_b C(d) − δ_ab B(d)]`` with
  ``B(r) = [erfc(αr) + (2αr/√π) e^{−α²r²}] / r³`` and
  ``C(r) = [3 erfc(αr) + (2αr/√π)(3 + 2α²r²) e^{−α²r²}] / r⁵``
  (the second derivatives of erfc(αr)/r), the term j = i, n = 0 left out;
- reciprocal space: ``(4π/V) Σ_{G≠0} e^{−G²/4α²}/G² · (−G_a G_b) · Re[S(G) e^{iG·r_i}]`` with
  ``S(G) = Σ_j q_j e^{−iG·r_j}``; the G = 0 term is a constant potential (no gradient) for a
  neutral cell;
- self term: the Gaussian of the site's own charge, contained in the reciprocal sum, gives the
  isotropic ``−q_i (4α³/3√π) δ_ab``; it is removed, since a nucleus feels no EFG from its own
  charge (only the trace would change).

All three are multiplied by e/(4πε0). The exact sum is traceless (Laplace's equation at a point
free of other charges); the result is symmetrised and its trace, of the size of the truncation
error, removed. The splitting parameter α and the cutoffs follow from a target relative accuracy
(:func:`ewald_parameters`); the result does not depend on α beyond that accuracy.
"""
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Union

import numpy as np
from scipy import constants
from scipy.special import erfc

#: e/(4πε0) in V·Å: the potential of one elementary charge at 1 Å (CODATA e and ε0 via scipy).
COULOMB_V_A = constants.e / (4.0 * np.pi * constants.epsilon_0) / constants.angstrom

#: Largest |Σ q| (e per cell, relative to max(1, Σ|q|)) accepted as neutral.
NEUTRALITY_TOLERANCE = 1e-8

#: Array elements per chunk: sites × atoms × lattice translations in the real-space sum,
#: G vectors × atoms in the reciprocal-space sum (about 16 MB of float64 each).
_REAL_CHUNK = 2_000_000

#: Weight w in the default α = √π (w N / V²)^{1/6}: larger w moves work from the real-space to
#: the reciprocal-space sum. 8 was the fastest of 0.25 … 64 for CsPbBr3 supercells of 40 and
#: 320 atoms (numpy, one core).
_REAL_TO_RECIPROCAL_COST = 8.0

ChargeSpec = Union[Mapping[str, float], Sequence[float], np.ndarray]
SternheimerSpec = Union[float, Mapping[str, float]]


@dataclass(frozen=True)
class EwaldParameters:
    """Splitting parameter and cutoffs of an Ewald sum."""

    alpha: float  #: Gaussian splitting parameter, 1/Å
    r_cut: float  #: real-space cutoff, Å
    g_cut: float  #: reciprocal-space cutoff |G|, 1/Å


def ewald_parameters(cell, n_atoms: int, accuracy: float = 1e-10,
                     alpha: Optional[float] = None) -> EwaldParameters:
    """Ewald parameters for a relative accuracy ``accuracy`` of the EFG.

    Both sums are cut where their Gaussian factor has fallen below ``accuracy``:
    ``α r_cut = G_cut / (2α) = s`` with ``s² = 2 − ln(accuracy)`` (the 2 covers the polynomial
    prefactors of the EFG terms; measured: the largest error, relative to the largest EFG
    component, is 0.1–0.2 × ``accuracy`` for 1e-12 ≤ accuracy ≤ 1e-4). ``α`` (1/Å), if not
    given, balances the cost of the two sums, ``α = √π (w N / V²)^{1/6}`` (N atoms, V the cell
    volume in Å³, w = :data:`_REAL_TO_RECIPROCAL_COST`); any α gives the same EFG to
    ``accuracy``.
    """
    if not 0.0 < accuracy < 1.0:
        raise ValueError(f"accuracy: expected a number in (0, 1), got {accuracy}")
    volume = abs(np.linalg.det(np.asarray(cell, dtype=float)))
    if alpha is None:
        alpha = np.sqrt(np.pi) * (_REAL_TO_RECIPROCAL_COST * n_atoms / volume**2) ** (1.0 / 6.0)
    elif not alpha > 0.0:
        raise ValueError(f"alpha: expected a positive splitting parameter (1/Å), got {alpha}")
    s = np.sqrt(2.0 - np.log(accuracy))
    return EwaldParameters(alpha=float(alpha), r_cut=float(s / alpha), g_cut=float(2.0 * alpha * s))


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------
def ewald_efg(atoms, charges: ChargeSpec, sites: Optional[Sequence[int]] = None,
              sternheimer: SternheimerSpec = 0.0, alpha: Optional[float] = None,
              accuracy: float = 1e-10, r_cut: Optional[float] = None,
              g_cut: Optional[float] = None) -> np.ndarray:
    """Point-charge EFG tensors (V/Å²) at ``sites`` of the periodic crystal ``atoms``.

    Parameters
    ----------
    atoms : ase.Atoms
        Periodic in all three directions (any triclinic cell).
    charges : dict element -> charge, or (N,) array
        Point charges in units of e; the cell must be neutral.
    sites : sequence of int, optional
        Atom indices at which to evaluate the EFG; all atoms if omitted.
    sternheimer : float or dict element -> γ∞
        Sternheimer antishielding factor γ∞ of the nucleus at each site; the EFG is multiplied
        by ``(1 − γ∞)`` (γ∞ is negative for closed-shell ions, so the factor is large: tens for
        halide ions). A dict must name every element that occurs at ``sites``.
    alpha, accuracy, r_cut, g_cut
        Ewald splitting parameter (1/Å) and cutoffs (Å, 1/Å); by default chosen by
        :func:`ewald_parameters` for the relative ``accuracy``. Explicit cutoffs override.

    Returns
    -------
    (n_sites, 3, 3) array, symmetric and traceless, V/Å², ``V_ab = ∂_a ∂_b φ``.
    """
    if not np.all(atoms.pbc):
        raise ValueError(f"atoms: the point-charge Ewald sum needs a cell periodic in all three "
                         f"directions, got pbc={atoms.pbc.tolist()}")
    _check_cell(atoms.cell.array)
    symbols = atoms.get_chemical_symbols()
    q = charges_per_atom(symbols, charges)
    site_index = _site_indices(sites, len(atoms))
    params = ewald_parameters(atoms.cell.array, len(atoms), accuracy, alpha)
    params = EwaldParameters(params.alpha, params.r_cut if r_cut is None else float(r_cut),
                             params.g_cut if g_cut is None else float(g_cut))
    efg = ewald_efg_arrays(atoms.cell.array, atoms.positions, q, site_index, params)
    factor = 1.0 - _sternheimer_per_site([symbols[i] for i in site_index], sternheimer)
    return efg * factor[:, None, None]


def charges_per_atom(symbols: Sequence[str], charges: ChargeSpec) -> np.ndarray:
    """(N,) charges in e from a dict element -> charge or a per-atom sequence; checks neutrality."""
    if isinstance(charges, Mapping):
        q = _per_element(charges, symbols, "charges: no charge given for element(s) {}")
    else:
        q = np.asarray(charges, dtype=float)
        if q.shape != (len(symbols),):
            raise ValueError(f"charges: expected a dict element -> charge or one charge per atom "
                             f"({len(symbols)}), got shape {q.shape}")
    _check_neutral(q)
    return q


def _check_neutral(q: np.ndarray) -> None:
    if not np.all(np.isfinite(q)):
        raise ValueError("charges: not all finite")
    total = q.sum()
    if abs(total) > NEUTRALITY_TOLERANCE * max(1.0, np.abs(q).sum()):
        raise ValueError(f"charges: the cell is not neutral (total charge {total:+.10g} e); "
                         f"the point-charge EFG of a charged cell is not defined")


def _check_cell(cell: np.ndarray) -> None:
    volume = abs(np.linalg.det(cell))
    if not volume > 1e-6:
        raise ValueError(f"cell: degenerate lattice vectors (volume {volume:g} Å³)")


def _site_indices(sites: Optional[Sequence[int]], n_atoms: int) -> np.ndarray:
    if sites is None:
        return np.arange(n_atoms)
    index = np.asarray(sites)
    if index.size == 0:
        return np.zeros(0, dtype=np.int64)
    if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
        raise ValueError(f"sites: expected a 1-D sequence of atom indices, got {sites!r}")
    bad = index[(index < 0) | (index >= n_atoms)]
    if bad.size:
        raise ValueError(f"sites: indices {bad.tolist()} out of range for {n_atoms} atoms")
    return index.astype(np.int64)


def _per_element(values: Mapping, symbols: Sequence[str], missing_message: str, advice: str = ""
                 ) -> np.ndarray:
    """(len(symbols),) floats from {element: value}; an element without a value is an error
    (``missing_message`` formatted with the missing elements, then what was given)."""
    missing = sorted(set(symbols) - set(values))
    if missing:
        raise ValueError(missing_message.format(", ".join(missing)) + f" (given: {dict(values)})" + advice)
    return np.array([float(values[s]) for s in symbols])


def _sternheimer_per_site(site_symbols: Sequence[str], sternheimer: SternheimerSpec) -> np.ndarray:
    """γ∞ for each site."""
    if isinstance(sternheimer, Mapping):
        return _per_element(sternheimer, site_symbols, "sternheimer: no γ∞ given for element(s) {} "
                                                       "at the requested sites", "; use 0.0 for none")
    return np.full(len(site_symbols), float(sternheimer))


# --------------------------------------------------------------------------------------------
# The Ewald sum on plain arrays
# --------------------------------------------------------------------------------------------
def ewald_efg_arrays(cell, positions, charges, sites, params: EwaldParameters) -> np.ndarray:
    """Point-charge EFG (n_sites, 3, 3) V/Å² from arrays.

    ``cell`` (3, 3) Å, rows the lattice vectors; ``positions`` (N, 3) Å; ``charges`` (N,) e,
    neutral; ``sites`` (n_sites,) atom indices; ``params`` the Ewald parameters. No Sternheimer
    factor.
    """
    cell = np.asarray(cell, dtype=float)
    positions = np.asarray(positions, dtype=float)
    charges = np.asarray(charges, dtype=float)
    sites = np.asarray(sites, dtype=np.int64)
    if cell.shape != (3, 3) or positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"cell (3, 3) and positions (N, 3) expected, got {cell.shape} and "
                         f"{positions.shape}")
    if charges.shape != (len(positions),):
        raise ValueError(f"charges: expected shape ({len(positions)},), got {charges.shape}")
    _check_cell(cell)
    _check_neutral(charges)
    alpha = params.alpha
    efg = _real_space_sum(cell, positions, charges, sites, alpha, params.r_cut)
    efg += _reciprocal_space_sum(cell, positions, charges, sites, alpha, params.g_cut)
    # The reciprocal sum contains the Gaussian of the site's own charge: take its EFG out.
    efg += (4.0 * alpha**3 / (3.0 * np.sqrt(np.pi)) * charges[sites])[:, None, None] * np.eye(3)
    efg = 0.5 * (efg + np.swapaxes(efg, 1, 2))
    efg -= (np.trace(efg, axis1=1, axis2=2) / 3.0)[:, None, None] * np.eye(3)
    return COULOMB_V_A * efg


def _lattice_translations(cell: np.ndarray, reach: float) -> np.ndarray:
    """Cartesian lattice vectors n·cell (T, 3) that can bring an atom, whose fractional offset
    from the site is wrapped into [−½, ½), within ``reach`` Å of the site; the zero vector first."""
    reciprocal = np.linalg.inv(cell).T  # rows b_k with a_i·b_k = δ_ik
    n_max = np.floor(reach * np.linalg.norm(reciprocal, axis=1) + 0.5).astype(int)
    ranges = [np.arange(-n, n + 1) for n in n_max]
    n = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, 3)
    vectors = n @ cell
    # Any wrapped offset is at most half the cell's longest diagonal away from the origin.
    half_diagonal = 0.5 * max(np.linalg.norm(np.array(signs) @ cell)
                              for signs in ((1, 1, 1), (1, 1, -1), (1, -1, 1), (-1, 1, 1)))
    vectors = vectors[np.linalg.norm(vectors, axis=1) <= reach + half_diagonal]
    order = np.argsort(np.linalg.norm(vectors, axis=1), kind="stable")
    return vectors[order]


def _real_space_sum(cell, positions, charges, sites, alpha, r_cut) -> np.ndarray:
    """Σ'_{j,n} q_j [d_a d_b C(d) − δ_ab B(d)] (n_sites, 3, 3), in e/Å³."""
    n_atoms = len(positions)
    fractional = positions @ np.linalg.inv(cell)
    translations = _lattice_translations(cell, r_cut)  # zero vector first
    t_norm2 = np.einsum("tk,tk->t", translations, translations)
    n_trans = len(translations)
    chunk = max(1, _REAL_CHUNK // (n_atoms * n_trans))
    out = np.zeros((len(sites), 3, 3))
    for start in range(0, len(sites), chunk):
        block = sites[start:start + chunk]
        offset = fractional[None, :, :] - fractional[block, None, :]
        offset -= np.round(offset)
        o = offset @ cell  # (s, N, 3): nearest image of atom j seen from site s
        # |o + t|² expanded, so that the (s, N, T, 3) array of all candidates is never built;
        # the distances of the pairs kept are recomputed exactly below.
        r2_all = (np.einsum("snk,snk->sn", o, o)[:, :, None] + 2.0 * (o @ translations.T)
                  + t_norm2[None, None, :])
        flat = np.flatnonzero(r2_all < r_cut**2)
        s_idx, rest = np.divmod(flat, n_atoms * n_trans)
        j_idx, t_idx = np.divmod(rest, n_trans)
        not_self = (j_idx != block[s_idx]) | (t_idx != 0)
        s_idx, j_idx, t_idx = s_idx[not_self], j_idx[not_self], t_idx[not_self]
        d = o[s_idx, j_idx] + translations[t_idx]
        r2 = np.einsum("ek,ek->e", d, d)
        _check_no_coincident_atoms(r2, block[s_idx], j_idx)
        # flatnonzero is ordered, so each site's pairs form one contiguous run of s_idx.
        out[start:start + len(block)] = _segment_sums_to_tensors(
            _screened_pair_terms(d, r2, charges[j_idx], alpha), s_idx, len(block))
    return out


def _screened_pair_terms(d, r2, q, alpha) -> np.ndarray:
    """(E, 7): q C(r) d_a d_b for the upper triangle (xx yy zz xy xz yz), then q B(r)."""
    r = np.sqrt(r2)
    ar = alpha * r
    gauss = (2.0 / np.sqrt(np.pi)) * ar * np.exp(-ar * ar)
    screened = erfc(ar)
    qb = q * (screened + gauss) / (r2 * r)
    qc = q * (3.0 * screened + gauss * (3.0 + 2.0 * ar * ar)) / (r2 * r2 * r)
    terms = np.empty((len(r2), 7))
    for k, (a, b) in enumerate(_UPPER_TRIANGLE):
        terms[:, k] = qc * d[:, a] * d[:, b]
    terms[:, 6] = qb
    return terms


_UPPER_TRIANGLE = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


def _segment_sums_to_tensors(terms: np.ndarray, s_idx: np.ndarray, n_sites: int) -> np.ndarray:
    """Sum the per-pair rows ``terms`` (E, 7) over each site (``s_idx`` sorted) into
    (n_sites, 3, 3) tensors ``Σ q C d⊗d − Σ q B δ``."""
    sums = np.zeros((n_sites, 7))
    if len(s_idx):
        starts = np.flatnonzero(np.r_[True, s_idx[1:] != s_idx[:-1]])
        sums[s_idx[starts]] = np.add.reduceat(terms, starts, axis=0)
    tensor = np.empty((n_sites, 3, 3))
    for k, (a, b) in enumerate(_UPPER_TRIANGLE):
        tensor[:, a, b] = sums[:, k]
        tensor[:, b, a] = sums[:, k]
    tensor -= sums[:, 6, None, None] * np.eye(3)
    return tensor


def _check_no_coincident_atoms(r2: np.ndarray, site: np.ndarray, other: np.ndarray) -> None:
    """No atom (periodic images included) within 1e-4 Å of a site, other than the site itself."""
    close = np.flatnonzero(r2 < 1e-8)
    if close.size:
        k = close[0]
        raise ValueError(f"positions: atoms {int(site[k])} and {int(other[k])} coincide (closer "
                         f"than 1e-4 Å, periodic images included); the point-charge EFG diverges")


def _reciprocal_vectors(cell: np.ndarray, g_cut: float) -> np.ndarray:
    """Reciprocal lattice vectors G (n_G, 3), 1/Å, with 0 < |G| ≤ g_cut, one of each ±G pair."""
    reciprocal = 2.0 * np.pi * np.linalg.inv(cell).T
    m_max = np.floor(g_cut * np.linalg.norm(cell, axis=1) / (2.0 * np.pi)).astype(int)
    ranges = [np.arange(-m, m + 1) for m in m_max]
    m = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, 3)
    upper_half = ((m[:, 0] > 0) | ((m[:, 0] == 0) & (m[:, 1] > 0))
                  | ((m[:, 0] == 0) & (m[:, 1] == 0) & (m[:, 2] > 0)))
    g = m[upper_half] @ reciprocal
    return g[np.einsum("gk,gk->g", g, g) <= g_cut**2]


def _reciprocal_space_sum(cell, positions, charges, sites, alpha, g_cut) -> np.ndarray:
    """(4π/V) Σ_{G≠0} e^{−G²/4α²}/G² (−G_a G_b) Re[S(G) e^{iG·r_i}] (n_sites, 3, 3), in e/Å³."""
    volume = abs(np.linalg.det(cell))
    g = _reciprocal_vectors(cell, g_cut)
    out = np.zeros((len(sites), 9))
    chunk = max(1, _REAL_CHUNK // len(positions))
    for start in range(0, len(g), chunk):
        gb = g[start:start + chunk]
        g2 = np.einsum("gk,gk->g", gb, gb)
        phase = gb @ positions.T  # (n_G, N)
        cos_phase, sin_phase = np.cos(phase), np.sin(phase)
        cos_q = cos_phase @ charges  # Re S(G)
        sin_q = sin_phase @ charges  # −Im S(G)
        # Re[S e^{iθ}] = Re S cos θ − Im S sin θ; each G stands for the pair ±G, hence the 2.
        real_part = cos_q[:, None] * cos_phase[:, sites] + sin_q[:, None] * sin_phase[:, sites]
        weight = 2.0 * (4.0 * np.pi / volume) * np.exp(-g2 / (4.0 * alpha**2)) / g2
        gg = (gb[:, :, None] * gb[:, None, :]).reshape(-1, 9)
        out -= real_part.T @ (weight[:, None] * gg)
    return out.reshape(-1, 3, 3)
