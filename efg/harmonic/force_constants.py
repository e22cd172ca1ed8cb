"""Phonopy from an ASE calculator: force constants by finite displacements, phonons at any q,
the map from supercell atoms to the sites of the input structure, and frequency units.

f in THz (phonopy's factor for eV/Å²/amu); mode eigenvalues ω² in eV/(Å² amu).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import List

import numpy as np
from ase import Atoms, units




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
