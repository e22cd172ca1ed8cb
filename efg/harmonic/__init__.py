"""Harmonic baseline: phonopy phonons of an exported potential, harmonic sampling at T, and the
energy along unstable modes.

    efg harmonic --potential potential.pt --structure POSCAR --supercell 4 4 4 \\
        --temperatures 100:500:50 [--relax 1e-4] [--efg-model efg.pt --isotope Br=79Br] -o harmonic.json

The potential is the same ``.pt`` file that ``pair_style mlff`` runs, evaluated through
:class:`pyexport.calculator.MLFFCalculator`; the EFG model (optional) is evaluated with
:func:`pyexport.efg_eval.predict_efg`. Steps and outputs (one JSON file, PNGs beside it):

0. With ``--relax FMAX``: the structure relaxed with the potential (positions and cell at zero
   pressure, space group kept) until every force component is at most FMAX eV/Å, written to
   ``<stem>_relaxed.vasp`` (:mod:`.relax`): the harmonic model of a phase is meaningful only
   about a minimum of the potential that runs the MD.
1. Force constants by finite displacements (phonopy, symmetry from spglib), the forces of the
   undisplaced supercell subtracted; translational and permutation symmetry imposed.
2. Phonon bands along the standard path of the primitive cell's Bravais lattice (ASE's
   Setyawan–Curtarolo paths; Γ-X-M-Γ-R-X|M-R for simple cubic) and the DOS on a mesh
   (``<stem>_bands.png``).
3. Imaginary modes listed explicitly: at the path's special points (with the irreducible
   representation where phonopy names it, i.e. at Γ), at every q-point commensurate with the
   supercell, and on the mesh; the band path's lowest frequency and the mesh's lowest mode (its
   q-point and band; the acoustic modes at Γ apart); ``dynamically_stable`` when no mode is
   imaginary anywhere. Frequencies below ``-imaginary_tolerance`` count as imaginary and appear
   as negative numbers, as phonopy writes them. Thermal properties use real modes only, and a
   warning says how many were left out.
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

The package holds one concept per module, as phonopy's ``phonon/`` does:

- :mod:`.force_constants`: phonopy from an ASE calculator, phonons at q, supercell → site map;
- :mod:`.inputs`: the structure file and the options, checked before any force is computed;
- :mod:`.relax`: the structure at a force minimum of the potential, its space group kept;
- :mod:`.bands`: bands, irreps, imaginary modes, DOS and thermal properties on a mesh;
- :mod:`.msd`: mean-square displacements from the modes;
- :mod:`.sampling`: harmonic sampling at T and the MSD of the samples;
- :mod:`.efg_samples`: the EFG model over the samples, NMR statistics per site and species;
- :mod:`.mode_scans`: the energy along a phonon mode next to ½ω²Q²;
- :mod:`.plots`: the PNGs;
- :mod:`.workflow`: :func:`run_harmonic`, all of the above into one JSON report.

The command line is :mod:`efg.cli.harmonic`.
"""
from .bands import band_structure, degenerate_sets, mesh_properties, modes_at_points
from .efg_samples import efg_statistics, evaluate_efg, site_isotopes
from .force_constants import (DEFAULT_DISPLACEMENT_A, DEFAULT_IMAGINARY_TOLERANCE_THZ,
                              HarmonicWarning, STATISTICS, SiteMap, build_phonopy,
                              commensurate_qpoints, compute_force_constants, phonons_at,
                              to_ase_atoms)
from .inputs import parse_temperatures, read_structure
from .mode_scans import ModeEnergyCurve, amplitude_grid, mode_energy_curve, phonon_mode_pattern
from .msd import full_mesh_qpoints, phonopy_msd
from .relax import relax_structure
from .sampling import HarmonicSampler, sample_msd
from .workflow import NamedMode, run_harmonic

__all__ = ["DEFAULT_DISPLACEMENT_A", "DEFAULT_IMAGINARY_TOLERANCE_THZ", "HarmonicSampler",
           "HarmonicWarning", "ModeEnergyCurve", "NamedMode", "STATISTICS", "SiteMap",
           "amplitude_grid", "band_structure", "build_phonopy", "commensurate_qpoints",
           "compute_force_constants", "degenerate_sets", "efg_statistics", "evaluate_efg",
           "full_mesh_qpoints", "mesh_properties", "mode_energy_curve", "modes_at_points",
           "parse_temperatures", "phonon_mode_pattern", "phonons_at", "phonopy_msd",
           "read_structure", "relax_structure", "run_harmonic", "sample_msd", "site_isotopes", "to_ase_atoms"]
