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
  (:mod:`efg.molecules`), in ps with ``--md-timestep``, else in frames;
- NQR-ready results (:mod:`efg.nqr`): per quadrupolar species the pure-NQR lines of its spin
  from ⟨V⟩ (with errors) and averaged over frames, their line shapes over sites × frames; per
  site the principal values, axes and ZYZ Euler angles of ⟨V⟩; with ``magres`` a ``.magres``
  file of ⟨V⟩ on the average structure (Soprano, MagresView, ASE read it).

Outputs: ``run.json`` (everything above), ``run.npz`` (the tensors, frames × atoms × 3 × 3, V/Å²,
for re-analysis), ``run_hist.png``, ``run_nqr.png`` (NQR line shapes), and
``run_reorientation.png`` when there are molecules.
Under ``mpirun -np N`` the frames are split between ranks and rank 0 writes the same files as
a serial run.

Structure: this module reads the frames, gets their EFG tensors (model, batched over frames, or
dump columns) and computes the NMR statistics, written through the typed sections of
:mod:`efg.report`; every other per-frame quantity is a step of :mod:`efg.frame_steps`
(prepare / frame / conclude), so a new one is one class there plus its entry in ``STEPS``.
The command line is :mod:`efg.cli.analyze`.
"""
import logging
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from pyexport import nmr
from pyexport.magres import write_magres
from pyexport.lammps.dump import read_type_map
from pyexport.trajectories import iread
from pyexport.outputs import refuse_overwriting_inputs, write_json

from .frame_steps import FrameStep, make_steps
from .nqr import average_structure, plot_nqr_lines, site_orientation, species_nqr
from .report import Estimate, SpeciesNMR
from .statistics import estimate_entry

log = logging.getLogger(__name__)

VOIGT6 = [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]


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
                    steps: Sequence[FrameStep] = (), efg_source: str = "auto"):
    """Evaluate the frames of this rank (frame k goes to rank k mod size).

    Returns (results, first frame, EFG column stem or None, the steps that are on). results
    holds per frame: frame number, timestep, tensors (N, 3, 3) V/Å², and the value of each step
    under its name (:mod:`efg.frame_steps`)."""
    from tqdm import tqdm

    model = None
    if model_path is not None and efg_source != "columns":
        from pyexport.contract import load_model
        model, _ = load_model(model_path, kind="efg")
    frames = iread(dump, types=types, index=index)
    results = None
    first = None
    pending = []                       # (k, atoms, {step: value}) waiting for the EFG model
    bar = tqdm(desc=f"efg analyze {Path(dump).name}", unit="frame", disable=not progress or rank != 0,
               file=sys.stderr)

    def flush():
        if not pending:
            return
        if columns is None:
            from pyexport.efg_eval import predict_efg
            tensors = predict_efg(model, [a for _, a, _ in pending], batch_atoms=batch_atoms)
        else:
            tensors = [tensors_from_columns(a, columns) for _, a, _ in pending]
        for (k, a, values), v in zip(pending, tensors):
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
            for step in steps:
                results[step.name].append(values[step.name] if step.name in values else step.frame(k, a))
        bar.update(len(pending))
        pending.clear()

    for k, atoms in enumerate(frames):
        if first is None:
            first = atoms
            columns = choose_efg_source(dump, model_path, efg_columns(atoms, columns), efg_source)
            context = {"dump": dump, "rank": rank}
            steps = [step for step in steps if step.prepare(first, context)]
            results = {key: [] for key in ["frame", "timestep", "tensors"] + [s.name for s in steps]}
        # steps that check every frame see them all, on every rank
        checked = {step.name: step.frame(k, atoms) for step in steps if step.checks_every_frame}
        if k % size != rank:
            continue
        pending.append((k, atoms, checked))
        if sum(len(a) for _, a, _ in pending) >= batch_atoms:
            flush()
    flush()
    bar.close()
    if first is None:
        raise ValueError(f"{dump}: no frames selected by index {index!r}")
    return results, first, columns, steps


# ------------------------------------------------------------------------------------------
# Statistics (rank 0)
# ------------------------------------------------------------------------------------------
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
        "mean_tensor_voigt6": estimate_entry(v6, tau_series=tau_series),
        "cq_of_mean_tensor_mhz": estimate_entry(v6, cq_of_mean, tau_series),
        "eta_of_mean_tensor": estimate_entry(v6, eta_of_mean, tau_series),
        "mean_cq_mhz": estimate_entry(cq_inst, tau_series=tau_series),
        "mean_abs_cq_mhz": estimate_entry(np.abs(cq_inst), tau_series=tau_series),
        "mean_eta": estimate_entry(eta_inst, tau_series=tau_series),
    }, cq_inst, eta_inst


def species_statistics(tensors, q_mb, symbols, isotopes) -> Dict[str, SpeciesNMR]:
    """Per species: site averages of the per-site quantities, with errors from the same blocks."""
    out = {}
    v6 = np.stack([tensors[..., a, b] for a, b in VOIGT6], axis=-1)
    tau_series = v6.reshape(v6.shape[0], -1)

    def estimated(series, statistic=None) -> Estimate:
        return Estimate(**estimate_entry(series, statistic, tau_series))

    for element in dict.fromkeys(symbols):
        mask = symbols == element
        q = q_mb[mask]
        isotope = isotopes.get(element)
        sub6 = v6[:, mask]

        def cq_sites_of_mean(mean6, q=q):
            return nmr.CQ_MHZ_PER_MB_V_PER_A2 * q * nmr.vzz(nmr.from_voigt6(mean6))

        vzz_inst = nmr.vzz(tensors[:, mask])
        cq_inst = nmr.CQ_MHZ_PER_MB_V_PER_A2 * q[None, :] * vzz_inst
        eta_inst = nmr.eta(tensors[:, mask])
        histogram_cq = None
        if isotope is not None:
            counts, edges = np.histogram(cq_inst.ravel(), bins=60)
            histogram_cq = {"counts": counts.tolist(), "edges": edges.tolist()}
        counts, edges = np.histogram(eta_inst.ravel(), bins=40, range=(0.0, 1.0))
        out[element] = SpeciesNMR(
            n_sites=int(mask.sum()), isotope=isotope,
            cq_of_mean_tensor_mhz=estimated(sub6, lambda m: cq_sites_of_mean(m).mean()),
            abs_cq_of_mean_tensor_mhz=estimated(sub6, lambda m: np.abs(cq_sites_of_mean(m)).mean()),
            eta_of_mean_tensor=estimated(sub6, lambda m: nmr.eta(nmr.from_voigt6(m)).mean()),
            mean_cq_mhz=estimated(cq_inst.mean(axis=1)),
            mean_abs_cq_mhz=estimated(np.abs(cq_inst).mean(axis=1)),
            mean_eta=estimated(eta_inst.mean(axis=1)),
            mean_abs_vzz_V_per_A2=estimated(np.abs(vzz_inst).mean(axis=1)),
            histogram_eta={"counts": counts.tolist(), "edges": edges.tolist()},
            histogram_cq_mhz=histogram_cq)
    return out


def analyze(dump, model=None, types=None, isotopes=None, index=":", every=1, columns=None,
            batch_atoms=4000, temperature=None, md_timestep_ps=None, output=None, progress=True,
            comm=None, molecule_axis="auto", efg_source="auto", magres=None) -> Optional[dict]:
    """Run the analysis; returns the report dict (on rank 0; None on other ranks) and writes
    ``output`` (.json), with ``.npz`` and ``_hist.png`` beside it, when given.
    ``isotopes`` {element: isotope} for C_Q; the other elements get their default isotope
    (:func:`pyexport.nmr.resolve_isotopes`). ``md_timestep_ps`` (the MD time step) enables the vibrational DOS from the dump's velocities
    and puts the molecular reorientation times in ps. ``molecule_axis``: "auto", "none" or
    "TAIL-HEAD" (see :func:`parse_molecule_axis`). ``efg_source``: "auto", "model" or "columns"
    (see :func:`choose_efg_source`); the report records the source used. ``magres``: a
    ``.magres`` file to write the time-averaged tensors ⟨V⟩ of every atom to, on the average
    structure (:func:`pyexport.magres.write_magres`)."""
    start_time = time.time()
    if output or magres:
        refuse_overwriting_inputs([dump, model, types if isinstance(types, str) else None],
                                  (output_files(output) if output else []) + [magres])
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)
    type_map = parse_types(types) if isinstance(types, str) or types is None else types
    if every > 1:
        index = _compose_every(index, every)
    steps = make_steps(molecule_axis)
    results, first, columns, steps = evaluate_frames(dump, type_map, index, model, columns, batch_atoms,
                                                     progress, rank, size, steps, efg_source)
    if comm is not None:
        gathered = comm.gather(results, root=0)
        if rank != 0:
            return None
        results = {key: [item for part in gathered for item in part[key]] for key in results}
        order = np.argsort(results["frame"], kind="stable")
        results = {key: [values[k] for k in order] for key, values in results.items()}

    symbols = np.array(first.get_chemical_symbols())
    iso = nmr.resolve_isotopes(list(dict.fromkeys(symbols)), isotopes)
    q_mb = np.array([nmr.quadrupole_moment_mb(iso[s]) if s in iso else np.nan for s in symbols])
    tensors = np.stack(results["tensors"])
    if tensors.shape[1:] != (len(symbols), 3, 3):
        raise ValueError(f"{dump}: frames do not all have {len(symbols)} atoms")

    sites_stats, _, _ = site_statistics(tensors, np.nan_to_num(q_mb, nan=0.0))
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
        "species": {element: entry.to_json() for element, entry in
                    species_statistics(tensors, np.nan_to_num(q_mb, nan=0.0), symbols, iso).items()},
        "nqr": {element: entry.to_json() for element, entry in species_nqr(tensors, symbols, iso).items()},
        "sites": {"symbols": symbols.tolist(), **sites_stats, **site_orientation(tensors.mean(axis=0))},
        # the sections of the per-frame steps (efg.frame_steps) go here, in this order
        "structure": {}, "dynamics": {}, "perovskite": None,
        "conventions": "V in V/Å², VASP order xx yy zz xy xz yz; |Vzz|>=|Vyy|>=|Vxx| (NQR order; "
                       "Haeberlen's Vxx, Vyy are our Vyy, Vxx, same eta); "
                       "C_Q = e Q Vzz / h (MHz, signed); eta = (Vxx - Vyy)/Vzz; "
                       "NQR lines in MHz by transition (pyexport.nqr), from |C_Q| and eta; "
                       "principal axes: rows x, y, z (right-handed); Euler angles active ZYZ, "
                       "R = Rz(alpha) Ry(beta) Rz(gamma), V = R diag(Vxx, Vyy, Vzz) R^T, degrees; "
                       "null = no number (undefined or not computed)",
        "wall_time_s": time.time() - start_time,
    }
    context = {"dump": dump, "timesteps": results["timestep"], "masses": first.get_masses(),
               "symbols": symbols, "md_timestep_ps": md_timestep_ps}
    for step in steps:
        step.conclude(results[step.name], report, context)
    if magres:
        report["magres_file"] = str(write_magres_of_run(magres, dump, first, tensors, results, report))
    report["wall_time_s"] = time.time() - start_time
    if output:
        write_outputs(report, tensors, output)
    return report


def write_magres_of_run(path, dump, first, tensors: np.ndarray, results: dict, report: dict):
    """⟨V⟩ of the run as a ``.magres`` file, on the average structure of the frames' positions
    and cells (kept by the ``dynamics`` step; the first frame when that step is off)."""
    if "dynamics" in results:
        structure = average_structure(first, np.stack([v[0] for v in results["dynamics"]]),
                                      np.stack([v[1] for v in results["dynamics"]]))
        where = "on the average structure (mean positions and cell)"
    else:
        structure, where = first, "on the first analysed frame"
    steps = report["timesteps"]
    comments = [f"efgmd efg analyze: motional average (time-averaged EFG tensor) of {len(steps)} frames "
                f"(timesteps {steps[0]}..{steps[-1]}) of {Path(dump).name}, {where}",
                "EFG source: " + report["efg_source"].replace("[", "(").replace("]", ")")   # '[' opens blocks
                + (f"; temperature {report['temperature_K']:g} K" if report.get("temperature_K") else "")]
    return write_magres(path, structure, tensors.mean(axis=0), comments=comments)


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
    return [Path(output), Path(f"{stem}.npz"), Path(f"{stem}_hist.png"), Path(f"{stem}_nqr.png"),
            Path(f"{stem}_reorientation.png")]


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
    if report.get("nqr"):
        report["nqr_png"] = f"{stem.name}_nqr.png"
    write_json(output, report)
    plot_histograms(report, f"{stem}_hist.png")
    plot_nqr_lines(report, f"{stem}_nqr.png")


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
