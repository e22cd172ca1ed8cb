"""Phonon bands along the standard path, irreducible representations and imaginary modes at
special and commensurate q-points, and DOS/thermal properties on a mesh (real modes only).
"""
from __future__ import annotations

import warnings
from typing import Dict, List, Optional, Tuple

import numpy as np

from .force_constants import HarmonicWarning, phonons_at


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


def lowest_mode(qpoints: np.ndarray, frequencies: np.ndarray) -> dict:
    """The lowest frequency (THz, negative if imaginary) of ``frequencies`` (n_q, n_band) at
    ``qpoints`` (primitive reciprocal basis), with its q-point and band: the test of dynamical
    stability. The three acoustic modes at Γ (zero by translation symmetry) are left out; every
    other mode counts, the acoustic branches near Γ included."""
    freqs = np.array(frequencies, dtype=float)
    for i, q in enumerate(np.reshape(qpoints, (-1, 3))):
        if np.allclose(q - np.rint(q), 0.0, atol=1e-8):
            freqs[i, np.argsort(np.abs(freqs[i]))[:3]] = np.inf
    i, band = np.unravel_index(np.argmin(freqs), freqs.shape)
    return {"qpoint": np.reshape(qpoints, (-1, 3))[i], "band_index": int(band),
            "frequency_THz": float(freqs[i, band]),
            "note": "lowest mode on the mesh apart from the three acoustic modes at Gamma"}


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
    lowest = lowest_mode(np.array(m.qpoints), freqs)
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
        "imaginary_modes": listed, "lowest_mode": lowest, "warning": warning,
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
