"""Harmonic baseline: phonopy phonons of an exported potential, harmonic sampling at T, and the
energy along unstable modes.

    efg harmonic --potential potential.pt --structure POSCAR --supercell 4 4 4 \\
        --temperatures 100:500:50 [--efg-model efg.pt --isotope Br=79Br] -o harmonic.json

The potential is the same ``.pt`` file that ``pair_style mlff`` runs, evaluated through
:class:`pyexport.calculator.MLFFCalculator`; the EFG model (optional) is evaluated with
:func:`pyexport.efg_eval.predict_efg`. Steps and outputs (one JSON file, PNGs beside it):

1. Force constants by finite displacements (phonopy, symmetry from spglib), the forces of the
   undisplaced supercell subtracted; translational and permutation symmetry imposed.
2. Phonon bands along the standard path of the primitive cell's Bravais lattice (ASE's
   Setyawan–Curtarolo paths; Γ-X-M-Γ-R-X|M-R for simple cubic) and the DOS on a mesh
   (``<stem>_bands.png``).
3. Imaginary modes listed explicitly: at the path's special points (with the irreducible
   representation where phonopy names it, i.e. at Γ), at every q-point commensurate with the
   supercell, and on the mesh; the band path's lowest frequency. Frequencies below
   ``-imaginary_tolerance`` count as imaginary and appear as negative numbers, as phonopy writes
   them. Thermal properties use real modes only, and a warning says how many were left out.
4. Harmonic canonical sampling of the supercell at each temperature, classical
   (normal-mode variance kT/ω²) and quantum (ħ/2ω · coth(ħω/2kT)) statistics, through phonopy's
   ``RandomDisplacements``. Imaginary modes, the three acoustic modes at Γ and modes with
   |f| ≤ tolerance are not sampled; the JSON lists every mode left out and why.
5. Mean-square displacement tensors ⟨u uᵀ⟩ (Å²) per site of the input structure: from phonopy's
   eigenvectors on the q-points of the supercell (the exact expectation of the samples), on the
   dense mesh (the converged harmonic value), and from the samples (mean ± standard error);
   ``<stem>_msd.png``.
6. With an EFG model: per site and per species, the sample-averaged tensor ⟨V⟩ (V/Å²), C_Q(⟨V⟩)
   and eta(⟨V⟩) (the fast-motion NMR values), ⟨C_Q⟩, ⟨|C_Q|⟩ and ⟨eta⟩, all with standard
   errors, under the keys ``efg analyze`` uses for MD frames (a site here is a site of the input
   structure, averaged over its supercell images); the static EFG of the structure alongside.
7. Energy along each unstable mode at a commensurate q-point (one per degenerate set and
   q-star; at most ``max_unstable_curves``, special points first, the rest listed) and along any
   mode the user names: the potential's real curve next to the harmonic parabola ½ω²Q²
   (``<stem>_modes.png``). :func:`mode_energy_curve` does this from Python.

Units: Å, eV, amu; frequencies f in THz (ordinary frequency, phonopy's factor for eV/Å²/amu);
mode eigenvalues ω² in eV/(Å² amu); normal-mode amplitudes Q in amu^½·Å (so that E = ½ω²Q²);
MSD in Å²; EFG in V/Å²; C_Q in MHz; temperatures in K.
"""
from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms, units

from pyexport.nmr import cq_mhz, eta, from_voigt6, quadrupole_moment_mb, resolve_isotopes, to_voigt6, vzz
from pyexport.outputs import refuse_overwriting_inputs, write_json

from efg.statistics import jackknife

# torch (through pyexport), phonopy, tqdm and matplotlib are imported inside the functions that
# use them, so that building the `efg` command line stays fast.

#: Frequencies whose magnitude is at most this (THz) are zero within numerical noise.
DEFAULT_IMAGINARY_TOLERANCE_THZ = 0.01
#: Default finite-displacement amplitude (Å), phonopy's default.
DEFAULT_DISPLACEMENT_A = 0.01
STATISTICS = ("classical", "quantum")


class HarmonicWarning(UserWarning):
    """Something in the harmonic baseline the user must know: imaginary modes left out of
    thermal properties or sampling, a structure away from equilibrium."""


def _phonopy_thz_factor() -> float:
    """THz per sqrt(eV/(Å² amu)): phonopy's default conversion (VaspToTHz)."""
    try:
        from phonopy.physical_units import get_physical_units
        return float(get_physical_units().DefaultToTHz)
    except ImportError:   # older phonopy
        from phonopy.units import VaspToTHz
        return float(VaspToTHz)


def eigenvalue_from_frequency(frequency_thz) -> np.ndarray:
    """Mode eigenvalue ω² in eV/(Å² amu) from phonopy's signed frequency (THz); negative for
    imaginary modes."""
    f = np.asarray(frequency_thz, dtype=float)
    return np.sign(f) * (f / _phonopy_thz_factor()) ** 2


def angular_frequency_ase(frequency_thz) -> np.ndarray:
    """ω = 2πf in ASE's inverse time unit (1/(Å·sqrt(amu/eV))) from f in THz."""
    return 2.0 * np.pi * np.asarray(frequency_thz, dtype=float) * 1e12 / units.s


# --------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------
def read_structure(path) -> Atoms:
    """Read a structure file (POSCAR/CONTCAR, CIF, extxyz, ... any format ASE reads) and check
    that it is periodic in 3D."""
    from ase.io import read

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"structure file not found: {path}")
    try:
        atoms = read(path)
    except Exception as exc:   # ASE raises many types for unreadable files
        raise ValueError(f"{path}: cannot read the structure ({type(exc).__name__}: {exc})") from None
    check_periodic(atoms, path)
    return atoms


def check_periodic(atoms: Atoms, where: str = "structure") -> None:
    """Raise ``ValueError`` unless ``atoms`` is periodic in all three directions with a
    3D cell of positive volume."""
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if not pbc.all():
        raise ValueError(f"{where}: the harmonic baseline needs a structure periodic in 3D, "
                         f"got pbc={pbc.tolist()}")
    if atoms.cell.rank != 3 or abs(atoms.get_volume()) < 1e-9:
        raise ValueError(f"{where}: the cell is not three-dimensional (cell={atoms.cell.array.tolist()})")


def check_elements(atoms: Atoms, elements: Sequence[str], where: str, model: str) -> None:
    """Raise ``ValueError`` naming ``where`` and ``model`` for elements the model lacks."""
    missing = sorted(set(atoms.get_chemical_symbols()) - set(elements))
    if missing:
        raise ValueError(f"{where}: element(s) {missing} are not in the model {model} "
                         f"(model elements: {list(elements)})")


def parse_temperatures(text) -> np.ndarray:
    """Temperatures (K) from ``"100:500:50"`` (start:stop:step, stop included), ``"100,300"``
    or a single number; each must be positive."""
    if isinstance(text, (int, float)):
        values = [float(text)]
    elif isinstance(text, str) and ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise ValueError(f"temperatures {text!r}: expected start:stop:step, e.g. 100:500:50")
        start, stop, step = (float(p) for p in parts)
        if step <= 0 or stop < start:
            raise ValueError(f"temperatures {text!r}: need step > 0 and stop >= start")
        n = int(math.floor((stop - start) / step + 1e-9)) + 1
        values = list(start + step * np.arange(n))
    elif isinstance(text, str):
        values = [float(v) for v in text.replace(",", " ").split()]
    else:
        values = [float(v) for v in text]
    temps = np.asarray(values, dtype=float)
    if temps.size == 0 or not np.all(temps > 0):
        raise ValueError(f"temperatures {text!r}: need at least one temperature, all > 0 K")
    return temps


def parse_supercell_matrix(values) -> np.ndarray:
    """(3, 3) int supercell matrix from 1, 3 or 9 integers (ASE convention: supercell lattice
    vectors, as rows, = matrix @ input lattice vectors)."""
    flat = np.asarray(values, dtype=float).ravel()
    if flat.size == 1:
        flat = np.repeat(flat, 3)
    if flat.size == 3:
        matrix = np.diag(flat)
    elif flat.size == 9:
        matrix = flat.reshape(3, 3)
    else:
        raise ValueError(f"supercell {list(values)}: expected 1, 3 or 9 integers")
    if not np.allclose(matrix, np.rint(matrix)):
        raise ValueError(f"supercell {list(values)}: entries must be integers")
    matrix = np.rint(matrix).astype(int)
    if round(np.linalg.det(matrix)) < 1:
        raise ValueError(f"supercell {list(values)}: the matrix must have a positive determinant")
    return matrix


# --------------------------------------------------------------------------------------------
# phonopy plumbing
# --------------------------------------------------------------------------------------------
def to_phonopy_atoms(atoms: Atoms):
    from phonopy.structure.atoms import PhonopyAtoms
    return PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=np.array(atoms.cell.array),
                        scaled_positions=atoms.get_scaled_positions(wrap=False),
                        masses=atoms.get_masses())


def to_ase_atoms(cell) -> Atoms:
    """ASE ``Atoms`` (periodic) of a phonopy cell, masses kept."""
    return Atoms(symbols=list(cell.symbols), cell=np.array(cell.cell),
                 scaled_positions=np.array(cell.scaled_positions), masses=np.array(cell.masses),
                 pbc=True)


def build_phonopy(atoms: Atoms, supercell: np.ndarray, primitive_matrix="auto",
                  symprec: float = 1e-5):
    """A ``Phonopy`` object for ``atoms`` (masses from ``atoms``) and the supercell matrix in
    ASE convention (rows of the supercell lattice = ``supercell @ atoms.cell``)."""
    from phonopy import Phonopy

    with warnings.catch_warnings():
        # phonopy >= 4 warns that "auto" may differ from older defaults; we ask for it.
        warnings.filterwarnings("ignore", message="primitive_matrix defaulted")
        return Phonopy(to_phonopy_atoms(atoms), supercell_matrix=np.asarray(supercell).T,
                       primitive_matrix=primitive_matrix, symprec=symprec)


def compute_force_constants(phonon, calc, displacement: float = DEFAULT_DISPLACEMENT_A,
                            progress: bool = False) -> dict:
    """Finite-displacement force constants of ``phonon``'s supercell with the ASE calculator
    ``calc``. The forces of the undisplaced supercell are subtracted from every displaced set
    (so a structure slightly off equilibrium gives the Hessian about itself), then translational
    and permutation symmetry are imposed. Returns a summary for the report."""
    from tqdm import tqdm

    phonon.generate_displacements(distance=displacement)
    cells = phonon.supercells_with_displacements
    reference = _forces(to_ase_atoms(phonon.supercell), calc)
    forces = [(_forces(to_ase_atoms(cell), calc) - reference)
              for cell in tqdm(cells, desc="force constants", unit="displacement", disable=not progress)]
    phonon.forces = np.array(forces)
    phonon.produce_force_constants()
    phonon.symmetrize_force_constants()
    return {"n_displacements": len(cells), "displacement_A": float(displacement),
            "max_residual_force_eV_per_A": float(np.abs(reference).max()),
            "residual_forces_subtracted": True, "symmetrized": "translational + permutation (phonopy)"}


def _forces(atoms: Atoms, calc) -> np.ndarray:
    atoms.calc = calc
    return np.array(atoms.get_forces())


def phonopy_supercell_matrix_of_primitive(phonon) -> np.ndarray:
    """(3, 3) int S with supercell lattice rows = S @ primitive lattice rows."""
    s = phonon.supercell.cell @ np.linalg.inv(phonon.primitive.cell)
    return np.rint(s).astype(int)


def commensurate_qpoints(phonon) -> np.ndarray:
    """(n, 3) q-points (primitive reciprocal basis) commensurate with the supercell."""
    from phonopy.harmonic.dynmat_to_fc import get_commensurate_points
    return np.array(get_commensurate_points(phonopy_supercell_matrix_of_primitive(phonon).T))


def phonons_at(phonon, qpoints, with_eigenvectors: bool = False):
    """(frequencies (n_q, n_band) THz, eigenvectors (n_q, n_band, n_band) or None) at q-points;
    eigenvectors are columns, phonopy's convention."""
    qp = phonon.run_qpoints(np.reshape(qpoints, (-1, 3)), with_eigenvectors=with_eigenvectors)
    freqs = np.array(qp.frequencies)
    vecs = np.array(qp.eigenvectors) if with_eigenvectors else None
    return freqs, vecs


# --------------------------------------------------------------------------------------------
# Sites
# --------------------------------------------------------------------------------------------
@dataclass
class SiteMap:
    """Bookkeeping between the input structure (unit cell), phonopy's primitive cell and the
    supercell."""

    unit_of_supercell: np.ndarray        # (N_sc,) input-structure site of each supercell atom
    primitive_of_unit: np.ndarray        # (n_unit,) primitive atom of each input site
    symbols: List[str]                   # (n_unit,)

    @classmethod
    def of(cls, phonon) -> "SiteMap":
        sc, prim = phonon.supercell, phonon.primitive
        u2u = sc.u2u_map
        unit_of_sc = np.array([u2u[s] for s in sc.s2u_map], dtype=int)
        p2p = prim.p2p_map
        prim_of_unit = np.array([p2p[prim.s2p_map[s]] for s in sc.u2s_map], dtype=int)
        return cls(unit_of_sc, prim_of_unit, list(phonon.unitcell.symbols))

    @property
    def n_sites(self) -> int:
        return len(self.symbols)

    def averaging_matrix(self) -> np.ndarray:
        """(n_sites, N_sc): row s averages over the supercell images of site s."""
        w = np.zeros((self.n_sites, len(self.unit_of_supercell)))
        w[self.unit_of_supercell, np.arange(len(self.unit_of_supercell))] = 1.0
        return w / w.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------------------------
# Band structure, special points, imaginary modes
# --------------------------------------------------------------------------------------------
def standard_band_path(primitive_cell: np.ndarray) -> Tuple[List[List[str]], Dict[str, np.ndarray]]:
    """Standard path of the Bravais lattice of ``primitive_cell`` (rows, Å), from ASE
    (Setyawan & Curtarolo 2010): ([[label, ...], ...] connected pieces, {label: q in the
    primitive reciprocal basis})."""
    from ase.cell import Cell
    from ase.dft.kpoints import parse_path_string

    bandpath = Cell(primitive_cell).bandpath(npoints=0)
    return parse_path_string(bandpath.path), {k: np.array(v) for k, v in bandpath.special_points.items()}


def _pretty(label: str) -> str:
    return "Γ" if label == "G" else label


def band_structure(phonon, npoints: int = 51) -> dict:
    """Bands along the standard path: segments with q-points, distances (1/Å, phonopy's
    reciprocal metric without 2π) and frequencies (THz)."""
    from phonopy.phonon.band_structure import get_band_qpoints_and_path_connections

    pieces, points = standard_band_path(phonon.primitive.cell)
    paths = [[points[label] for label in piece] for piece in pieces]
    qpoints, connections = get_band_qpoints_and_path_connections(paths, npoints=npoints)
    labels = [_pretty(label) for piece in pieces for label in piece]
    bs = phonon.run_band_structure(qpoints, path_connections=connections, labels=labels)
    segments = []
    k = 0
    for piece in pieces:
        for a, b in zip(piece[:-1], piece[1:]):
            segments.append({"from": _pretty(a), "to": _pretty(b),
                             "qpoints": np.array(bs.qpoints[k]), "distances": np.array(bs.distances[k]),
                             "frequencies_THz": np.array(bs.frequencies[k])})
            k += 1
    freqs = np.concatenate([s["frequencies_THz"] for s in segments])
    return {"path": [[_pretty(l) for l in piece] for piece in pieces],
            "special_points": {_pretty(k): v for k, v in points.items()},
            "segments": segments, "min_frequency_THz": float(freqs.min())}


def degenerate_sets(frequencies: np.ndarray, tolerance: float = 1e-4) -> List[List[int]]:
    """Band indices grouped into sets of equal frequency (within ``tolerance`` THz)."""
    sets: List[List[int]] = []
    for band, f in enumerate(frequencies):
        if sets and abs(f - frequencies[sets[-1][-1]]) <= tolerance:
            sets[-1].append(band)
        else:
            sets.append([band])
    return sets


def irrep_labels(phonon, qpoint) -> Optional[Dict[int, str]]:
    """{band: irreducible-representation label} at Γ, where phonopy has character tables for
    the point group; None elsewhere (phonopy names irreps at Γ only)."""
    from phonopy.phonon.irreps import IrRepLabels

    q = np.asarray(qpoint, dtype=float)
    if not np.allclose(q - np.rint(q), 0.0, atol=1e-8):
        return None
    try:
        ir = phonon.run_irreps(q)
        labels = IrRepLabels(ir.characters, ir.conventional_rotations,
                             phonon.primitive_symmetry.pointgroup_symbol, False).irrep_labels
    except Exception:   # phonopy raises RuntimeError/KeyError for groups without tables
        return None
    return {int(band): label for deg_set, label in zip(ir.band_indices, labels or []) for band in deg_set}


def modes_at_points(phonon, qpoints, labels, tolerance: float) -> List[dict]:
    """Frequencies at each q-point, and the imaginary ones (f < -tolerance) listed with their
    degenerate set and irrep label (None where phonopy has none)."""
    freqs, _ = phonons_at(phonon, qpoints)
    out = []
    for q, label, f in zip(np.reshape(qpoints, (-1, 3)), labels, freqs):
        imaginary = []
        irreps = irrep_labels(phonon, q) if np.any(f < -tolerance) else None
        for deg_set in degenerate_sets(f):
            if f[deg_set[0]] < -tolerance:
                for band in deg_set:
                    imaginary.append({"band_index": band, "frequency_THz": float(f[band]),
                                      "degenerate_bands": deg_set,
                                      "irrep": (irreps or {}).get(band)})
        out.append({"label": label, "qpoint": q, "frequencies_THz": f, "imaginary": imaginary})
    return out


# --------------------------------------------------------------------------------------------
# Mesh: DOS and thermal properties from real modes
# --------------------------------------------------------------------------------------------
def mesh_properties(phonon, mesh, temperatures: np.ndarray, tolerance: float) -> dict:
    """DOS and quantum thermal properties on a Γ-centred mesh (``mesh``: three ints or a length
    in Å, phonopy's convention). Imaginary modes (f < -tolerance) are excluded from the thermal
    properties, with a :class:`HarmonicWarning` that counts them; they are listed per
    irreducible q-point."""
    phonon.run_mesh(mesh, is_gamma_center=True)
    m = phonon.mesh
    freqs, weights = np.array(m.frequencies), np.array(m.weights)
    n_modes = int(weights.sum() * freqs.shape[1])
    imaginary = freqs < -tolerance
    near_zero = np.abs(freqs) <= tolerance
    n_imag = int((imaginary * weights[:, None]).sum())
    n_zero = int((near_zero * weights[:, None]).sum())
    listed = [{"qpoint": m.qpoints[i], "weight": int(weights[i]), "band_index": int(b),
               "frequency_THz": float(freqs[i, b])}
              for i, b in zip(*np.nonzero(imaginary))]
    warning = None
    if n_imag:
        warning = (f"thermal properties: {n_imag} of {n_modes} phonon modes on the "
                   f"{'x'.join(str(int(n)) for n in m.mesh_numbers)} mesh are imaginary "
                   f"(f < -{tolerance:g} THz, lowest {freqs.min():.3f} THz) and were excluded; "
                   f"free energy, entropy and heat capacity are sums over the "
                   f"{n_modes - n_imag - n_zero} real modes only")
        warnings.warn(warning, HarmonicWarning, stacklevel=2)
    tp = phonon.run_thermal_properties(temperatures=temperatures, cutoff_frequency=tolerance)
    phonon.run_total_dos()
    dos = phonon.total_dos
    return {
        "mesh": [int(n) for n in m.mesh_numbers],
        "n_modes": n_modes, "n_imaginary": n_imag, "n_near_zero": n_zero,
        "imaginary_modes": listed, "warning": warning,
        "thermal_properties": {
            "statistics": "quantum", "per": "mole of primitive cells",
            "modes_included": f"f > {tolerance:g} THz (imaginary and zero modes excluded)",
            "temperatures_K": np.array(tp.temperatures),
            "free_energy_kJ_per_mol": np.array(tp.thermal_properties[1]),
            "entropy_J_per_K_mol": np.array(tp.thermal_properties[2]),
            "heat_capacity_J_per_K_mol": np.array(tp.thermal_properties[3]),
        },
        "dos": {"frequencies_THz": np.array(dos.frequency_points), "dos_states_per_THz": np.array(dos.dos)},
    }


# --------------------------------------------------------------------------------------------
# Mean-square displacements from modes
# --------------------------------------------------------------------------------------------
def mode_variance(frequency_thz, temperature: float, statistics: str) -> np.ndarray:
    """⟨Q²⟩ of a harmonic normal mode (amu Å²) at ``temperature`` K: classical kT/ω², quantum
    ħ/(2ω) coth(ħω/2kT). ``frequency_thz`` must be positive."""
    omega = angular_frequency_ase(frequency_thz)
    kt = units.kB * temperature
    if statistics == "classical":
        return kt / omega ** 2
    if statistics == "quantum":
        hbar = units._hbar / units._e * units.s    # eV × ASE time
        x = hbar * omega / (2.0 * kt)
        return hbar / (2.0 * omega) / np.tanh(x)
    raise ValueError(f"statistics must be one of {STATISTICS}, got {statistics!r}")


def included_modes(qpoints: np.ndarray, frequencies: np.ndarray, tolerance: float) -> np.ndarray:
    """(n_q, n_band) bool: modes that enter MSD sums and sampling: f > tolerance, and not one of
    the three acoustic modes at Γ (the three of smallest |f| there)."""
    keep = frequencies > tolerance
    for i, q in enumerate(np.reshape(qpoints, (-1, 3))):
        if np.allclose(q - np.rint(q), 0.0, atol=1e-8):
            keep[i, np.argsort(np.abs(frequencies[i]))[:3]] = False
    return keep


def msd_from_modes(qpoints, frequencies, eigenvectors, masses, temperatures, statistics: str,
                   tolerance: float, weights=None) -> np.ndarray:
    """Mean-square displacement tensors (n_T, n_prim, 3, 3) Å² of the primitive atoms:
    ``Σ_q w_q Σ_ν ⟨Q²⟩ Re(e e†) / (m Σ_q w_q)`` over the included modes (:func:`included_modes`).
    ``eigenvectors`` (n_q, 3 n_prim, n_band), columns; ``masses`` (n_prim,) amu."""
    qpoints = np.reshape(qpoints, (-1, 3))
    frequencies = np.asarray(frequencies)
    n_q, n_band = frequencies.shape
    weights = np.ones(n_q) if weights is None else np.asarray(weights, dtype=float)
    keep = included_modes(qpoints, frequencies, tolerance)
    safe = np.where(keep, frequencies, 1.0)
    n_prim = len(masses)
    e = np.asarray(eigenvectors).reshape(n_q, n_prim, 3, n_band)
    outer = np.einsum("qpab,qpcb->qbpac", e, e.conj()).real       # (n_q, n_band, n_prim, 3, 3)
    out = np.zeros((len(temperatures), n_prim, 3, 3))
    for it, t in enumerate(temperatures):
        var = np.where(keep, mode_variance(safe, t, statistics), 0.0) * weights[:, None]
        out[it] = np.einsum("qb,qbpac->pac", var, outer)
    return out / (np.asarray(masses, dtype=float)[None, :, None, None] * weights.sum())


def phonopy_msd(phonon, qpoints, temperatures, statistics: str, tolerance: float) -> np.ndarray:
    """:func:`msd_from_modes` with phonopy's eigenvectors at ``qpoints`` (full set, equal
    weights): (n_T, n_prim, 3, 3) Å²."""
    freqs, vecs = phonons_at(phonon, qpoints, with_eigenvectors=True)
    return msd_from_modes(qpoints, freqs, vecs, phonon.primitive.masses, temperatures, statistics,
                          tolerance)


def full_mesh_qpoints(mesh_numbers) -> np.ndarray:
    """All q-points of a Γ-centred mesh (no symmetry reduction), primitive reciprocal basis."""
    n = np.asarray(mesh_numbers, dtype=int)
    grid = np.stack(np.meshgrid(*[np.arange(k) for k in n], indexing="ij"), axis=-1).reshape(-1, 3)
    q = grid / n
    return q - np.rint(q)


# --------------------------------------------------------------------------------------------
# Harmonic sampling
# --------------------------------------------------------------------------------------------
class HarmonicSampler:
    """Thermally displaced supercells from phonopy's ``RandomDisplacements`` with imaginary modes,
    the acoustic modes at Γ and near-zero modes (|f| ≤ tolerance) left out.

    ``excluded`` lists every commensurate mode left out: q-point, band, frequency, reason and
    multiplicity (2 for a q-point whose -q is a different point: the pair is one entry).
    """

    def __init__(self, phonon, statistics: str, tolerance: float = DEFAULT_IMAGINARY_TOLERANCE_THZ):
        if statistics not in STATISTICS:
            raise ValueError(f"statistics must be one of {STATISTICS}, got {statistics!r}")
        self.statistics = statistics
        phonon.init_random_displacements(dist_func=statistics, cutoff_frequency=tolerance)
        self._rd = phonon.random_displacements
        self._masses = np.array(phonon.supercell.masses)
        qpoints = np.array(self._rd.qpoints)
        freqs = np.array(self._rd.frequencies)
        keep = included_modes(qpoints, freqs, tolerance)
        self.excluded = []
        for i, b in zip(*np.nonzero(~keep)):
            q, f = qpoints[i], float(freqs[i, b])
            gamma = np.allclose(q - np.rint(q), 0.0, atol=1e-8)
            reason = ("imaginary" if f < -tolerance else
                      "acoustic at Gamma" if gamma and b in np.argsort(np.abs(freqs[i]))[:3] else
                      "zero frequency")
            self_conjugate = np.allclose(2 * q - np.rint(2 * q), 0.0, atol=1e-8)
            self.excluded.append({"qpoint": q, "band_index": int(b), "frequency_THz": f,
                                  "reason": reason, "multiplicity": 1 if self_conjugate else 2})
        # phonopy samples |f| for imaginary modes; zero frequency takes a mode out.
        self._rd.frequencies = np.where(keep, freqs, 0.0)
        self.n_modes = 3 * len(self._masses)
        self.n_excluded = sum(e["multiplicity"] for e in self.excluded)

    def sample(self, temperature: float, n_samples: int, seed: Optional[int] = None) -> np.ndarray:
        """(n_samples, N_sc, 3) displacements (Å) drawn at ``temperature`` K."""
        self._rd.run(float(temperature), number_of_snapshots=int(n_samples), random_seed=seed)
        return np.array(self._rd.u)

    def summary(self) -> dict:
        reasons = {}
        for e in self.excluded:
            reasons[e["reason"]] = reasons.get(e["reason"], 0) + e["multiplicity"]
        return {"statistics": self.statistics, "n_modes": self.n_modes,
                "n_sampled": self.n_modes - self.n_excluded, "n_excluded": self.n_excluded,
                "excluded_by_reason": reasons, "excluded_modes": self.excluded,
                "note": "imaginary modes, the three acoustic modes at Gamma and modes with "
                        "|f| <= tolerance are not sampled (zero amplitude)"}


def sample_msd(displacements: np.ndarray, sites: SiteMap) -> Tuple[np.ndarray, np.ndarray]:
    """Per-site mean-square displacement tensors from samples: (mean, standard error), each
    (n_sites, 3, 3) Å². Each sample is averaged over the images of a site first; the standard
    error is over the (independent) samples."""
    w = sites.averaging_matrix()
    per_sample = np.einsum("sn,kni,knj->ksij", w, displacements, displacements)
    return per_sample.mean(axis=0), _standard_error(per_sample)


def _standard_error(x: np.ndarray) -> np.ndarray:
    n = x.shape[0]
    if n < 2:
        return np.full(x.shape[1:], np.nan)
    return x.std(axis=0, ddof=1) / np.sqrt(n)


# --------------------------------------------------------------------------------------------
# EFG averaged over samples
# --------------------------------------------------------------------------------------------
def sample_estimate(per_sample: np.ndarray, statistic=None) -> dict:
    """``{"value", "error", "n_samples"}`` of ``statistic(mean over samples)`` (identity by
    default), the error by the jackknife over the independent samples (the schema of
    ``efg analyze``, whose blocks of frames are the samples here)."""
    per_sample = np.asarray(per_sample, dtype=float)
    statistic = statistic or (lambda m: m)
    return {"value": statistic(per_sample.mean(axis=0)), "error": jackknife(per_sample, statistic),
            "n_samples": int(per_sample.shape[0])}


def efg_statistics(efg: np.ndarray, sites: SiteMap, isotopes: Dict[str, Optional[str]]) -> dict:
    """NMR averages of the EFG tensors of harmonic samples, per site of the input structure and
    per species, under the keys ``efg analyze`` uses for MD frames.

    ``efg`` (n_samples, N_sc, 3, 3) V/Å²; ``isotopes`` {element: isotope or None}. Each sample is
    first averaged over the supercell images of a site (images of one sample are not
    independent); errors are jackknife errors over the samples. Per site: ⟨V⟩ (VASP Voigt order
    xx yy zz xy xz yz), C_Q(⟨V⟩), eta(⟨V⟩), ⟨C_Q⟩, ⟨|C_Q|⟩, ⟨eta⟩. Per species: the mean over its
    sites of C_Q(⟨V⟩), |C_Q(⟨V⟩)| and eta(⟨V⟩), and ⟨C_Q⟩, ⟨|C_Q|⟩, ⟨eta⟩, ⟨|V_zz|⟩ over its
    atoms, with histograms of the instantaneous C_Q and eta. C_Q entries are None for elements
    without a quadrupolar isotope.
    """
    symbols = np.array(sites.symbols)
    q_mb = np.array([quadrupole_moment_mb(isotopes[s]) if isotopes.get(s) else 0.0 for s in symbols])
    has_q = np.array([bool(isotopes.get(s)) for s in symbols])
    w = sites.averaging_matrix()
    cq_inst = cq_mhz(efg, q_mb[sites.unit_of_supercell])                  # (n, N_sc)
    eta_inst = eta(efg)
    v6 = np.einsum("sn,knc->ksc", w, to_voigt6(efg))                      # (n, n_sites, 6)
    cq = np.einsum("sn,kn->ks", w, cq_inst)
    abs_cq = np.einsum("sn,kn->ks", w, np.abs(cq_inst))
    eta_s = np.einsum("sn,kn->ks", w, eta_inst)
    abs_vzz = np.einsum("sn,kn->ks", w, np.abs(vzz(efg)))

    def cq_of_mean(mean6, q=q_mb):
        return cq_mhz(from_voigt6(mean6), q)

    def cq_only(estimate: dict, mask) -> dict:
        for key in ("value", "error"):
            values = np.asarray(estimate[key], dtype=float)
            estimate[key] = np.where(mask, values, np.nan) if values.ndim else (values if mask else None)
        return estimate

    site_stats = {
        "symbols": list(symbols),
        "mean_tensor_voigt6": sample_estimate(v6),
        "cq_of_mean_tensor_mhz": cq_only(sample_estimate(v6, cq_of_mean), has_q),
        "eta_of_mean_tensor": sample_estimate(v6, lambda m: eta(from_voigt6(m))),
        "mean_cq_mhz": cq_only(sample_estimate(cq), has_q),
        "mean_abs_cq_mhz": cq_only(sample_estimate(abs_cq), has_q),
        "mean_eta": sample_estimate(eta_s),
    }
    species = {}
    for element in dict.fromkeys(symbols):
        idx = np.flatnonzero(symbols == element)
        atoms = np.isin(sites.unit_of_supercell, idx)
        has = bool(has_q[idx[0]])
        q = q_mb[idx]
        entry = {"n_sites": int(len(idx)), "isotope": isotopes.get(element)}
        entry["cq_of_mean_tensor_mhz"] = cq_only(sample_estimate(v6[:, idx], lambda m: cq_of_mean(m, q).mean()), has)
        entry["abs_cq_of_mean_tensor_mhz"] = cq_only(
            sample_estimate(v6[:, idx], lambda m: np.abs(cq_of_mean(m, q)).mean()), has)
        entry["eta_of_mean_tensor"] = sample_estimate(v6[:, idx], lambda m: eta(from_voigt6(m)).mean())
        entry["mean_cq_mhz"] = cq_only(sample_estimate(cq[:, idx].mean(axis=1)), has)
        entry["mean_abs_cq_mhz"] = cq_only(sample_estimate(abs_cq[:, idx].mean(axis=1)), has)
        entry["mean_eta"] = sample_estimate(eta_s[:, idx].mean(axis=1))
        entry["mean_abs_vzz_V_per_A2"] = sample_estimate(abs_vzz[:, idx].mean(axis=1))
        if has:
            counts, edges = np.histogram(cq_inst[:, atoms].ravel(), bins=60)
            entry["histogram_cq_mhz"] = {"counts": counts, "edges": edges}
        counts, edges = np.histogram(eta_inst[:, atoms].ravel(), bins=40, range=(0.0, 1.0))
        entry["histogram_eta"] = {"counts": counts, "edges": edges}
        species[element] = entry
    return {"n_samples": int(efg.shape[0]), "isotopes": dict(isotopes), "sites": site_stats,
            "species": species}


def site_isotopes(symbols: Sequence[str], isotopes: Optional[Mapping[str, str]] = None
                  ) -> Dict[str, Optional[str]]:
    """{element: isotope or None} for the elements of ``symbols``: the isotope chosen in
    ``isotopes`` {element: isotope}, else the default one (:func:`pyexport.nmr.resolve_isotopes`),
    else None (no quadrupolar isotope known: no C_Q). An isotope of an element the structure
    lacks, or one without a known quadrupole moment, is an error."""
    elements = list(dict.fromkeys(symbols))
    chosen = resolve_isotopes(elements, isotopes)
    return {element: chosen.get(element) for element in elements}


def evaluate_efg(model, supercell: Atoms, displacements: np.ndarray, batch_atoms: int = 4000) -> np.ndarray:
    """EFG tensors (n_samples, N_sc, 3, 3) V/Å² of the displaced supercells."""
    from pyexport.efg_eval import predict_efg

    frames = []
    for u in displacements:
        atoms = supercell.copy()
        atoms.positions = supercell.positions + u
        frames.append(atoms)
    return np.stack(predict_efg(model, frames, batch_atoms=batch_atoms))


# --------------------------------------------------------------------------------------------
# Energy along a mode
# --------------------------------------------------------------------------------------------
@dataclass
class ModeEnergyCurve:
    """Energy of the supercell displaced along one phonon mode.

    ``amplitudes_Q`` (n,) amu^½·Å: displacement ``u = Q · pattern`` with
    ``Σ_i m_i |pattern_i|² = 1``; ``max_displacement_A`` (n,) Å: the largest atomic displacement
    at each Q; ``energy_eV`` (n,) potential energy of the supercell minus that at Q = 0;
    ``harmonic_eV`` (n,) = ½ ω² Q² with ω² = ``eigenvalue_eV_per_A2_amu`` (negative for an
    imaginary mode).
    """

    qpoint: List[float]
    band_index: int
    frequency_THz: float
    eigenvalue_eV_per_A2_amu: float
    degenerate_bands: List[int]
    n_atoms_supercell: int
    amplitudes_Q: np.ndarray
    max_displacement_A: np.ndarray
    energy_eV: np.ndarray
    harmonic_eV: np.ndarray
    label: Optional[str] = None
    well: Optional[dict] = field(default=None)

    def as_dict(self) -> dict:
        return asdict(self)


def mode_pattern(phonon, qpoint, band_index: int) -> Tuple[np.ndarray, float, List[int]]:
    """Real displacement pattern (N_sc, 3) of mode ``band_index`` at ``qpoint`` in
    ``phonon``'s supercell, normalised to Σ m |pattern|² = 1 (Å per amu^½·Å), with the mode's
    frequency (THz) and its degenerate set. Raises for a q-point not commensurate with the
    supercell."""
    q = np.asarray(qpoint, dtype=float)
    smat = phonopy_supercell_matrix_of_primitive(phonon)
    if not np.allclose(smat @ q, np.rint(smat @ q), atol=1e-6):
        raise ValueError(f"q-point {q.tolist()} is not commensurate with the supercell "
                         f"(supercell = {smat.tolist()} x primitive cell); choose a supercell "
                         f"in which it is")
    freqs, vecs = phonons_at(phonon, q, with_eigenvectors=True)
    n_band = freqs.shape[1]
    if not 0 <= band_index < n_band:
        raise ValueError(f"band index {band_index} out of range 0..{n_band - 1}")
    sc, prim = phonon.supercell, phonon.primitive
    sites = SiteMap.of(phonon)
    p_of_s = sites.primitive_of_unit[sites.unit_of_supercell]
    masses = np.array(sc.masses)
    frac = np.array(sc.positions) @ np.linalg.inv(prim.cell)        # primitive fractional coords
    e = vecs[0][:, band_index].reshape(-1, 3)
    # phonopy's dynamical matrix carries the phase of the atomic positions (not of the cell
    # origin), so the mode of atom s is e_p(s) exp(2πi q·r_s) / sqrt(m_s).
    z = e[p_of_s] * np.exp(2j * np.pi * (frac @ q))[:, None] / np.sqrt(masses)[:, None]
    # The real pattern of largest norm: Re(e^{-iφ} z) with e^{2iφ} = Σ z² / |Σ z²|.
    s = np.sum(z * z)
    phase = np.exp(-0.5j * np.angle(s)) if abs(s) > 1e-12 * np.sum(np.abs(z) ** 2) else 1.0
    pattern = (phase * z).real
    pattern /= np.sqrt(np.sum(masses[:, None] * pattern ** 2))
    f = freqs[0]
    deg = next(d for d in degenerate_sets(f) if band_index in d)
    return pattern, float(f[band_index]), deg


def mode_energy_curve(calc, primitive: Optional[Atoms], supercell_matrix, qpoint, band_index: int,
                      amplitudes, *, phonon=None, displacement: float = DEFAULT_DISPLACEMENT_A,
                      label: Optional[str] = None) -> ModeEnergyCurve:
    """Potential energy along a phonon eigenvector, next to the harmonic parabola ½ω²Q².

    ``calc``: ASE calculator of the potential (e.g. :class:`pyexport.calculator.MLFFCalculator`).
    ``primitive``: the cell ``qpoint`` refers to (fractional coordinates of its reciprocal
    lattice); ``supercell_matrix`` (3 ints or 3x3, ASE convention: supercell rows =
    matrix @ primitive rows) must make ``qpoint`` commensurate. ``band_index``: 0-based, bands
    in ascending frequency at ``qpoint`` (imaginary first). ``amplitudes``: normal-mode
    amplitudes Q (amu^½·Å). The force constants are computed here by finite displacements of
    ``displacement`` Å, unless ``phonon``, a Phonopy object whose force constants were computed
    with this potential, is given (``primitive`` and ``supercell_matrix`` are then taken from it
    and may be None). For a double well, ``well`` holds the lowest point of the curve.
    """
    if phonon is None:
        if primitive is None or supercell_matrix is None:
            raise ValueError("mode_energy_curve: give primitive and supercell_matrix, or phonon")
        check_periodic(primitive, "primitive")
        phonon = build_phonopy(primitive, parse_supercell_matrix(supercell_matrix),
                               primitive_matrix=np.eye(3))
        compute_force_constants(phonon, calc, displacement)
    pattern, frequency, deg = mode_pattern(phonon, qpoint, band_index)
    supercell = to_ase_atoms(phonon.supercell)
    amplitudes = np.asarray(amplitudes, dtype=float)
    supercell.calc = calc
    e0 = supercell.get_potential_energy()
    energies = []
    for a in amplitudes:
        displaced = supercell.copy()
        displaced.positions = supercell.positions + a * pattern
        displaced.calc = calc
        energies.append(displaced.get_potential_energy() - e0)
    energies = np.array(energies)
    lam = float(eigenvalue_from_frequency(frequency))
    curve = ModeEnergyCurve(
        qpoint=[float(x) for x in np.asarray(qpoint, dtype=float)], band_index=int(band_index),
        frequency_THz=frequency, eigenvalue_eV_per_A2_amu=lam, degenerate_bands=deg,
        n_atoms_supercell=len(supercell), amplitudes_Q=amplitudes,
        max_displacement_A=np.abs(amplitudes) * np.linalg.norm(pattern, axis=1).max(),
        energy_eV=energies, harmonic_eV=0.5 * lam * amplitudes ** 2, label=label)
    k = int(np.argmin(energies))
    if energies[k] < 0.0:
        curve.well = {"amplitude_Q": float(amplitudes[k]), "max_displacement_A": float(curve.max_displacement_A[k]),
                      "depth_eV_per_supercell": float(-energies[k]),
                      "depth_meV_per_primitive_cell": float(-energies[k] * 1e3 * len(phonon.primitive) / len(supercell)),
                      "at_edge_of_scan": k in (0, len(amplitudes) - 1)}
    return curve


def amplitude_grid(phonon, qpoint, band_index: int, max_displacement: float, n_points: int) -> np.ndarray:
    """Symmetric grid of Q (amu^½·Å) whose largest atomic displacement is ``max_displacement`` Å."""
    pattern, _, _ = mode_pattern(phonon, qpoint, band_index)
    q_max = max_displacement / np.linalg.norm(pattern, axis=1).max()
    return np.linspace(-q_max, q_max, n_points)


def unstable_modes_for_curves(phonon, commensurate: List[dict], special_points: Dict[str, np.ndarray]
                              ) -> List[Tuple[np.ndarray, int, Optional[str], float]]:
    """(q, band, label, frequency THz): one imaginary mode per degenerate set per q-star among
    the commensurate q-points (stars from the primitive cell's point group and time reversal).
    ``label`` names the special point of the star, if any. Special points come first (R and M of
    a cubic perovskite), then the other q-points; each group most unstable first."""
    rotations = np.array(phonon.primitive_symmetry.pointgroup_operations)
    seen: List[np.ndarray] = []
    out = []
    for entry in commensurate:
        if not entry["imaginary"]:
            continue
        q = np.asarray(entry["qpoint"], dtype=float)
        if any(_same_star(q, s, rotations) for s in seen):
            continue
        seen.append(q)
        label = next((name for name, p in special_points.items() if _same_star(q, p, rotations)), None)
        first = {m["degenerate_bands"][0]: m["frequency_THz"] for m in entry["imaginary"]}
        out.extend((q, band, label, f) for band, f in first.items())
    return sorted(out, key=lambda item: (item[2] is None, item[3]))


def _same_star(q1: np.ndarray, q2: np.ndarray, rotations: np.ndarray) -> bool:
    for r in rotations:
        for sign in (1.0, -1.0):
            d = sign * (q1 @ r) - q2
            if np.allclose(d, np.rint(d), atol=1e-6):
                return True
    return False


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------
def plot_bands_dos(bands: dict, dos: dict, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_dos) = plt.subplots(1, 2, figsize=(8, 4.5), sharey=True,
                                     gridspec_kw={"width_ratios": [4, 1], "wspace": 0.05})
    offset, ticks, ticklabels = 0.0, [0.0], []
    previous_end = None
    for seg in bands["segments"]:
        d = seg["distances"] - seg["distances"][0] + offset
        if previous_end is not None and previous_end != seg["from"]:
            ticklabels[-1] = f"{previous_end}|{seg['from']}"
        if not ticklabels:
            ticklabels.append(seg["from"])
        ax.plot(d, seg["frequencies_THz"], color="C0", lw=1.0)
        offset = d[-1]
        ticks.append(offset)
        ticklabels.append(seg["to"])
        previous_end = seg["to"]
    for t in ticks:
        ax.axvline(t, color="0.7", lw=0.6)
    ax.axhline(0.0, color="k", lw=0.6)
    ax.set_xticks(ticks)
    ax.set_xticklabels(ticklabels)
    ax.set_xlim(0, offset)
    ax.set_ylabel("frequency (THz); imaginary < 0")
    ax_dos.plot(dos["dos_states_per_THz"], dos["frequencies_THz"], color="C0", lw=1.0)
    ax_dos.axhline(0.0, color="k", lw=0.6)
    ax_dos.set_xlabel("DOS")
    ax_dos.set_xticks([])
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)


def plot_mode_curves(curves: List[ModeEnergyCurve], path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(curves)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, c in zip(axes.ravel(), curves):
        x = np.sign(c.amplitudes_Q) * c.max_displacement_A
        ax.plot(x, c.energy_eV * 1e3, "o-", ms=3, label="potential")
        ax.plot(x, c.harmonic_eV * 1e3, "--", label="harmonic ½ω²Q²")
        finite = np.concatenate([c.energy_eV, c.harmonic_eV]) * 1e3
        lo, hi = c.energy_eV.min() * 1e3, c.energy_eV.max() * 1e3
        span = max(hi - lo, 1e-6)
        ax.set_ylim(min(lo, finite.min()) - 0.1 * span if c.frequency_THz >= 0 else lo - 0.5 * span,
                    hi + 0.3 * span)
        name = c.label or "q"
        ax.set_title(f"{name} {np.round(c.qpoint, 3).tolist()} band {c.band_index}: {c.frequency_THz:.3f} THz",
                     fontsize=8)
        ax.set_xlabel("largest atomic displacement (Å)")
        ax.set_ylabel("E − E₀ (meV / supercell)")
        ax.legend(fontsize=7)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def plot_msd(temperatures, msd: dict, symbols: Sequence[str], path) -> None:
    """Isotropic MSD (trace/3) per site against T: phonopy on the dense mesh (lines), phonopy on
    the supercell's q-points (thin dotted), samples (symbols with standard errors)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def iso(a):
        return np.trace(a, axis1=-2, axis2=-1) / 3

    fig, ax = plt.subplots(figsize=(6, 4))
    styles = [(stat, style, marker) for stat, style, marker in
              (("quantum", "-", "o"), ("classical", "--", "s")) if stat in msd]
    for s, symbol in enumerate(symbols):
        color = f"C{s % 10}"
        for stat, style, marker in styles:
            arrays = msd[stat]
            label = f"{symbol} (site {s})" if stat == styles[0][0] else None
            ax.plot(temperatures, iso(arrays["mesh"][:, s]), style, color=color, label=label)
            ax.plot(temperatures, iso(arrays["supercell"][:, s]), ":", color=color, lw=0.8)
            err = np.sqrt(np.sum(np.diagonal(arrays["samples_se"][:, s], axis1=-2, axis2=-1) ** 2, axis=-1)) / 3
            ax.errorbar(temperatures, iso(arrays["samples"][:, s]), yerr=err, fmt=marker, color=color,
                        ms=3, mfc="none" if stat == "classical" else color)
    ax.set_xlabel("T (K)")
    ax.set_ylabel("isotropic MSD (Å²)")
    ax.set_title("phonopy: mesh (lines), supercell q-points (dotted); samples (symbols)\n"
                 "quantum: solid, filled; classical: dashed, open", fontsize=8)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# The whole baseline
# --------------------------------------------------------------------------------------------
@dataclass
class NamedMode:
    """A mode the user asks for: q-point (primitive reciprocal basis) and 0-based band."""

    qpoint: Tuple[float, float, float]
    band_index: int


def run_harmonic(potential, structure, supercell, output, temperatures="100:500:50",
                 n_samples: int = 100, statistics: Sequence[str] = STATISTICS,
                 efg_model=None, isotopes: Optional[Mapping[str, str]] = None, efg_samples: int = 20,
                 displacement: float = DEFAULT_DISPLACEMENT_A, mesh=80.0, band_points: int = 51,
                 imaginary_tolerance: float = DEFAULT_IMAGINARY_TOLERANCE_THZ,
                 modes: Sequence[NamedMode] = (), mode_max_displacement: float = 0.8,
                 mode_points: int = 21, max_unstable_curves: int = 6,
                 seed: int = 0, symprec: float = 1e-5, threads: Optional[int] = None,
                 progress: bool = True, plots: bool = True) -> dict:
    """Run the harmonic baseline and write ``output`` (JSON) with PNGs beside it; return the
    report as a dict (numpy arrays, before JSON conversion). See the module docstring.

    All inputs are checked before any force is computed: the files exist, the structure is
    periodic in 3D and holds only elements both models know, the temperatures are positive.
    """
    from tqdm import tqdm

    from pyexport.calculator import MLFFCalculator
    from pyexport.contract import load_model

    t_start = time.perf_counter()
    timings: Dict[str, float] = {}
    stem = Path(output).with_suffix("")
    refuse_overwriting_inputs([potential, structure, efg_model],
                              [output] + [f"{stem}_{name}" for name in ("bands.png", "msd.png", "modes.png",
                                                                        "phonopy.yaml")])
    temps = parse_temperatures(temperatures)
    statistics = list(dict.fromkeys(statistics))
    for stat in statistics:
        if stat not in STATISTICS:
            raise ValueError(f"statistics: expected {STATISTICS}, got {stat!r}")
    if n_samples < 2:
        raise ValueError(f"samples: need at least 2 samples per temperature for error bars, got {n_samples}")
    if efg_model is not None and not 2 <= efg_samples <= n_samples:
        raise ValueError(f"efg samples: need 2 <= efg_samples <= samples ({n_samples}), got {efg_samples}")
    smat = parse_supercell_matrix(supercell)
    atoms = read_structure(structure)
    calc = MLFFCalculator(potential, threads=threads)
    check_elements(atoms, calc.elements, str(structure), str(potential))
    efg_module = None
    isotope_of: Dict[str, Optional[str]] = {}
    if efg_model is not None:
        efg_module, efg_meta = load_model(efg_model, kind="efg")
        check_elements(atoms, efg_meta["elements"], str(structure), str(efg_model))
        isotope_of = site_isotopes(atoms.get_chemical_symbols(), isotopes)
    elif isotopes:
        raise ValueError("--isotope needs --efg-model")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    stem = output.with_suffix("")
    report_warnings: List[str] = []

    # 1. force constants
    t0 = time.perf_counter()
    phonon = build_phonopy(atoms, smat, symprec=symprec)
    _check_named_modes(phonon, modes)
    fc_info = compute_force_constants(phonon, calc, displacement, progress=progress)
    if fc_info["max_residual_force_eV_per_A"] > 1e-3:
        msg = (f"the structure is not at equilibrium of the potential: max residual force "
               f"{fc_info['max_residual_force_eV_per_A']:.3g} eV/Å (subtracted from the "
               f"displaced forces); relax it for a meaningful harmonic baseline")
        warnings.warn(msg, HarmonicWarning, stacklevel=2)
        report_warnings.append(msg)
    timings["force_constants"] = time.perf_counter() - t0
    sites = SiteMap.of(phonon)

    # 2-3. bands, special points, commensurate points, mesh
    t0 = time.perf_counter()
    bands = band_structure(phonon, band_points)
    special = modes_at_points(phonon, list(bands["special_points"].values()),
                              list(bands["special_points"]), imaginary_tolerance)
    comm_q = commensurate_qpoints(phonon)
    special_of = {tuple(np.round(q - np.rint(q), 6)): k for k, q in bands["special_points"].items()}
    comm_labels = [special_of.get(tuple(np.round(q - np.rint(q), 6))) for q in comm_q]
    commensurate = modes_at_points(phonon, comm_q, comm_labels, imaginary_tolerance)
    mesh_info = mesh_properties(phonon, mesh, temps, imaginary_tolerance)
    if mesh_info["warning"]:
        report_warnings.append(mesh_info["warning"])
    timings["phonons"] = time.perf_counter() - t0

    # 4-6. MSD and sampling (with EFG)
    t0 = time.perf_counter()
    mesh_q = full_mesh_qpoints(mesh_info["mesh"])
    supercell_atoms = to_ase_atoms(phonon.supercell)
    by_temperature = [{"temperature_K": float(t)} for t in temps]
    msd_arrays: Dict[str, dict] = {}
    sampling = {}
    for stat in statistics:
        prim_comm = phonopy_msd(phonon, comm_q, temps, stat, imaginary_tolerance)
        prim_mesh = phonopy_msd(phonon, mesh_q, temps, stat, imaginary_tolerance)
        per_site = sites.primitive_of_unit
        sampler = HarmonicSampler(phonon, stat, imaginary_tolerance)
        sampling[stat] = sampler.summary()
        if sampler.n_excluded > 3:
            msg = (f"{stat} sampling: {sampler.n_excluded} of {sampler.n_modes} supercell modes are "
                   f"not sampled ({sampling[stat]['excluded_by_reason']}); the samples describe the "
                   f"stable subspace only")
            warnings.warn(msg, HarmonicWarning, stacklevel=2)
            report_warnings.append(msg)
        arrays = {"supercell": prim_comm[:, per_site], "mesh": prim_mesh[:, per_site],
                  "samples": np.zeros_like(prim_comm[:, per_site]),
                  "samples_se": np.zeros_like(prim_comm[:, per_site])}
        for it, t in enumerate(tqdm(temps, desc=f"{stat} sampling", unit="T", disable=not progress)):
            state = np.random.SeedSequence([seed, it, STATISTICS.index(stat)]).generate_state(1)[0]
            u = sampler.sample(t, n_samples, seed=int(state))
            arrays["samples"][it], arrays["samples_se"][it] = sample_msd(u, sites)
            entry = {"msd_phonopy_mesh_A2": arrays["mesh"][it],
                     "msd_phonopy_supercell_A2": arrays["supercell"][it],
                     "msd_samples_A2": arrays["samples"][it],
                     "msd_samples_se_A2": arrays["samples_se"][it], "n_samples": int(n_samples)}
            if efg_module is not None:
                efg = evaluate_efg(efg_module, supercell_atoms, u[:efg_samples])
                entry["efg"] = efg_statistics(efg, sites, isotope_of)
            by_temperature[it][stat] = entry
        msd_arrays[stat] = arrays
    timings["sampling"] = time.perf_counter() - t0

    static_efg = None
    if efg_module is not None:
        from pyexport.efg_eval import predict_efg
        v0 = predict_efg(efg_module, [atoms])[0]
        static_efg = []
        for site, symbol in enumerate(sites.symbols):
            iso = isotope_of.get(symbol)
            static_efg.append({"site": site, "symbol": symbol, "isotope": iso,
                               "tensor_voigt6": to_voigt6(v0[site]),
                               "cq_mhz": float(cq_mhz(v0[site], iso)) if iso else None,
                               "eta": float(eta(v0[site]))})

    # 7. energy along unstable and named modes
    t0 = time.perf_counter()
    unstable = (unstable_modes_for_curves(phonon, commensurate, bands["special_points"])
                if max_unstable_curves > 0 else [])
    skipped = [{"qpoint": q, "band_index": b, "label": l, "frequency_THz": f}
               for q, b, l, f in unstable[max_unstable_curves:]]
    if skipped:
        msg = (f"energy scans: {len(unstable)} unstable modes (one per degenerate set and q-star); "
               f"scanned {max_unstable_curves} (special points first, most unstable first), the "
               f"others are listed under mode_energy_curves_not_scanned (raise "
               f"--max-unstable-curves to scan them)")
        warnings.warn(msg, HarmonicWarning, stacklevel=2)
        report_warnings.append(msg)
    requests = [(q, b, l) for q, b, l, _ in unstable[:max_unstable_curves]]
    requests += [(np.asarray(m.qpoint, dtype=float), int(m.band_index), "named") for m in modes]
    curves = []
    for q, band, label in tqdm(requests, desc="mode energy curves", unit="mode", disable=not progress):
        amps = amplitude_grid(phonon, q, band, mode_max_displacement, mode_points)
        curves.append(mode_energy_curve(calc, None, None, q, band, amps, phonon=phonon, label=label))
    timings["mode_curves"] = time.perf_counter() - t0

    outputs = {"json": str(output)}
    if plots:
        outputs["bands_png"] = f"{stem}_bands.png"
        plot_bands_dos(bands, mesh_info["dos"], outputs["bands_png"])
        outputs["msd_png"] = f"{stem}_msd.png"
        plot_msd(temps, msd_arrays, sites.symbols, outputs["msd_png"])
        if curves:
            outputs["modes_png"] = f"{stem}_modes.png"
            plot_mode_curves(curves, outputs["modes_png"])
    outputs["phonopy_yaml"] = f"{stem}_phonopy.yaml"
    phonon.save(outputs["phonopy_yaml"])
    timings["total"] = time.perf_counter() - t_start

    from phonopy import __version__ as phonopy_version
    n_prim = len(phonon.primitive)
    report = {
        "command": "efg harmonic",
        "units": {"frequency": "THz (imaginary as negative)", "eigenvalue": "eV/(Å² amu)",
                  "amplitude_Q": "amu^1/2 Å", "msd": "Å²", "efg": "V/Å²", "cq": "MHz",
                  "energy": "eV", "temperature": "K", "qpoint": "fractional, primitive reciprocal basis"},
        "inputs": {"potential": str(potential), "potential_elements": calc.elements,
                   "potential_cutoff_A": calc.cutoff, "structure": str(structure),
                   "supercell_matrix": smat, "displacement_A": displacement, "symprec": symprec,
                   "temperatures_K": temps, "samples_per_temperature": int(n_samples),
                   "efg_samples_per_temperature": int(efg_samples) if efg_model is not None else None,
                   "statistics": statistics, "seed": seed, "mesh": mesh,
                   "imaginary_tolerance_THz": imaginary_tolerance,
                   "efg_model": None if efg_model is None else str(efg_model),
                   "isotopes": isotope_of or None, "phonopy_version": phonopy_version},
        "structure": {"formula": atoms.get_chemical_formula(),
                      "space_group": _space_group(phonon),
                      "n_atoms": len(atoms), "n_atoms_primitive": n_prim,
                      "n_atoms_supercell": len(phonon.supercell),
                      "primitive_matrix": np.array(phonon.primitive_matrix),
                      "supercell_of_primitive": phonopy_supercell_matrix_of_primitive(phonon),
                      "sites": [{"site": s, "symbol": sites.symbols[s],
                                 "fractional": atoms.get_scaled_positions(wrap=False)[s],
                                 "primitive_atom": int(sites.primitive_of_unit[s])}
                                for s in range(sites.n_sites)]},
        "force_constants": fc_info,
        "imaginary_modes": {
            "tolerance_THz": imaginary_tolerance,
            "special_points": [m for m in special if m["imaginary"]],
            "commensurate_qpoints": [m for m in commensurate if m["imaginary"]],
            "mesh": {"mesh": mesh_info["mesh"], "n_modes": mesh_info["n_modes"],
                     "n_imaginary": mesh_info["n_imaginary"], "modes": mesh_info["imaginary_modes"]},
            "band_path_min_frequency_THz": bands["min_frequency_THz"],
        },
        "special_points": [_without_imaginary(m) for m in special],
        "commensurate_qpoints": [_without_imaginary(m) for m in commensurate],
        "band_structure": {"path": bands["path"], "segments": bands["segments"]},
        "dos": mesh_info["dos"],
        "thermal_properties": mesh_info["thermal_properties"],
        "sampling": sampling,
        "efg_static": static_efg,
        "temperatures": by_temperature,
        "mode_energy_curves": [c.as_dict() for c in curves],
        "mode_energy_curves_not_scanned": skipped,
        "warnings": report_warnings,
        "outputs": outputs,
        "timings_s": timings,
    }
    write_json(output, report)
    return report


def _check_named_modes(phonon, modes: Sequence[NamedMode]) -> None:
    """Named modes must be commensurate with the supercell and name an existing band."""
    smat = phonopy_supercell_matrix_of_primitive(phonon)
    n_band = 3 * len(phonon.primitive)
    for m in modes:
        q = np.asarray(m.qpoint, dtype=float)
        if not np.allclose(smat @ q, np.rint(smat @ q), atol=1e-6):
            raise ValueError(f"--mode {list(m.qpoint)} {m.band_index}: q-point not commensurate "
                             f"with the supercell ({smat.tolist()} x primitive cell; q-points are "
                             f"fractions of the primitive reciprocal lattice)")
        if not 0 <= m.band_index < n_band:
            raise ValueError(f"--mode {list(m.qpoint)} {m.band_index}: band index must be in "
                             f"0..{n_band - 1}")


def _without_imaginary(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if k != "imaginary"}


def _space_group(phonon) -> str:
    ds = phonon.symmetry.dataset
    symbol = ds.international if hasattr(ds, "international") else ds["international"]
    number = ds.number if hasattr(ds, "number") else ds["number"]
    return f"{symbol} ({number})"
