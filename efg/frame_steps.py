"""The per-frame quantities of ``efg analyze`` besides the EFG tensors, one class each.

The pattern is MDAnalysis's ``AnalysisBase``: a :class:`FrameStep` is prepared once on the first
selected frame (every MPI rank), computes one picklable value per frame of its rank, and, on
rank 0 with the values of all frames in order, concludes into its sections of the report.
A new per-frame quantity is one class here and its name in :data:`STEPS`:

- :class:`Structure`: pseudocubic lattice and octahedral tilt order parameters of perovskites
  (``structure``, ``perovskite``);
- :class:`Dynamics`: mean-square displacements about the mean positions and, with velocities
  and the MD time step, the vibrational DOS (``dynamics``);
- :class:`Molecules`: reorientation of molecular axes, C1(t), C2(t), τ1, τ2 (``molecules``).
"""
import logging
from typing import List, Optional, Sequence, Tuple

import numpy as np

from pyexport.octahedra import find_octahedra

from .molecules import axis_vectors, find_molecular_axes, reorientation_correlation
from .statistics import estimate_entry
from .tilts import pseudocubic_lattice, tilt_order_parameters

log = logging.getLogger(__name__)

#: longest tail–head bond of a molecular axis (Å); C–N of methylammonium is 1.47-1.50 Å
MAX_BOND_A = 1.8


class FrameStep:
    """One per-frame quantity of ``efg analyze``.

    ``name`` keys its values in the gathered results. :meth:`prepare` sees the first selected
    frame (on every rank) and returns False to switch the step off; :meth:`frame` returns the
    value of one frame; :meth:`conclude` (rank 0) adds the step's sections to ``report`` from the
    values of all frames, in frame order. ``context`` holds what the run knows: ``dump``, ``rank``,
    ``timesteps`` (conclude), ``masses``, ``symbols``, ``md_timestep_ps``.
    A step whose ``checks_every_frame`` is True sees every frame on every rank (so that a
    problem stops all ranks alike) and keeps the values of its own frames only.
    """

    name = ""
    checks_every_frame = False

    def prepare(self, first, context: dict) -> bool:
        return True

    def frame(self, k: int, atoms):
        raise NotImplementedError

    def conclude(self, values: list, report: dict, context: dict) -> None:
        raise NotImplementedError


class Structure(FrameStep):
    """Pseudocubic lattice and tilt order parameters of the octahedra found on the first frame."""

    name = "structure"

    def prepare(self, first, context: dict) -> bool:
        try:
            self.sites = find_octahedra(first)
        except ValueError as error:
            self.sites = None
            if context["rank"] == 0:
                log.warning("%s: no tilt or lattice analysis: the first selected frame is %s",
                            context["dump"], error)
        return True

    def frame(self, k: int, atoms) -> dict:
        return structure_of(atoms, self.sites)

    def conclude(self, values: list, report: dict, context: dict) -> None:
        sites = self.sites
        report["structure"] = structure_statistics(values)
        report["perovskite"] = ({"B": sites.b_symbol, "X": sites.x_symbol, "repeats": sites.repeats.tolist()}
                                if sites is not None else None)


class Dynamics(FrameStep):
    """Positions (fractional), cell and velocities of each frame -> MSD and vibrational DOS."""

    name = "dynamics"

    def frame(self, k: int, atoms):
        velocities = (np.stack([atoms.arrays[c] for c in ("vx", "vy", "vz")], axis=1)
                      if all(c in atoms.arrays for c in ("vx", "vy", "vz")) else None)
        return (np.linalg.solve(atoms.cell.array.T, atoms.positions.T).T, atoms.cell.array.copy(),
                velocities)

    def conclude(self, values: list, report: dict, context: dict) -> None:
        masses, md_timestep_ps = context["masses"], context["md_timestep_ps"]
        dynamics = {}
        if len(values) >= 2:
            uu = displacement_msd(np.stack([v[0] for v in values]), np.stack([v[1] for v in values]), masses)
            dynamics["msd"] = msd_statistics(uu, context["symbols"])
        velocities = [v[2] for v in values if v[2] is not None]
        if velocities and md_timestep_ps and len(velocities) >= 8:
            steps = np.diff(context["timesteps"])
            if np.all(steps == steps[0]) and steps[0] > 0:
                dynamics["vdos"] = vibrational_dos(np.stack(velocities), masses, float(steps[0]) * md_timestep_ps)
            else:
                dynamics["vdos_skipped"] = "frames are not evenly spaced in time"
        report["dynamics"] = dynamics


class Molecules(FrameStep):
    """Unit vectors of the molecular axes (tail -> head) found on the first frame."""

    name = "molecules"
    checks_every_frame = True

    def __init__(self, molecule_axis: Optional[str] = "auto"):
        self.molecule_axis = molecule_axis

    def prepare(self, first, context: dict) -> bool:
        self.dump = context["dump"]
        self.axis = parse_molecule_axis(self.molecule_axis, first.get_chemical_symbols())
        self.pairs = molecular_axes_of(first, self.axis, self.dump)
        return self.pairs is not None

    def frame(self, k: int, atoms) -> np.ndarray:
        try:
            return axis_vectors(atoms, self.pairs, MAX_BOND_A)
        except ValueError as error:
            raise ValueError(f"{self.dump}: frame {k} (timestep {atoms.info.get('timestep')}): {error} "
                             "(atom indices from 0 in id order)") from error

    def conclude(self, values: list, report: dict, context: dict) -> None:
        report["molecules"] = molecule_statistics(np.stack(values), self.axis, context["timesteps"],
                                                  context["md_timestep_ps"])
        if "skipped" in report["molecules"]:
            log.warning("%s: %s", context["dump"], report["molecules"]["skipped"])


def make_steps(molecule_axis: Optional[str] = "auto") -> List[FrameStep]:
    """The steps of one run, in the order their sections enter the report (:data:`STEPS`)."""
    return [step(molecule_axis) if step is Molecules else step() for step in STEPS]


#: the per-frame steps of ``efg analyze`` (a new quantity: one class above and one entry here)
STEPS = [Structure, Dynamics, Molecules]


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


def structure_of(atoms, sites) -> dict:
    if sites is None:
        return {}
    lattice, angles = pseudocubic_lattice(atoms, sites.repeats)
    out = {"lattice_pc_A": lattice, "angles_deg": angles}
    out.update(tilt_order_parameters(atoms, sites))
    return out


def structure_statistics(structure: List[dict]) -> dict:
    if not structure or not structure[0]:
        return {}
    out = {}
    for key in structure[0]:
        series = np.array([s[key] for s in structure])
        out[key] = estimate_entry(series)
    return out


def unwrap_scaled(scaled: np.ndarray) -> np.ndarray:
    """Fractional positions (F, N, 3) with each atom followed across periodic boundaries from
    its first-frame position (frames must be close enough in time that no atom moves half a
    cell between them)."""
    step = np.diff(scaled, axis=0)
    step -= np.round(step)
    return np.concatenate([scaled[:1], scaled[:1] + np.cumsum(step, axis=0)])


def displacement_msd(scaled: np.ndarray, cells: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Per frame and atom, u ⊗ u (F, N, 3, 3) Å² of the displacement u from the atom's mean
    position over the run (atoms followed across periodic boundaries, :func:`unwrap_scaled`);
    the centre-of-mass motion of each frame is removed."""
    unwrapped = unwrap_scaled(scaled)
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
        out[element] = {"msd_tensor_A2": estimate_entry(series.reshape(len(series), 9)),
                        "msd_iso_A2": estimate_entry(np.trace(series, axis1=1, axis2=2) / 3.0)}
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
