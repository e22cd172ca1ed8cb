"""NMR quantities of electric-field-gradient (EFG) tensors: principal values, V_zz, eta, C_Q,
principal frames and their Euler angles; nuclear quadrupole moments, spins and isotope names.
(NQR transition frequencies: :mod:`pyexport.nqr`; ``.magres`` files: :mod:`pyexport.magres`.)

In the lower layer (``pyexport``) because the data side needs it too: EFG labels from VASP
(``QUAD_EFG``), the EFG model's metrics in C_Q.

Conventions:

- An EFG tensor ``V`` is a (..., 3, 3) array in V/Å², ``V_ab = ∂_a ∂_b φ`` with φ the
  electrostatic potential (a positive charge on the z axis gives V_zz > 0). It is symmetric
  and traceless; every function here symmetrises its input, ``(V + Vᵀ)/2``, and leaves the
  trace alone.
- Principal values are ordered ``|V_zz| ≥ |V_yy| ≥ |V_xx|`` and
  ``eta = (V_xx − V_yy) / V_zz ∈ [0, 1]``. VASP names the two smaller values the other way
  round (``|V_zz| > |V_xx| > |V_yy|``, ``eta = (V_yy − V_xx) / V_zz``): the same V_zz and the
  same eta, with VASP's V_xx being our V_yy.
- ``C_Q = e Q V_zz / h`` in MHz with V_zz signed, as VASP prints it (``Cq=e*Q*V_zz/h``):
  ``C_Q [MHz] = CQ_MHZ_PER_MB_V_PER_A2 · Q [mb] · V_zz [V/Å²]``, the constant derived from the
  CODATA values of e and h (≈ 2.41799e-3).
- Isotopes: C_Q needs the quadrupole moment Q of one isotope (:data:`QUADRUPOLE_MOMENTS`).
  Every command takes them one way, ``--isotope ELEMENT=ISOTOPE`` repeated
  (:func:`parse_isotope_options`), and every other quadrupolar element gets its default
  (:data:`DEFAULT_ISOTOPES`: 79Br, 127I, 133Cs, 14N, 2H, ...; :func:`resolve_isotopes`).
- Six-component (Voigt-like) storage uses VASP's order ``V_xx V_yy V_zz V_xy V_xz V_yz``
  (the OUTCAR table "Electric field gradients (V/A^2)" and ``compute efg/atom``).
- Haeberlen order. NMR software for shielding tensors (and Soprano's default for them) orders
  ``|V_zz − δ_iso| ≥ |V_xx − δ_iso| ≥ |V_yy − δ_iso|`` with ``δ_iso`` = trace/3, and defines
  ``eta_H = (V_yy − V_xx) / (V_zz − δ_iso)``. For a traceless EFG tensor δ_iso = 0: the same
  V_zz, the two smaller values named the other way round (Haeberlen's V_xx is our V_yy), and
  the same eta. This module uses the NQR order throughout (as Soprano does for EFG tensors).
- Orientation (:func:`principal_frame`, :func:`euler_zyz`): the principal axes as the columns
  of a proper rotation ``R`` (det +1, z = x × y), ``V = R diag(V_xx, V_yy, V_zz) Rᵀ``, and
  the Euler angles of ``R`` in the active ZYZ convention, ``R = R_z(α) R_y(β) R_z(γ)``, radians,
  brought to ``β ∈ [0, π/2]``, ``α ∈ [0, 2π)``, ``γ ∈ [0, π)`` with the freedom of an
  eigenvector's sign: Soprano's ``EFGEuler`` default (order NQR, ZYZ, active), which
  MagresView shows too.
- Nuclear spins I (:data:`NUCLEAR_SPINS`) of the isotopes in the table, for the NQR lines
  (:mod:`pyexport.nqr`).
- EFG in atomic units (``.magres`` files, CASTEP): 1 E_h/(e a_0²) =
  :data:`V_PER_A2_PER_EFG_AU` V/Å² (≈ 97.1736), derived from CODATA's E_h, e and a_0.

Degenerate cases: for ``V = 0`` eta is 0 (not NaN). For eta = 1 the two largest principal
values have equal magnitude and opposite sign, so the sign of V_zz (and of C_Q) is a matter of
labelling; this module takes the one of larger magnitude after rounding (the positive one at an
exact tie): reproducible, but not physically meaningful.
"""
import re
from typing import Dict, Iterable, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
from scipy import constants

#: C_Q [MHz] per millibarn per V/Å²: e · (1e-31 m² per mb) · (1e20 V/m² per V/Å²) / h / 1e6.
CQ_MHZ_PER_MB_V_PER_A2 = constants.e * 1e-31 * 1e20 / constants.h / 1e6

#: V/Å² per atomic unit of EFG, E_h / (e a_0²) (Hartree per elementary charge per bohr²), from
#: CODATA's E_h, e and a_0 (≈ 97.1736; CODATA 2018 and 2022 differ by 1.4e-9 relative).
V_PER_A2_PER_EFG_AU = (constants.physical_constants["Hartree energy"][0]
                       / (constants.e * constants.physical_constants["Bohr radius"][0] ** 2) / 1e20)

#: Component order of six-component EFG storage (VASP OUTCAR, ``compute efg/atom``).
VOIGT6_ORDER = ("xx", "yy", "zz", "xy", "xz", "yz")
_VOIGT6_INDEX = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))

PYYKKO_2018 = 'P. Pyykkö, "Year-2017 nuclear quadrupole moments", Mol. Phys. 116, 1328 (2018)'
PYYKKO_2008 = 'P. Pyykkö, "Year-2008 nuclear quadrupole moments", Mol. Phys. 106, 1965 (2008)'


class QuadrupoleMoment(NamedTuple):
    """Nuclear electric quadrupole moment of one isotope (ground state)."""

    q_mb: float  #: Q in millibarn (1 mb = 1e-31 m²), signed
    source: str  #: where the value comes from


#: isotope name ("79Br") -> quadrupole moment. The values of the perovskite work (127I, 79Br, 81Br,
#: 133Cs, 14N, 2H) and 27Al, 17O, 91Zr are the recommended values of Pyykkö 2018; 27Al 146.6 mb
#: is also the value of the VASP wiki's QUAD_EFG example and of the shipped pymatgen OUTCAR.
#: The entries cited to Pyykkö 2008 (23Na, 35Cl, 37Cl, 39K, 85Rb, 87Rb) are that table's values,
#: not re-checked against the 2018 update.
QUADRUPOLE_MOMENTS: Dict[str, QuadrupoleMoment] = {
    "2H": QuadrupoleMoment(2.860, PYYKKO_2018),
    "14N": QuadrupoleMoment(20.44, PYYKKO_2018),
    "17O": QuadrupoleMoment(-25.58, PYYKKO_2018),
    "23Na": QuadrupoleMoment(104.0, PYYKKO_2008),
    "27Al": QuadrupoleMoment(146.6, PYYKKO_2018),
    "35Cl": QuadrupoleMoment(-81.65, PYYKKO_2008),
    "37Cl": QuadrupoleMoment(-64.35, PYYKKO_2008),
    "39K": QuadrupoleMoment(58.5, PYYKKO_2008),
    "79Br": QuadrupoleMoment(313.0, PYYKKO_2018),
    "81Br": QuadrupoleMoment(262.0, PYYKKO_2018),
    "85Rb": QuadrupoleMoment(276.0, PYYKKO_2008),
    "87Rb": QuadrupoleMoment(133.5, PYYKKO_2008),
    "91Zr": QuadrupoleMoment(-176.0, PYYKKO_2018),
    "127I": QuadrupoleMoment(-696.0, PYYKKO_2018),
    "133Cs": QuadrupoleMoment(-3.43, PYYKKO_2018),
}

#: isotope name -> nuclear spin I of its ground state (ħ units), for every isotope of
#: :data:`QUADRUPOLE_MOMENTS`. The values are those listed with the moments in the tables cited
#: there (and N. J. Stone, "Table of nuclear electric quadrupole moments", At. Data Nucl. Data
#: Tables 111-112, 1 (2016)); tests/test_nqr.py compares them with Soprano's isotope data.
NUCLEAR_SPINS: Dict[str, float] = {
    "2H": 1.0, "14N": 1.0, "17O": 2.5, "23Na": 1.5, "27Al": 2.5, "35Cl": 1.5, "37Cl": 1.5,
    "39K": 1.5, "79Br": 1.5, "81Br": 1.5, "85Rb": 2.5, "87Rb": 1.5, "91Zr": 2.5, "127I": 2.5,
    "133Cs": 3.5,
}

#: element -> isotope used when only the element is known. The choice is the quadrupolar isotope
#: NMR work on halide perovskites and their relatives uses: the only one for 127I, 133Cs, 23Na,
#: 27Al; the more abundant one for Br (79Br, 50.7 %), Cl (35Cl), Rb (87Rb, the usual NMR
#: nucleus), K (39K); 14N for N; 2H for H (1H has no quadrupole moment; deuterated samples);
#: 17O and 91Zr, the only quadrupolar stable isotopes of O and Zr.
DEFAULT_ISOTOPES: Dict[str, str] = {
    "H": "2H", "N": "14N", "O": "17O", "Na": "23Na", "Al": "27Al", "Cl": "35Cl", "K": "39K",
    "Br": "79Br", "Rb": "87Rb", "Zr": "91Zr", "I": "127I", "Cs": "133Cs",
}


# --------------------------------------------------------------------------------------------
# Isotopes
# --------------------------------------------------------------------------------------------
def normalize_isotope(name: str) -> str:
    """Return the canonical isotope name ``"<A><Symbol>"`` ("79Br") of ``name``.

    Accepts "79Br", "79br", "Br79", "Br-79", "79-Br" and "D" (deuterium). Does not check that
    the isotope is in :data:`QUADRUPOLE_MOMENTS`.
    """
    text = str(name).strip()
    if text.upper() == "D":
        return "2H"
    match = (re.fullmatch(r"(\d+)\s*-?\s*([A-Za-z]{1,2})", text)
             or re.fullmatch(r"([A-Za-z]{1,2})\s*-?\s*(\d+)", text))
    if match is None:
        raise ValueError(f"isotope {name!r}: expected a name like '79Br' (mass number, symbol)")
    first, second = match.groups()
    mass, symbol = (first, second) if first.isdigit() else (second, first)
    return f"{int(mass)}{symbol.capitalize()}"


def quadrupole_moment_mb(isotope: str) -> float:
    """Nuclear quadrupole moment Q of ``isotope`` ("79Br") in millibarn, from the table."""
    key = normalize_isotope(isotope)
    if key not in QUADRUPOLE_MOMENTS:
        known = ", ".join(sorted(QUADRUPOLE_MOMENTS, key=_isotope_sort_key))
        raise ValueError(f"isotope {isotope!r}: no quadrupole moment in the table "
                         f"(known: {known}); pass Q in millibarn instead")
    return QUADRUPOLE_MOMENTS[key].q_mb


def nuclear_spin(isotope: str) -> float:
    """Nuclear spin I of ``isotope`` ("79Br" -> 1.5, "127I" -> 2.5, "133Cs" -> 3.5)."""
    key = normalize_isotope(isotope)
    if key not in NUCLEAR_SPINS:
        known = ", ".join(sorted(NUCLEAR_SPINS, key=_isotope_sort_key))
        raise ValueError(f"isotope {isotope!r}: no nuclear spin in the table (known: {known})")
    return NUCLEAR_SPINS[key]


def default_isotope(element: str) -> str:
    """The isotope used for ``element`` when none is named (see :data:`DEFAULT_ISOTOPES`).

    Br -> 79Br, I -> 127I, Cs -> 133Cs, N -> 14N, H -> 2H, Cl -> 35Cl, ... Elements without a
    quadrupolar isotope in the table (Pb, Sn, C, ...) raise ``ValueError``.
    """
    symbol = str(element).strip().capitalize()
    if symbol not in DEFAULT_ISOTOPES:
        known = ", ".join(f"{el} -> {iso}" for el, iso in DEFAULT_ISOTOPES.items())
        raise ValueError(f"element {element!r}: no default quadrupolar isotope "
                         f"(known: {known}); name the isotope explicitly")
    return DEFAULT_ISOTOPES[symbol]


def isotope_element(isotope: str) -> str:
    """Element symbol of an isotope name: "79Br" -> "Br", "D" -> "H"."""
    return re.sub(r"\d", "", normalize_isotope(isotope))


def parse_isotope_option(text: str, option: str = "--isotope") -> Tuple[str, str]:
    """One value of the ``--isotope`` option, ``ELEMENT=ISOTOPE`` -> (element, isotope).

    The one grammar of every command that takes isotopes: ``--isotope Br=81Br``, repeated for
    more elements (``--isotope Br=81Br --isotope Cs=133Cs``). The isotope is written as
    :func:`normalize_isotope` accepts it ("81Br", "Br-81", "D") and must be an isotope of the
    element with a quadrupole moment in :data:`QUADRUPOLE_MOMENTS`; errors name ``option``.
    """
    if "," in str(text):
        raise ValueError(f"{option} {text}: one ELEMENT=ISOTOPE per {option}; repeat the option "
                         f"for more elements ({option} Br=79Br {option} Cs=133Cs)")
    element, equals, isotope = str(text).partition("=")
    element, isotope = element.strip(), isotope.strip()
    if not equals or not element or not isotope:
        raise ValueError(f"{option} {text!r}: expected ELEMENT=ISOTOPE, e.g. {option} Br=81Br")
    try:
        name = normalize_isotope(isotope)
        quadrupole_moment_mb(name)
    except ValueError as exc:
        raise ValueError(f"{option} {text}: {exc}") from None
    if isotope_element(name) != element:
        raise ValueError(f"{option} {text}: {name} is not an isotope of {element}")
    return element, name


def parse_isotope_options(values: Iterable[str], option: str = "--isotope") -> Dict[str, str]:
    """{element: isotope} from the repeated ``--isotope ELEMENT=ISOTOPE`` values (see
    :func:`parse_isotope_option`), in the order given; an element named twice is an error."""
    chosen: Dict[str, str] = {}
    for text in values:
        element, isotope = parse_isotope_option(text, option)
        if element in chosen and chosen[element] != isotope:
            raise ValueError(f"{option}: {element} named twice ({chosen[element]}, {isotope})")
        chosen[element] = isotope
    return chosen


def resolve_isotopes(elements: Sequence[str], chosen: Optional[Mapping[str, str]] = None,
                     option: str = "--isotope") -> Dict[str, str]:
    """{element: isotope} for the quadrupolar elements among ``elements``.

    ``chosen`` {element: isotope} (e.g. from :func:`parse_isotope_options`) comes first, in its
    order; the other elements follow in ``elements`` order with their :func:`default_isotope`;
    elements without one (Pb, C, ...) are left out. A chosen element that is not in
    ``elements``, or an isotope that is not of its element or has no quadrupole moment, is an
    error naming ``option``.
    """
    if isinstance(chosen, str):
        raise TypeError(f"isotopes={chosen!r}: expected a mapping {{element: isotope}}, "
                        f"e.g. {{'Br': '81Br'}}")
    elements = list(dict.fromkeys(elements))
    isotopes: Dict[str, str] = {}
    for element, isotope in (chosen or {}).items():
        element, isotope = parse_isotope_option(f"{element}={isotope}", option)
        if element not in elements:
            raise ValueError(f"{option} {element}={isotope}: there is no {element} here "
                             f"(elements: {', '.join(elements)})")
        isotopes[element] = isotope
    for element in elements:
        if element not in isotopes and element in DEFAULT_ISOTOPES:
            isotopes[element] = default_isotope(element)
    return isotopes


def _isotope_sort_key(name: str) -> Tuple[str, int]:
    mass, symbol = re.fullmatch(r"(\d+)([A-Za-z]+)", name).groups()
    return symbol, int(mass)


# --------------------------------------------------------------------------------------------
# Tensors
# --------------------------------------------------------------------------------------------
def _as_tensor(V, name: str = "V") -> np.ndarray:
    """``V`` as a float (..., 3, 3) array, symmetrised."""
    array = np.asarray(V, dtype=float)
    if array.ndim < 2 or array.shape[-2:] != (3, 3):
        raise ValueError(f"{name}: expected an array of shape (..., 3, 3), got {array.shape}")
    return 0.5 * (array + np.swapaxes(array, -1, -2))


def principal_axes(V) -> Tuple[np.ndarray, np.ndarray]:
    """Principal values and axes of the (..., 3, 3) EFG tensors ``V`` (V/Å²).

    Returns ``(values, axes)``: ``values`` (..., 3) = (V_xx, V_yy, V_zz) ordered
    ``|V_zz| ≥ |V_yy| ≥ |V_xx|``; ``axes`` (..., 3, 3) with ``axes[..., :, k]`` the unit
    eigenvector of ``values[..., k]`` (sign arbitrary).
    """
    tensor = _as_tensor(V)
    values, vectors = np.linalg.eigh(tensor)
    order = np.argsort(np.abs(values), axis=-1, kind="stable")
    values = np.take_along_axis(values, order, axis=-1)
    vectors = np.take_along_axis(vectors, order[..., None, :], axis=-1)
    return values, vectors


def principal_frame(V) -> Tuple[np.ndarray, np.ndarray]:
    """Principal values and a right-handed principal frame of the (..., 3, 3) tensors ``V``.

    Returns ``(values, R)``: ``values`` (..., 3) = (V_xx, V_yy, V_zz) in the NQR order
    ``|V_zz| ≥ |V_yy| ≥ |V_xx|`` (V/Å² for V/Å² input); ``R`` (..., 3, 3) a proper rotation whose
    columns are the unit x, y, z principal axes in the input's Cartesian frame, z = x × y, so that
    ``V = R diag(values) Rᵀ``. Each axis is defined up to its sign (two of them may flip
    together); where two principal values are equal their axes are any orthonormal pair of
    that plane.
    """
    values, axes = principal_axes(V)
    axes = axes.copy()
    axes[..., :, 2] = np.cross(axes[..., :, 0], axes[..., :, 1])
    return values, axes


def euler_zyz(R) -> np.ndarray:
    """Active ZYZ Euler angles (α, β, γ), radians, of the principal frames ``R`` (..., 3, 3).

    ``R = R_z(α) R_y(β) R_z(γ)`` (rotations about the fixed-then-moved axes: R_z(α) last),
    with ``R`` from :func:`principal_frame`: the rotation that carries the Cartesian axes onto
    the principal axes. Because each principal axis is defined up to sign, the four proper
    frames ``R·diag(s_x, s_y, s_z)`` with ``s_x s_y s_z = 1`` describe the same tensor; the one
    returned has ``β ∈ [0, π/2]``, ``γ ∈ [0, π)``, ``α ∈ [0, 2π)`` (Soprano's normalisation of
    active ZYZ angles for NMR tensors). At β = 0 only α + γ is defined: α = 0 is taken; at
    β = π/2 two of the four remain (α, γ and α + π, π − γ), told apart by rounding. Returns (..., 3).
    """
    R = np.asarray(R, dtype=float)
    if R.ndim < 2 or R.shape[-2:] != (3, 3):
        raise ValueError(f"R: expected an array of shape (..., 3, 3), got {R.shape}")
    det = np.linalg.det(R)
    if not np.allclose(det, 1.0, atol=1e-8):
        raise ValueError("R: not a proper rotation (det ≠ +1); take it from principal_frame")
    # R·diag(1, -1, -1) = R_z(α + π) R_y(π − β) R_z(−γ): choose the frame with R_zz ≥ 0 (β ≤ π/2)
    flip = R[..., 2, 2] < 0
    R = np.where(flip[..., None, None], R * np.array([1.0, -1.0, -1.0]), R)
    beta = np.arccos(np.clip(R[..., 2, 2], -1.0, 1.0))
    sin_beta = np.sin(beta)
    axial = sin_beta < 1e-12
    alpha = np.where(axial, 0.0, np.arctan2(R[..., 1, 2], R[..., 0, 2]))
    gamma = np.where(axial, np.arctan2(R[..., 1, 0], R[..., 0, 0]),
                     np.arctan2(R[..., 2, 1], -R[..., 2, 0]))
    # R·diag(-1, -1, 1) = R_z(α) R_y(β) R_z(γ + π): γ modulo π
    gamma = np.mod(gamma, np.pi)
    alpha = np.mod(alpha, 2.0 * np.pi)
    gamma = np.where(np.isclose(gamma, np.pi, rtol=0, atol=1e-12), 0.0, gamma)
    alpha = np.where(np.isclose(alpha, 2.0 * np.pi, rtol=0, atol=1e-12), 0.0, alpha)
    return np.stack([alpha, beta, gamma], axis=-1)


def rotation_zyz(angles) -> np.ndarray:
    """The rotation ``R_z(α) R_y(β) R_z(γ)`` (..., 3, 3) of Euler angles (..., 3) in radians
    (the inverse of :func:`euler_zyz` up to the principal axes' signs)."""
    angles = np.asarray(angles, dtype=float)
    alpha, beta, gamma = angles[..., 0], angles[..., 1], angles[..., 2]

    def about_z(t):
        c, s, o, z = np.cos(t), np.sin(t), np.ones_like(t), np.zeros_like(t)
        return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)

    def about_y(t):
        c, s, o, z = np.cos(t), np.sin(t), np.ones_like(t), np.zeros_like(t)
        return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)

    return about_z(alpha) @ about_y(beta) @ about_z(gamma)


def principal(V) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Principal values ``(V_xx, V_yy, V_zz)`` of the (..., 3, 3) tensors ``V`` (V/Å²).

    Ordered ``|V_zz| ≥ |V_yy| ≥ |V_xx|``; each output has the leading shape of ``V``.
    """
    values = np.linalg.eigvalsh(_as_tensor(V))
    order = np.argsort(np.abs(values), axis=-1, kind="stable")
    values = np.take_along_axis(values, order, axis=-1)
    return values[..., 0], values[..., 1], values[..., 2]


def vzz(V) -> np.ndarray:
    """V_zz (V/Å², signed), the principal value of largest magnitude of each tensor in ``V``."""
    return principal(V)[2]


def eta_from_principal(vxx, vyy, vzz_) -> np.ndarray:
    """Asymmetry ``(V_xx − V_yy) / V_zz`` from ordered principal values; 0 where V_zz = 0."""
    vxx, vyy, vzz_ = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (vxx, vyy, vzz_)))
    out = np.zeros(vzz_.shape)
    np.divide(vxx - vyy, vzz_, out=out, where=vzz_ != 0.0)
    return out


def eta(V) -> np.ndarray:
    """Asymmetry parameter ``eta = (V_xx − V_yy) / V_zz`` ∈ [0, 1] of the (..., 3, 3) tensors.

    0 for a zero tensor. For traceless input eta lies in [0, 1] up to rounding; a tensor whose
    trace is not small compared with V_zz can give values outside.
    """
    return eta_from_principal(*principal(V))


def cq_mhz(V, isotope: Union[str, float]) -> np.ndarray:
    """Quadrupole coupling constant ``C_Q = e Q V_zz / h`` in MHz (signed, VASP's ``Cq``).

    ``V``: (..., 3, 3) EFG tensors in V/Å². ``isotope``: an isotope name from
    :data:`QUADRUPOLE_MOMENTS` ("79Br"), or the quadrupole moment Q itself in millibarn (a
    number, e.g. the value given to VASP's QUAD_EFG, or an array broadcasting against the
    leading shape of ``V``, one Q per tensor). Returns the leading shape of ``V``.
    """
    if isinstance(isotope, str):
        q_mb = quadrupole_moment_mb(isotope)
    else:
        q_mb = np.asarray(isotope, dtype=float)
    return CQ_MHZ_PER_MB_V_PER_A2 * q_mb * vzz(V)


# --------------------------------------------------------------------------------------------
# Six-component storage
# --------------------------------------------------------------------------------------------
def to_voigt6(V) -> np.ndarray:
    """(..., 3, 3) tensors -> (..., 6) in VASP order ``xx yy zz xy xz yz`` (symmetrised)."""
    tensor = _as_tensor(V)
    return np.stack([tensor[..., a, b] for a, b in _VOIGT6_INDEX], axis=-1)


def from_voigt6(v6) -> np.ndarray:
    """(..., 6) in VASP order ``xx yy zz xy xz yz`` -> symmetric (..., 3, 3) tensors."""
    array = np.asarray(v6, dtype=float)
    if array.ndim < 1 or array.shape[-1] != 6:
        raise ValueError(f"v6: expected an array of shape (..., 6), got {array.shape}")
    tensor = np.empty(array.shape[:-1] + (3, 3))
    for k, (a, b) in enumerate(_VOIGT6_INDEX):
        tensor[..., a, b] = array[..., k]
        tensor[..., b, a] = array[..., k]
    return tensor
