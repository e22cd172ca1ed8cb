"""The whole harmonic baseline, :func:`run_harmonic`: inputs checked, force constants, bands and
imaginary modes, thermal properties, MSD, sampling, EFG over samples and mode energy scans,
written as one JSON report with PNGs beside it (see :mod:`efg.harmonic`).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from pyexport.nmr import cq_mhz, eta, to_voigt6
from pyexport.outputs import refuse_overwriting_inputs, write_json

from .bands import band_structure, mesh_properties, modes_at_points
from .efg_samples import efg_statistics, evaluate_efg, site_isotopes
from .force_constants import (DEFAULT_DISPLACEMENT_A, DEFAULT_IMAGINARY_TOLERANCE_THZ,
                              HarmonicWarning, STATISTICS, SiteMap, build_phonopy,
                              commensurate_qpoints, compute_force_constants,
                              phonopy_supercell_matrix_of_primitive, to_ase_atoms)
from .inputs import check_elements, parse_supercell_matrix, parse_temperatures, read_structure
from .mode_scans import amplitude_grid, mode_energy_curve, unstable_modes_for_curves
from .msd import full_mesh_qpoints, phonopy_msd
from .plots import plot_bands_dos, plot_mode_curves, plot_msd
from .relax import relax_structure
from .sampling import HarmonicSampler, sample_msd


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
                 relax: Optional[float] = None, relax_cell: bool = True,
                 progress: bool = True, plots: bool = True) -> dict:
    """Run the harmonic baseline and write ``output`` (JSON) with PNGs beside it; return the
    report as a dict (numpy arrays, before JSON conversion). See the module docstring.

    ``relax`` (eV/Å): first relax the structure with the potential until every force component
    is at most this (and, with ``relax_cell``, the cell at zero pressure), its space group kept
    (:func:`efg.harmonic.relax.relax_structure`); the relaxed structure is written to
    ``<stem>_relaxed.vasp`` and the phonons are those of it. Without it a structure whose
    residual forces exceed 1e-3 eV/Å gets a warning.

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
                                                                        "phonopy.yaml", "relaxed.vasp")])
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

    def warn(message: str) -> None:
        """A HarmonicWarning for the caller of run_harmonic, kept in the report too."""
        warnings.warn(message, HarmonicWarning, stacklevel=3)
        report_warnings.append(message)

    # 0. the structure at a force minimum of the potential
    relaxation = None
    if relax is not None:
        t0 = time.perf_counter()
        atoms, relaxation = relax_structure(atoms, calc, relax, relax_cell=relax_cell,
                                            symprec=symprec, where=str(structure))
        relaxation["relaxed_structure"] = f"{stem}_relaxed.vasp"
        atoms.write(relaxation["relaxed_structure"], format="vasp", direct=True)
        timings["relaxation"] = time.perf_counter() - t0

    # 1. force constants
    t0 = time.perf_counter()
    phonon = build_phonopy(atoms, smat, symprec=symprec)
    _check_named_modes(phonon, modes)
    fc_info = compute_force_constants(phonon, calc, displacement, progress=progress)
    if fc_info["max_residual_force_eV_per_A"] > 1e-3:
        msg = (f"the structure is not at equilibrium of the potential: max residual force "
               f"{fc_info['max_residual_force_eV_per_A']:.3g} eV/Å (subtracted from the "
               f"displaced forces); relax it for a meaningful harmonic baseline (--relax 1e-4)")
        warn(msg)
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
            warn(msg)
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
        warn(msg)
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
    if relaxation is not None:
        outputs["relaxed_structure"] = relaxation["relaxed_structure"]
    timings["total"] = time.perf_counter() - t_start

    from phonopy import __version__ as phonopy_version
    n_prim = len(phonon.primitive)
    # dynamically stable: no imaginary mode on the mesh, at a commensurate or special q-point
    # or on the band path (the acoustic modes at Γ are zero within the tolerance)
    stable = bool(mesh_info["n_imaginary"] == 0 and not any(m["imaginary"] for m in special + commensurate)
                  and bands["min_frequency_THz"] >= -imaginary_tolerance)
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
                   "relax_eV_per_A": relax, "relax_cell": bool(relax_cell) if relax is not None else None,
                   "efg_model": None if efg_model is None else str(efg_model),
                   "isotopes": isotope_of or None, "phonopy_version": phonopy_version},
        "relaxation": relaxation,
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
            "dynamically_stable": stable,
            "special_points": [m for m in special if m["imaginary"]],
            "commensurate_qpoints": [m for m in commensurate if m["imaginary"]],
            "mesh": {"mesh": mesh_info["mesh"], "n_modes": mesh_info["n_modes"],
                     "n_imaginary": mesh_info["n_imaginary"], "modes": mesh_info["imaginary_modes"],
                     "lowest_mode": mesh_info["lowest_mode"]},
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
