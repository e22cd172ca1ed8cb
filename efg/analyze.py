"""``efg analyze``: EFG tensors over an MD trajectory → NMR quadrupolar parameters with error bars.

For every selected frame of a LAMMPS dump, the EFG tensor of every atom comes from an exported
EFG model (``--model efg.pt``) or from EFG columns already in the dump (``compute efg/atom``:
``c_ID[1..6]`` = V_xx V_yy V_zz V_xy V_xz V_yz); with both, ``--efg-source model|columns``
chooses (no guess), and ``run.json`` records the source used. Then, per site and per species:

- ⟨V⟩, the time-averaged tensor, and C_Q(⟨V⟩), η(⟨V⟩): what NMR measures when the motion is fast
  compared with the quadrupolar frequency (motional averaging, fast-exchange limit);
- ⟨C_Q⟩, ⟨|C_Q|⟩, ⟨η⟩: averages of the instantaneous values (the static, slow-motion limit);
- standard errors from blocks of ≥ 2τ frames (τ the integrated autocorrelation time) and the
  jackknife; histograms of the instantaneous C_Q and η per species;
- for perovskites, pseudocubic lattice parameters and octahedral tilt order parameters
  (:mod:`efg.tilts`), which ``efg scan`` follows through the phase transitions;
- per species, mean-square displacements about the mean positions, and with velocities in the
  dump (and ``--md-timestep``) the vibrational DOS, for ``efg compare`` against phonopy;
- for molecular cations (MAPbI3: ``--molecule-axis C-N``, on by default when the dump has C and
  N), the reorientation of the molecular axes: C1(t), C2(t) and the correlation times τ1, τ2
  (:mod:`efg.molecules`), in ps with ``--md-timestep``, else in frames.

Outputs: ``run.json`` (everything above), ``run.npz`` (the tensors, frames × atoms × 3 × 3, V/Å²,
for re-analysis), ``run_hist.png``, and ``run_reorientation.png`` when there are molecules.
Under ``mpirun -np N`` the frames are split between ranks and rank 0 writes the same files as
a serial run.
"""
import logging
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from pyexport import nmr
from pyexport.lammps.dump import iread, read_type_map
from pyexport.octahedra import find_octahedra
from pyexport.outputs import refuse_overwriting_inputs, write_json

from .molecules import axis_vectors, find_molecular_axes, reorientation_correlation
from .statistics import estimate
from .tilts import pseudocubic_lattice, tilt_order_parameters

log = logging.getLogger(__name__)

VOIGT6 = [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]
#: longest tail–head bond of a molecular axis (Å); C–N of methylammonium is 1.47-1.50 Å
MAX_BOND_A = 1.8


def parse_types(text: Optional[str]):
    """``--types``: ``Cs,Pb,Br`` (type 1, 2, 3), or a LAMMPS data/input file to read them from."""
    if text is None:
        return None
    if Path(text).exists():
        return read_type_map(text)
    return [s.strip() for s in text.split(",") if s.strip()]


def efg_columns(atoms, prefix: Optional[str] = None) -> Optional[str]:
    """Name stem of the six EFG columns ``STEM[1..6]`` of a frame: ``prefix`` if given (it must
    exist), else the one stem with six columns whose name contains "efg" (``c_efg``, ``f_aveEFG``)
    — never another six-column quantity such as ``c_stress``."""
    stems = {k.rsplit("[", 1)[0] for k in atoms.arrays if k.endswith("]")}
    stems = {s for s in stems if all(f"{s}[{k}]" in atoms.arrays for k in range(1, 7))}
    if prefix:
        if prefix not in stems:
            raise ValueError(f"the dump has no columns {prefix}[1..6]; per-atom columns: {sorted(atoms.arrays)}")
        return prefix
    named = sorted(s for s in stems if "efg" in s.lower())
    if len(named) > 1:
        raise ValueError(f"several EFG column sets {named}: choose one with --efg-columns")
    return named[0] if named else None


def parse_molecule_axis(text: Optional[str], symbols: Sequence[str]) -> Optional[Tuple[str, str]]:
    """``--molecule-axis``: ``"C-N"`` (axis from C to N) → ("C", "N"); ``"none"`` → None;
    ``"auto"`` (or None) → ("C", "N") when both elements are in ``symbols``, else None."""
    text = "auto" if text is None else text.strip()
    if text.lower() == "none":
        return None
    if text.lower() == "auto":
        return ("C", "N") if {"C", "N"} <= set(symbols) else None
    parts = [s.strip() for s in text.split("-")]
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise ValueError(f"--molecule-axis {text!r}: expected TAIL-HEAD (e.g. C-N), auto or none")
    missing = [p for p in parts if p not in set(symbols)]
    if missing:
        raise ValueError(f"--molecule-axis {text!r}: no {', '.join(missing)} atoms in the dump "
                         f"(elements: {sorted(set(symbols))})")
    return parts[0], parts[1]


def molecular_axes_of(atoms, axis: Optional[Tuple[str, str]], dump) -> Optional[np.ndarray]:
    """(n_mol, 2) tail/head indices of the molecules on the reference frame, or None."""
    if axis is None:
        return None
    tail, head = axis
    try:
        return find_molecular_axes(atoms, head=head, tail=tail, max_bond_A=MAX_BOND_A)
    except ValueError as error:
        raise ValueError(f"{dump}: first selected frame: {error} (atom indices from 0 in id order; "
                         "--molecule-axis none switches the molecular analysis off)") from error


#: where the EFG tensors come from (``--efg-source``)
EFG_SOURCES = ("auto", "model", "columns")


def choose_efg_source(dump, model_path: Optional[str], columns: Optional[str], source: str = "auto"
                      ) -> Optional[str]:
    """The EFG column stem to use, or None for the model. ``columns`` is the stem found in the
    dump (None: no EFG columns), ``source`` one of :data:`EFG_SOURCES`; "auto" takes the only
    source there is and refuses to guess when the dump has EFG columns and a model is given too."""
    if source not in EFG_SOURCES:
        raise ValueError(f"--efg-source {source!r}: expected one of {', '.join(EFG_SOURCES)}")
    if source == "model" or (source == "auto" and columns is None):
        if model_path is None:
            raise ValueError(f"{dump}: no EFG columns (c_ID[1..6]) in the dump and no --model given"
                             if columns is None else "--efg-source model needs --model")
        return None
    if columns is None:
        raise ValueError(f"{dump}: --efg-source columns, but the dump has no EFG columns (c_ID[1..6])")
    if source == "auto" and model_path is not None:
        raise ValueError(f"{dump}: two sources of EFG tensors: the dump's columns {columns}[1..6] and the "
                         f"model {model_path}; choose one with --efg-source columns or --efg-source model")
    return columns


def tensors_from_columns(atoms, stem: str) -> np.ndarray:
    v6 = np.stack([atoms.arrays[f"{stem}[{k}]"] for k in range(1, 7)], axis=1)
    return nmr.from_voigt6(v6)


# ------------------------------------------------------------------------------------------
# Reading and evaluating frames (the expensive part; split between MPI ranks)
# ------------------------------------------------------------------------------------------
def evaluate_frames(dump, types, index: str, model_path: Optional[str], columns: Optional[str],
                    batch_atoms: int, progress: bool, rank: int = 0, size: int = 1,
                    molecule_axis: Optional[str] = "auto", efg_source: str = "auto"):
    """Evaluate the frames of this rank (frame k goes to rank k mod size).

    Returns (results, first frame, perovskite sites or None, EFG column stem or None, molecules);
    molecules is None or ((tail, head), (n_mol, 2) atom indices). results holds per frame: frame
    number, timestep, tensors (N, 3, 3) V/Å², cell (3, 3) Å, structural order parameters, and
    the molecular axes (n_mol, 3) unit vectors when there are molecules."""
    from tqdm import tqdm

    model = None
    if model_path is not None and efg_source != "columns":
        from pyexport.contract import load_model
        model, _ = load_model(model_path, kind="efg")
    frames = iread(dump, types=types, index=index)
    results = {"frame": [], "timestep": [], "tensors": [], "cells": [], "structure": [], "scaled": [],
               "velocities": [], "axes": []}
    first = None
    sites = None
    axis, pairs = None, None
    axes_of_frame = {}
    pending = []
    bar = tqdm(desc=f"efg analyze {Path(dump).name}", unit="frame", disable=not progress or rank != 0,
               file=sys.stderr)

    def flush():
        if not pending:
            return
        if columns is None:
            from pyexport.efg_eval import predict_efg
            tensors = predict_efg(model, [a for _, a in pending], batch_atoms=batch_atoms)
        else:
            tensors = [tensors_from_columns(a, columns) for _, a in pending]
        for (k, a), v in zip(pending, tensors):
            v = np.asarray(v, dtype=np.float64)
            bad = np.flatnonzero(~np.isfinite(v).all(axis=(1, 2)))
            if len(bad):
                source = f"dump columns {columns}[1..6]" if columns else f"model {model_path}"
                raise ValueError(f"{dump}: frame {k} (timestep {a.info.get('timestep')}): the EFG tensor of "
                                 f"atom {int(bad[0])} (from 0 in id order) from the {source} is not finite: "
                                 f"{v[bad[0]].tolist()}")
            results["frame"].append(k)
            results["timestep"].append(int(a.info.get("timestep", k)))
            results["tensors"].append(v)
            results["cells"].append(a.cell.array.copy())
            results["scaled"].append(np.linalg.solve(a.cell.array.T, a.positions.T).T)
            if all(k in a.arrays for k in ("vx", "vy", "vz")):
                results["velocities"].append(np.stack([a.arrays[k] for k in ("vx", "vy", "vz")], axis=1))
            results["structure"].append(structure_of(a, sites))
            if pairs is not None:
                results["axes"].append(axes_of_frame.pop(k))
        bar.update(len(pending))
        pending.clear()

    for k, atoms in enumerate(frames):
        if first is None:
            first = atoms
            columns = choose_efg_source(dump, model_path, efg_columns(atoms, columns), efg_source)
            try:
                sites = find_octahedra(atoms)
            except ValueError as error:
                sites = None
                if rank == 0:
                    log.warning("%s: no tilt or lattice analysis: the first selected frame is %s",
                                dump, error)
            axis = parse_molecule_axis(molecule_axis, atoms.get_chemical_symbols())
            pairs = molecular_axes_of(atoms, axis, dump)
        if pairs is not None:
            # every rank checks every frame (cheap), so that a broken molecule stops all ranks alike
            try:
                axes = axis_vectors(atoms, pairs, MAX_BOND_A)
            except ValueError as error:
                raise ValueError(f"{dump}: frame {k} (timestep {atoms.info.get('timestep')}): {error} "
                                 "(atom indices from 0 in id order)") from error
        if k % size != rank:
            continue
        if pairs is not None:
            axes_of_frame[k] = axes
        pending.append((k, atoms))
        if sum(len(a) for _, a in pending) >= batch_atoms:
            flush()
    flush()
    bar.close()
    if first is None:
        raise ValueError(f"{dump}: no frames selected by index {index!r}")
    return results, first, sites, columns, (None if pairs is None else (axis, pairs))


def structure_of(atoms, sites) -> dict:
    if sites is None:
        return {}
    lattice, angles = pseudocubic_lattice(atoms, sites.repeats)
    out = {"lattice_pc_A": lattice, "angles_deg": angles}
    out.update(tilt_order_parameters(atoms, sites))
    return out


# ------------------------------------------------------------------------------------------
# Statistics (rank 0)
# ------------------------------------------------------------------------------------------
def _est(series, statistic=None, tau_series=None) -> dict:
    e = estimate(series, statistic, tau_series)
    return {"value": np.asarray(e.value).tolist(), "error": np.asarray(e.error).tolist(),
            "tau_frames": e.tau, "block_frames": e.block_length, "n_blocks": e.n_blocks}


def site_statistics(tensors: np.ndarray, q_mb: np.ndarray) -> dict:
    """Per-site estimates from tensors (F, N, 3, 3) and quadrupole moments (N,) mb (nan = none)."""
    v6 = np.stack([tensors[..., a, b] for a, b in VOIGT6], axis=-1)           # (F, N, 6)
    cq_inst = nmr.CQ_MHZ_PER_MB_V_PER_A2 * q_mb[None, :] * nmr.vzz(tensors)  # (F, N)
    eta_inst = nmr.eta(tensors)
    tau_series = v6.reshape(v6.shape[0], -1)

    def cq_of_mean(mean6):
        return nmr.CQ_MHZ_PER_MB_V_PER_A2 * q_mb * nmr.vzz(nmr.from_voigt6(mean6))

    def eta_of_mean(mean6):
        return nmr.eta(nmr.from_voigt6(mean6))

    return {
        "mean_tensor_voigt6": _est(v6, tau_series=tau_series),
        "cq_of_mean_tensor_mhz": _est(v6, cq_of_mean, tau_series),
        "eta_of_mean_tensor": _est(v6, eta_of_mean, tau_series),
        "mean_cq_mhz": _est(cq_inst, tau_series=tau_series),
        "mean_abs_cq_mhz": _est(np.abs(cq_inst), tau_series=tau_series),
        "mean_eta": _est(eta_inst, tau_series=tau_series),
    }, cq_inst, eta_inst


def species_statistics(tensors, q_mb, symbols, isotopes) -> dict:
    """Per species: site averages of the per-site quantities, with errors from the same blocks."""
    out = {}
    v6 = np.stack([tensors[..., a, b] for a, b in VOIGT6], axis=-1)
    tau_series = v6.reshape(v6.shape[0], -1)
    for element in dict.fromkeys(symbols):
        mask = symbols == element
        q = q_mb[mask]
        entry = {"n_sites": int(mask.sum()), "isotope": isotopes.get(element)}
        sub6 = v6[:, mask]

        def cq_sites_of_mean(mean6, q=q):
            return nmr.CQ_MHZ_PER_MB_V_PER_A2 * q * nmr.vzz(nmr.from_voigt6(mean6))

        entry["cq_of_mean_tensor_mhz"] = _est(sub6, lambda m: cq_sites_of_mean(m).mean(), tau_series)
        entry["abs_cq_of_mean_tensor_mhz"] = _est(sub6, lambda m: np.abs(cq_sites_of_mean(m)).mean(), tau_series)
        entry["eta_of_mean_tensor"] = _est(sub6, lambda m: nmr.eta(nmr.from_voigt6(m)).mean(), tau_series)
        vzz_inst = nmr.vzz(tensors[:, mask])
        cq_inst = nmr.CQ_MHZ_PER_MB_V_PER_A2 * q[None, :] * vzz_inst
        eta_inst = nmr.eta(tensors[:, mask])
        entry["mean_cq_mhz"] = _est(cq_inst.mean(axis=1), tau_series=tau_series)
        entry["mean_abs_cq_mhz"] = _est(np.abs(cq_inst).mean(axis=1), tau_series=tau_series)
        entry["mean_eta"] = _est(eta_inst.mean(axis=1), tau_series=tau_series)
        entry["mean_abs_vzz_V_per_A2"] = _est(np.abs(vzz_inst).mean(axis=1), tau_series=tau_series)
        if entry["isotope"] is not None:
            cq_values = cq_inst.ravel()
            counts, edges = np.histogram(cq_values, bins=60)
            entry["histogram_cq_mhz"] = {"counts": counts.tolist(), "edges": edges.tolist()}
        counts, edges = np.histogram(eta_inst.ravel(), bins=40, range=(0.0, 1.0))
        entry["histogram_eta"] = {"counts": counts.tolist(), "edges": edges.tolist()}
        out[element] = entry
    return out


def structure_statistics(structure: List[dict]) -> dict:
    if not structure or not structure[0]:
        return {}
    out = {}
    for key in structure[0]:
        series = np.array([s[key] for s in structure])
        out[key] = _est(series)
    return out


def displacement_msd(scaled: np.ndarray, cells: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Per frame and atom, u ⊗ u (F, N, 3, 3) Å² of the displacement u from the atom's mean
    position over the run. Atoms are followed across periodic boundaries (frames must be close
    enough in time that no atom moves half a cell between them); the centre-of-mass motion of
    each frame is removed."""
    step = np.diff(scaled, axis=0)
    step -= np.round(step)
    unwrapped = np.concatenate([scaled[:1], scaled[:1] + np.cumsum(step, axis=0)])
    u = np.einsum("fnj,fjk->fnk", unwrapped - unwrapped.mean(axis=0), cells)
    u -= (masses[None, :, None] * u).sum(axis=1, keepdims=True) / masses.sum()
    return u[..., :, None] * u[..., None, :]


def vibrational_dos(velocities: np.ndarray, masses: np.ndarray, frame_dt_ps: float) -> dict:
    """Vibrational density of states from the mass-weighted velocity autocorrelation (Å/ps):
    the power spectrum of the velocities, (F, N, 3) frames dt apart, normalised to unit area
    over frequency (THz). Hann-windowed; resolution 1/(F dt)."""
    v = velocities - velocities.mean(axis=0)
    n = v.shape[0]
    window = np.hanning(n)[:, None, None]
    spectrum = np.abs(np.fft.rfft(v * window, axis=0)) ** 2
    power = (masses[None, :, None] * spectrum).sum(axis=(1, 2))
    freq = np.fft.rfftfreq(n, d=frame_dt_ps)
    area = np.trapezoid(power, freq)
    return {"frequencies_THz": freq.tolist(), "dos_normalised": (power / area).tolist(),
            "frame_dt_ps": frame_dt_ps, "nyquist_THz": 0.5 / frame_dt_ps}


def msd_statistics(uu: np.ndarray, symbols: np.ndarray) -> dict:
    """Per species: mean-square displacement tensor (3, 3) and isotropic MSD, Å², with errors."""
    out = {}
    for element in dict.fromkeys(symbols):
        series = uu[:, symbols == element].mean(axis=1)                 # (F, 3, 3)
        out[element] = {"msd_tensor_A2": _est(series.reshape(len(series), 9)),
                        "msd_iso_A2": _est(np.trace(series, axis1=1, axis2=2) / 3.0)}
        out[element]["msd_tensor_A2"]["value"] = np.reshape(out[element]["msd_tensor_A2"]["value"], (3, 3)).tolist()
        out[element]["msd_tensor_A2"]["error"] = np.reshape(out[element]["msd_tensor_A2"]["error"], (3, 3)).tolist()
    return out


def frame_spacing(timesteps: Sequence[int]) -> Optional[int]:
    """MD steps between consecutive frames, or None if they are not evenly spaced (a restart
    that repeats frames, a gap) or there are fewer than two frames."""
    steps = np.diff(np.asarray(timesteps, dtype=np.int64))
    if len(steps) == 0 or steps[0] <= 0 or np.any(steps != steps[0]):
        return None
    return int(steps[0])


def molecule_statistics(axes: np.ndarray, axis: Tuple[str, str], timesteps: Sequence[int],
                        md_timestep_ps: Optional[float]) -> dict:
    """The ``molecules`` section of run.json from the axes (F, n_mol, 3) of all frames: C1(t),
    C2(t), τ1, τ2 in ps (``md_timestep_ps`` given) or in frames (not given)."""
    tail, head = axis
    out = {"axis": f"{tail}->{head}", "max_bond_A": MAX_BOND_A, "n_molecules": int(axes.shape[1])}
    spacing = frame_spacing(timesteps)
    if spacing is None:
        shown = ", ".join(str(t) for t in timesteps[:6]) + (", ..." if len(timesteps) > 6 else "")
        out["skipped"] = ("no reorientation analysis: it needs two or more frames evenly spaced in time; "
                          f"the run has {len(timesteps)} at timesteps {shown}")
        return out
    frame_dt_ps = spacing * md_timestep_ps if md_timestep_ps else None
    corr = reorientation_correlation(axes, frame_dt_ps)
    unit = corr["time_unit"]
    out.update({"frame_dt_ps": frame_dt_ps, "time_unit": unit, "steps_per_frame": spacing,
                "n_frames": corr["n_frames"], "n_bootstrap": corr["n_bootstrap"]})
    if frame_dt_ps is None:
        out["note"] = "no --md-timestep: lags and correlation times are in frames"
    out[f"tau1_{unit}"] = corr["tau1"]
    out[f"tau2_{unit}"] = corr["tau2"]
    for name in ("C1", "C2"):
        out[name] = {f"lag_{unit}": corr["lag"], **corr[name]}
    return out


def analyze(dump, model=None, types=None, isotopes=None, index=":", every=1, columns=None,
            batch_atoms=4000, temperature=None, md_timestep_ps=None, output=None, progress=True,
            comm=None, molecule_axis="auto", efg_source="auto") -> Optional[dict]:
    """Run the analysis; returns the report dict (on rank 0; None on other ranks) and writes
    ``output`` (.json), with ``.npz`` and ``_hist.png`` beside it, when given.
    ``isotopes`` {element: isotope} for C_Q; the other elements get their default isotope
    (:func:`pyexport.nmr.resolve_isotopes`). ``md_timestep_ps`` (the MD time step) enables the vibrational DOS from the dump's velocities
    and puts the molecular reorientation times in ps. ``molecule_axis``: "auto", "none" or
    "TAIL-HEAD" (see :func:`parse_molecule_axis`). ``efg_source``: "auto", "model" or "columns"
    (see :func:`choose_efg_source`); the report records the source used."""
    start_time = time.time()
    if output:
        refuse_overwriting_inputs([dump, model, types if isinstance(types, str) else None],
                                  output_files(output))
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)
    type_map = parse_types(types) if isinstance(types, str) or types is None else types
    if every > 1:
        index = _compose_every(index, every)
    results, first, sites, columns, molecules = evaluate_frames(dump, type_map, index, model, columns, batch_atoms,
                                                                progress, rank, size, molecule_axis,
                                                                efg_source)
    if comm is not None:
        gathered = comm.gather(results, root=0)
        if rank != 0:
            return None
        results = {key: [item for part in gathered for item in part[key]] for key in results}
        order = np.argsort(results["frame"], kind="stable")
        # velocities (and molecular axes) are there for every frame or for none (one dump):
        # reorder only what is there
        results = {key: [values[k] for k in order] if len(values) == len(order) else []
                   for key, values in results.items()}

    symbols = np.array(first.get_chemical_symbols())
    iso = nmr.resolve_isotopes(list(dict.fromkeys(symbols)), isotopes)
    q_mb = np.array([nmr.quadrupole_moment_mb(iso[s]) if s in iso else np.nan for s in symbols])
    tensors = np.stack(results["tensors"])
    if tensors.shape[1:] != (len(symbols), 3, 3):
        raise ValueError(f"{dump}: frames do not all have {len(symbols)} atoms")

    sites_stats, _, _ = site_statistics(tensors, np.nan_to_num(q_mb, nan=0.0))
    masses = first.get_masses()
    dynamics = {}
    if tensors.shape[0] >= 2:
        uu = displacement_msd(np.stack(results["scaled"]), np.stack(results["cells"]), masses)
        dynamics["msd"] = msd_statistics(uu, symbols)
    if results["velocities"] and md_timestep_ps and len(results["velocities"]) >= 8:
        steps = np.diff(results["timestep"])
        if np.all(steps == steps[0]) and steps[0] > 0:
            dynamics["vdos"] = vibrational_dos(np.stack(results["velocities"]), masses,
                                               float(steps[0]) * md_timestep_ps)
        else:
            dynamics["vdos_skipped"] = "frames are not evenly spaced in time"
    report = {
        "efgmd": "efg analyze",
        "dump": str(dump),
        "model": None if columns else str(model),         # the model used, None when columns were
        "efg_source": f"dump columns {columns}[1..6]" if columns else "model",
        "temperature_K": temperature,
        "n_frames": int(tensors.shape[0]),
        "n_atoms": int(tensors.shape[1]),
        "frames": [int(f) for f in results["frame"]],
        "timesteps": [int(t) for t in results["timestep"]],
        "isotopes": iso,
        "quadrupole_moments_mb": {s: nmr.quadrupole_moment_mb(i) for s, i in iso.items()},
        "species": species_statistics(tensors, np.nan_to_num(q_mb, nan=0.0), symbols, iso),
        "sites": {"symbols": symbols.tolist(), **sites_stats},
        "structure": structure_statistics(results["structure"]),
        "dynamics": dynamics,
        "perovskite": ({"B": sites.b_symbol, "X": sites.x_symbol, "repeats": sites.repeats.tolist()}
                       if sites is not None else None),
        "conventions": "V in V/Å², VASP order xx yy zz xy xz yz; |Vzz|>=|Vyy|>=|Vxx|; "
                       "C_Q = e Q Vzz / h (MHz, signed); eta = (Vxx - Vyy)/Vzz; "
                       "null = no number (undefined or not computed)",
        "wall_time_s": time.time() - start_time,
    }
    if molecules is not None:
        report["molecules"] = molecule_statistics(np.stack(results["axes"]), molecules[0], results["timestep"],
                                                  md_timestep_ps)
        if "skipped" in report["molecules"]:
            log.warning("%s: %s", dump, report["molecules"]["skipped"])
    report["wall_time_s"] = time.time() - start_time
    if output:
        write_outputs(report, tensors, output)
    return report


def _compose_every(index: str, every: int) -> str:
    """Apply ``--every N`` on top of a ``start:stop:step`` selection."""
    parts = (index.split(":") + ["", "", ""])[:3] if ":" in index else None
    if parts is None:
        raise ValueError(f"--every needs a slice index, got {index!r}")
    step = int(parts[2]) if parts[2] else 1
    return f"{parts[0]}:{parts[1]}:{step * every}"


def output_files(output) -> List[Path]:
    """Every file :func:`write_outputs` may write for ``output`` (run.json)."""
    stem = Path(output).with_suffix("")
    return [Path(output), Path(f"{stem}.npz"), Path(f"{stem}_hist.png"), Path(f"{stem}_reorientation.png")]


def write_outputs(report: dict, tensors: np.ndarray, output) -> None:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    stem = output.with_suffix("")
    np.savez_compressed(f"{stem}.npz", efg_V_per_A2=tensors, symbols=np.array(report["sites"]["symbols"]),
                        timesteps=np.array(report["timesteps"]))
    report["tensors_file"] = f"{stem.name}.npz"
    report["histogram_png"] = f"{stem.name}_hist.png"
    if "C1" in report.get("molecules", {}):
        report["reorientation_png"] = f"{stem.name}_reorientation.png"
        plot_reorientation(report["molecules"], f"{stem}_reorientation.png")
    write_json(output, report)
    plot_histograms(report, f"{stem}_hist.png")


def plot_histograms(report: dict, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    species = [s for s, e in report["species"].items() if "histogram_cq_mhz" in e]
    if not species:
        return
    fig, axes = plt.subplots(len(species), 2, figsize=(9, 2.8 * len(species)), squeeze=False)
    for row, element in zip(axes, species):
        entry = report["species"][element]
        for ax, key, label in ((row[0], "histogram_cq_mhz", f"C_Q({entry['isotope']}) [MHz]"),
                               (row[1], "histogram_eta", "η")):
            h = entry[key]
            edges = np.array(h["edges"])
            ax.stairs(h["counts"], edges, fill=True, alpha=0.6)
            ax.set_xlabel(label)
            ax.set_ylabel("count (sites × frames)")
        cq = entry["cq_of_mean_tensor_mhz"]
        row[0].axvline(cq["value"], color="k", ls="--", label=f"C_Q(⟨V⟩) = {cq['value']:.3f} MHz")
        row[0].legend(fontsize=8)
        row[0].set_title(f"{element}: {report['n_frames']} frames"
                         + (f", {report['temperature_K']} K" if report.get("temperature_K") else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_reorientation(molecules: dict, path) -> None:
    """C1(t) and C2(t) with their bootstrap error bands, the threshold ε of τ, and τ1, τ2."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = molecules["time_unit"]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for k, name in enumerate(("C1", "C2")):
        curve = molecules[name]
        lag, value = np.array(curve[f"lag_{unit}"]), np.array(curve["value"])
        tau = molecules[f"tau{name[1]}_{unit}"]
        label = (f"{name}: τ{name[1]} = {tau['value']:.3g}" + (f" ± {tau['error']:.2g}" if tau["error"] else "")
                 + f" {unit}" if tau["decorrelated"] else
                 f"{name}: not decorrelated within the run (plateau {tau['plateau']:.2f})")
        ax.plot(lag, value, color=f"C{k}", label=label)
        if curve["error"] is not None:
            error = np.array(curve["error"])
            ax.fill_between(lag, value - error, value + error, color=f"C{k}", alpha=0.25, lw=0)
    ax.axhline(molecules["tau1_" + unit]["threshold"], color="k", ls=":", lw=1, label="ε = e⁻³")
    ax.axhline(0.0, color="0.5", lw=0.5)
    ax.set_xlabel(f"lag ({unit})")
    ax.set_ylabel("reorientation correlation")
    ax.set_title(f"{molecules['n_molecules']} molecular axes {molecules['axis']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
