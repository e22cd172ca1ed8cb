"""Energy along a displacement pattern: the physics check of a potential (``pyexport scan``).

A scan evaluates an exported potential on ``structure + A · pattern`` for a grid of amplitudes A
(Å; the largest atomic displacement of the pattern, see :mod:`pyexport.structures`) and compares
it with reference curves: another exported model, or labelled structures (e.g. DFT single points
along the same mode) whose amplitudes are found by projecting their displacements on the pattern.

Every curve is reported in meV per formula unit (per B-site octahedron when the structure has
them, else per atom) relative to its own value at the amplitude closest to zero, plus the
double-well summary: the amplitude of the minimum and the well depth ``E(0) − E_min``.
"""
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from .octahedra import find_octahedra
from .outputs import write_json
from .structures import displaced, mode_amplitude


def parse_amplitudes(text: str) -> np.ndarray:
    """``start:stop:count`` (inclusive, like numpy.linspace) or a comma-separated list, Å."""
    try:
        if ":" in text:
            start, stop, count = text.split(":")
            count = int(count)
            if count < 2:
                raise ValueError
            return np.linspace(float(start), float(stop), count)
        values = np.array([float(v) for v in text.split(",")])
    except ValueError:
        raise ValueError(f"--amplitudes: expected start:stop:count (count >= 2) or a comma list, got {text!r}") from None
    if not len(values):
        raise ValueError("--amplitudes: no amplitudes given")
    return values


def load_pattern(path: str, n_atoms: int) -> np.ndarray:
    """An (N, 3) displacement pattern from a .npy file, normalised to max displacement 1."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: mode file not found")
    pattern = np.load(path)
    if pattern.shape != (n_atoms, 3):
        raise ValueError(f"{path}: pattern has shape {pattern.shape}, the structure needs ({n_atoms}, 3)")
    largest = np.linalg.norm(pattern, axis=1).max()
    if not largest > 0:
        raise ValueError(f"{path}: the pattern is zero")
    return pattern / largest


def formula_units(atoms) -> int:
    """Number of BX6 octahedra (perovskite formula units), or the atom count if there are none."""
    try:
        return len(find_octahedra(atoms).b)
    except ValueError:
        return len(atoms)


def energies_along(atoms, pattern: np.ndarray, amplitudes: Sequence[float], calc) -> np.ndarray:
    """Potential energies (eV) of ``atoms + A · pattern`` (:func:`pyexport.structures.displaced`)
    for each amplitude A, from the ASE calculator ``calc``: the one energy-along-a-mode loop
    (``pyexport scan`` and ``efg harmonic``'s mode scans)."""
    energies = []
    for amplitude in amplitudes:
        frame = displaced(atoms, pattern, float(amplitude))
        frame.calc = calc
        energies.append(frame.get_potential_energy())
    return np.array(energies)


def model_curve(model_path: str, atoms, pattern: np.ndarray, amplitudes: Sequence[float]) -> np.ndarray:
    """Energies (eV) of an exported potential along the pattern."""
    from .calculator import MLFFCalculator

    return energies_along(atoms, pattern, amplitudes, MLFFCalculator(model_path))


def data_curve(path: str, atoms, pattern: np.ndarray, max_residual: float = 0.05):
    """(amplitudes, energies eV, residuals Å) of the labelled structures in ``path`` projected on
    the pattern; a structure whose displacement is not along the pattern (rms remainder above
    ``max_residual`` Å per atom) is an error, since its energy would not belong to the curve."""
    from .data import read

    frames = read(path)
    amps, energies, residuals = [], [], []
    for k, frame in enumerate(frames):
        amp, rest = mode_amplitude(frame, atoms, pattern)
        if rest > max_residual:
            raise ValueError(f"{path}: structure {k + 1} is not on the scanned mode (rms off-mode "
                             f"displacement {rest:.3f} Å > {max_residual} Å)")
        amps.append(amp)
        energies.append(frame.get_potential_energy())
        residuals.append(rest)
    order = np.argsort(amps)
    return np.array(amps)[order], np.array(energies)[order], np.array(residuals)[order]


def curve_summary(amplitudes: np.ndarray, energies_ev: np.ndarray, n_fu: int) -> Dict:
    """Relative energies (meV/f.u.) and the double-well numbers of one curve."""
    amplitudes = np.asarray(amplitudes, dtype=float)
    zero = int(np.argmin(np.abs(amplitudes)))
    rel = (np.asarray(energies_ev) - energies_ev[zero]) / n_fu * 1000.0
    low = int(np.argmin(rel))
    return {"amplitude_A": amplitudes.tolist(), "energy_eV": np.asarray(energies_ev).tolist(),
            "energy_meV_per_fu": rel.tolist(), "minimum_amplitude_A": float(amplitudes[low]),
            "well_depth_meV_per_fu": float(-rel[low]), "double_well": bool(rel[low] < 0.0 and low != zero)}


def run_scan(model_path: str, atoms, pattern: np.ndarray, amplitudes: Sequence[float], mode_name: str,
             reference: Optional[str] = None) -> Dict:
    """Scan the model (and the reference, a ``.pt`` model or a data file) along the pattern."""
    n_fu = formula_units(atoms)
    amplitudes = np.asarray(amplitudes, dtype=float)
    result = {"mode": mode_name, "n_atoms": len(atoms), "formula_units": n_fu,
              "model": {"path": os.fspath(model_path),
                        **curve_summary(amplitudes, model_curve(model_path, atoms, pattern, amplitudes), n_fu)}}
    if reference is not None:
        if not os.path.isfile(reference):
            raise FileNotFoundError(f"{reference}: reference not found")
        if _is_model_file(reference):
            curve = curve_summary(amplitudes, model_curve(reference, atoms, pattern, amplitudes), n_fu)
            result["reference"] = {"path": reference, "kind": "model", **curve}
            diff = np.array(curve["energy_meV_per_fu"]) - np.array(result["model"]["energy_meV_per_fu"])
            result["rms_difference_meV_per_fu"] = float(np.sqrt(np.mean(diff ** 2)))
        else:
            amps, energies, residuals = data_curve(reference, atoms, pattern)
            curve = curve_summary(amps, energies, n_fu)
            result["reference"] = {"path": reference, "kind": "data", "off_mode_rms_A": residuals.tolist(), **curve}
            at_ref = model_curve(model_path, atoms, pattern, amps)
            model_rel = (at_ref - at_ref[int(np.argmin(np.abs(amps)))]) / n_fu * 1000.0
            diff = model_rel - np.array(curve["energy_meV_per_fu"])
            result["model_at_reference_meV_per_fu"] = model_rel.tolist()
            result["rms_difference_meV_per_fu"] = float(np.sqrt(np.mean(diff ** 2)))
    return result


def _is_model_file(path: str) -> bool:
    """True for an exported potential, False for anything that is not a TorchScript model
    archive (then it is read as data); an exported model of another kind is an error."""
    from .contract import ContractError, load_model

    try:
        _, meta = load_model(path)
    except ContractError:
        return False
    if meta["kind"] != "potential":
        raise ValueError(f"{path}: reference model is a {meta['kind']!r} model, not a potential")
    return True


def plot_scan(result: Dict, path: str) -> None:
    """Energy (meV/f.u.) against amplitude (Å) for the model and the reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    m = result["model"]
    ax.plot(m["amplitude_A"], m["energy_meV_per_fu"], "-o", ms=3, label=f"model ({os.path.basename(m['path'])})")
    if "reference" in result:
        r = result["reference"]
        style = "--s" if r["kind"] == "model" else "s"
        ax.plot(r["amplitude_A"], r["energy_meV_per_fu"], style, ms=4, mfc="none",
                label=f"reference ({os.path.basename(r['path'])})")
    ax.axhline(0.0, color="0.7", lw=0.8)
    ax.set_xlabel("mode amplitude (Å, largest atomic displacement)")
    ax.set_ylabel("E − E(0) (meV per formula unit)")
    ax.set_title(f"{result['mode']} scan")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def write_scan(result: Dict, json_path: str, png_path: Optional[str]) -> None:
    write_json(json_path, result, indent=2)
    if png_path:
        plot_scan(result, png_path)


def write_structures(atoms, pattern: np.ndarray, amplitudes: Sequence[float], directory: str) -> List[str]:
    """POSCARs of the displaced structures (for reference calculations), one per amplitude."""
    from ase.io import write

    os.makedirs(directory, exist_ok=True)
    paths = []
    for k, amplitude in enumerate(amplitudes):
        path = os.path.join(directory, f"POSCAR_{k:03d}_{amplitude:+.4f}")
        write(path, displaced(atoms, pattern, float(amplitude)), format="vasp", direct=True)
        paths.append(path)
    return paths
