"""What the reference-data scripts of the shipped examples share: 7net-0 labels, perturbed and
MD-sampled structures, point-charge EFG labels, and the checked extxyz output.

SevenNet-0 (``7net-0``, the checkpoint inside the ``sevenn`` wheel, trained on PBE data of the
Materials Project) stands in for DFT so that the examples run without a DFT code; the
point-charge EFGs of :func:`efg.pointcharge.ewald_efg` stand in for DFT EFGs. Used by
``cspbbr3/make_reference.py``, ``cspbbr3/closed_loop.py`` and ``mapbi3/make_reference.py``
(which put this folder on ``sys.path``). Energies eV, forces eV/Å, stresses eV/Å³ (ASE sign),
lengths Å, times fs, EFGs V/Å².
"""
import hashlib
import json
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import ase
import ase.io
import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from tqdm import tqdm

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
MODEL_NAME = "7net-0"


def _import_decompressed_text():
    try:
        from pyexport.data.dataset import decompressed_text
    except ImportError:
        sys.path.insert(0, str(REPOSITORY_ROOT))
        from pyexport.data.dataset import decompressed_text
    return decompressed_text


def read_extxyz(path) -> List[Atoms]:
    """All frames of an extxyz file (plain or compressed) as ASE reads them, info kept."""
    return ase.io.read(_import_decompressed_text()(path), index=":", format="extxyz")


def load_sevennet0(device: str, threads: int):
    """The 7net-0 ASE calculator from the checkpoint inside the sevenn package, and its
    provenance (sevenn version, checkpoint file, sha256). Raises rather than downloading."""
    try:
        import torch
        import sevenn
        from sevenn.calculator import SevenNetCalculator
        from sevenn.util import pretrained_name_to_path
    except ImportError as error:
        raise SystemExit(f"the 7net-0 labels need the sevenn package "
                         f"(pip install efgmd[reference]): {error}") from None
    torch.set_num_threads(threads)
    # pretrained_name_to_path only looks on disk for 7net-0 (no download link exists for it);
    # the check keeps it that way should a later sevenn add one.
    path = Path(pretrained_name_to_path(MODEL_NAME))
    if not path.is_file():
        raise SystemExit(f"7net-0 checkpoint not found at {path}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    calc = SevenNetCalculator(str(path), device=device)
    provenance = {"model": MODEL_NAME, "sevenn_version": sevenn.__version__,
                  "torch_version": torch.__version__, "ase_version": ase.__version__,
                  "checkpoint": f"{path.parent.name}/{path.name}", "checkpoint_sha256": digest,
                  "device": device, "torch_threads": threads}
    return calc, provenance


def labelled(atoms: Atoms, calc, **info) -> Atoms:
    """A constraint-free copy of ``atoms`` with 7net-0 energy (eV), forces (eV/Å) and stress
    (eV/Å³, ASE sign) frozen in a SinglePointCalculator, and ``info`` added."""
    work = atoms.copy()
    del work.constraints
    work.calc = calc
    energy = work.get_potential_energy()
    forces = work.get_forces()
    stress = work.get_stress(voigt=True)
    out = work.copy()
    out.arrays.pop("momenta", None)  # MD velocities are not labels; they would only add size
    out.info.clear()
    out.info.update(info)
    out.calc = SinglePointCalculator(out, energy=energy, forces=forces, stress=stress)
    return out


def energy_of(atoms: Atoms, calc) -> float:
    work = atoms.copy()
    work.calc = calc
    return float(work.get_potential_energy())


def thermalize(atoms: Atoms, temperature_K: float, rng: np.random.Generator) -> None:
    """Maxwell-Boltzmann momenta at ``temperature_K`` (ASE >= 3.29 renamed the function)."""
    try:
        from ase.md.velocitydistribution import thermalize_momenta
    except ImportError:
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    else:
        thermalize_momenta(atoms, temperature_K, rng=rng)


def md_snapshots(calc, start: Atoms, phase: str, temperature_K: float, n_equil: int,
                 n_sample: int, interval: int, timestep_fs: float, friction_per_fs: float,
                 rng: np.random.Generator) -> List[Atoms]:
    """Snapshots every ``interval`` steps of a fixed-cell Langevin run at ``temperature_K``,
    after ``n_equil`` steps of equilibration."""
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary
    atoms = start.copy()
    atoms.calc = calc
    thermalize(atoms, temperature_K, rng)
    Stationary(atoms)
    # FixCom rather than Langevin(fixcm=True), which ASE >= 3.28 flags as not sampling NVT
    # exactly in small cells.
    atoms.set_constraint(FixCom())
    dynamics = Langevin(atoms, timestep=timestep_fs * units.fs, temperature_K=temperature_K,
                        friction=friction_per_fs / units.fs, fixcm=False, rng=rng)
    label = f"MD {len(atoms)} atoms {temperature_K:.0f} K"
    frames = []
    with tqdm(total=n_equil + n_sample, desc=label, unit="step", leave=False) as bar:
        for _ in range(n_equil):
            dynamics.run(1)
            bar.update(1)
        for step in range(1, n_sample + 1):
            dynamics.run(1)
            bar.update(1)
            if step % interval == 0:
                frames.append(labelled(atoms, calc, config_type="md", phase=phase,
                                       temperature_K=float(temperature_K),
                                       md_time_fs=float((n_equil + step) * timestep_fs),
                                       kinetic_temperature_K=float(atoms.get_temperature())))
    return frames


def random_strain(rng: np.random.Generator) -> np.ndarray:
    """Symmetric strain tensor (3, 3): normal components in ±3 %, shear components in ±2 %."""
    strain = np.diag(rng.uniform(-0.03, 0.03, size=3))
    for a, b in ((0, 1), (0, 2), (1, 2)):
        strain[a, b] = strain[b, a] = rng.uniform(-0.02, 0.02)
    return strain


def strained_cells(calc, phases: Dict[str, Atoms], count: int,
                   rng: np.random.Generator) -> List[Atoms]:
    """``count`` homogeneously strained copies of each phase; the second half also rattled
    (σ 0.03 Å)."""
    frames = []
    jobs = [(name, k) for name in phases for k in range(count)]
    for name, k in tqdm(jobs, desc="strains", unit="cell"):
        strain = random_strain(rng)
        cell = phases[name].copy()
        cell.set_cell(cell.cell.array @ (np.eye(3) + strain), scale_atoms=True)
        rattle = 0.0
        if k >= count // 2:
            rattle = 0.03
            cell.positions += rng.normal(0.0, rattle, size=cell.positions.shape)
        frames.append(labelled(cell, calc, config_type="strain_rattle" if rattle else "strain",
                               phase=name, strain=strain.reshape(9), rattle_sigma_A=rattle))
    return frames


def rattled_cells(calc, phases: Dict[str, Atoms], count: int, sigma_range: Tuple[float, float],
                  rng: np.random.Generator) -> List[Atoms]:
    """``count`` copies of each phase with Gaussian displacements of σ uniform in
    ``sigma_range`` Å (per Cartesian component)."""
    frames = []
    jobs = [name for name in phases for _ in range(count)]
    for name in tqdm(jobs, desc="rattles", unit="cell"):
        sigma = float(rng.uniform(*sigma_range))
        cell = phases[name].copy()
        cell.positions += rng.normal(0.0, sigma, size=cell.positions.shape)
        frames.append(labelled(cell, calc, config_type="rattle", phase=name,
                               rattle_sigma_A=sigma))
    return frames


def import_pointcharge():
    """``efg.pointcharge.ewald_efg``, from the installed efgmd or from this repository."""
    try:
        from efg.pointcharge import ewald_efg
    except ImportError:
        sys.path.insert(0, str(REPOSITORY_ROOT))
        from efg.pointcharge import ewald_efg
    return ewald_efg


def add_efg_labels(frames: List[Atoms], charges: Dict[str, float]) -> None:
    """Point-charge EFG (V/Å², ``charges`` in e per element, no Sternheimer) of every atom, stored
    as the per-atom (N, 9) array ``efg`` (row-major 3×3)."""
    ewald_efg = import_pointcharge()
    for atoms in tqdm(frames, desc="point-charge EFG", unit="cell"):
        atoms.arrays["efg"] = ewald_efg(atoms, charges).reshape(len(atoms), 9)


def statistics(frames: List[Atoms]) -> Dict:
    """Counts per config_type, energy spread (eV/atom), force and EFG RMS."""
    per_atom = np.array([a.get_potential_energy() / len(a) for a in frames])
    forces = np.concatenate([a.get_forces() for a in frames])
    stress = np.array([a.get_stress(voigt=True) for a in frames]) / units.GPa
    counts: Dict[str, int] = {}
    for atoms in frames:
        kind = atoms.info["config_type"]
        counts[kind] = counts.get(kind, 0) + 1
    sizes: Dict[str, int] = {}
    for atoms in frames:
        sizes[str(len(atoms))] = sizes.get(str(len(atoms)), 0) + 1
    stats = {
        "n_structures": len(frames),
        "n_atoms_total": int(sum(len(a) for a in frames)),
        "structures_per_config_type": counts,
        "structures_per_size": sizes,
        "energy_eV_per_atom": {"min": float(per_atom.min()), "max": float(per_atom.max()),
                               "spread": float(np.ptp(per_atom)), "std": float(per_atom.std())},
        "force_rms_eV_per_A": float(np.sqrt(np.mean(forces**2))),
        "force_max_abs_eV_per_A": float(np.abs(forces).max()),
        "stress_abs_max_GPa": float(np.abs(stress).max()),
        "md_temperatures_K": sorted({a.info["temperature_K"] for a in frames
                                     if a.info["config_type"] == "md"}),
    }
    if all("efg" in a.arrays for a in frames):
        efg = np.concatenate([a.arrays["efg"] for a in frames])
        symbols = np.concatenate([a.get_chemical_symbols() for a in frames])
        stats["efg_rms_V_per_A2"] = {s: float(np.sqrt(np.mean(efg[symbols == s] ** 2)))
                                     for s in dict.fromkeys(symbols)}
    return stats


def write_frames(frames: List[Atoms], path: Path) -> None:
    """Write extxyz (compressed by extension) and read it back to check what came out."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(path, frames, format="extxyz")
    back = read_extxyz(path)
    if len(back) != len(frames):
        raise RuntimeError(f"{path}: wrote {len(frames)} structures, read back {len(back)}")
    for k, atoms in enumerate(back):
        missing = [key for key in ("energy", "forces", "stress")
                   if atoms.calc is None or key not in atoms.calc.results]
        if missing or atoms.arrays.get("efg", np.empty(0)).shape != (len(atoms), 9):
            raise RuntimeError(f"{path}: structure {k} read back without "
                               f"{', '.join(missing) or 'an (N, 9) efg array'}")


def shown_path(path: Path) -> str:
    """``path`` relative to the repository when inside it, so the summary names no local paths."""
    try:
        return path.resolve().relative_to(REPOSITORY_ROOT).as_posix()
    except ValueError:
        return str(path)


def write_json(path: Path, content: Dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=1) + "\n")


def add_recipe_arguments(p, defaults: Dict[str, object]) -> None:
    """The options every make_reference.py recipe has (output, 7net-0 labelling, relaxation,
    strains, rattles, MD snapshots), with the example's ``defaults`` (keys: the option names
    with underscores; ``n_md_steps_help`` and ``timestep_help`` complete their help texts)."""
    p.add_argument("--out", type=Path, default=defaults["out"],
                   help="output extxyz (.xz/.gz/.bz2 compressed by extension)")
    p.add_argument("--summary-out", type=Path, default=defaults["summary_out"],
                   help="JSON of versions, a0, phases, counts, statistics and timings")
    p.add_argument("--label", type=Path, metavar="EXTXYZ",
                   help="only label the structures of this file (7net-0 and point-charge EFG), "
                        "write --out")
    p.add_argument("--seed", type=int, default=defaults["seed"])
    p.add_argument("--device", default="cpu", help="torch device of the 7net-0 model")
    p.add_argument("--threads", type=int, default=defaults["threads"], help="torch CPU threads")
    p.add_argument("--fmax", type=float, default=defaults["fmax"], help="phase relaxation, eV/Å")
    p.add_argument("--max-relax-steps", type=int, default=defaults["max_relax_steps"])
    p.add_argument("--n-strain", type=int, default=defaults["n_strain"], help="strained cells per phase "
                   "(half of them also rattled)")
    p.add_argument("--n-rattle", type=int, default=defaults["n_rattle"], help="rattled cells per phase")
    p.add_argument("--rattle-min", type=float, default=0.02, help="Å, Gaussian σ per component")
    p.add_argument("--rattle-max", type=float, default=defaults["rattle_max"], help="Å")
    p.add_argument("--timestep", type=float, default=defaults["timestep"], help=defaults["timestep_help"])
    p.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs")
    p.add_argument("--n-equil-steps", type=int, default=100, help="MD steps before sampling")
    p.add_argument("--n-md-steps", type=int, default=defaults["n_md_steps"], help=defaults["n_md_steps_help"])
    p.add_argument("--md-interval", type=int, default=defaults["md_interval"], help="MD steps between snapshots")


def check_recipe_arguments(p, args, counts: Sequence[str]) -> None:
    """Stop with the parser's error on a negative count (``counts``: option names with
    underscores), a non-positive interval, thread count or step limit, or a bad rattle range."""
    for name in counts:
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')}: expected a non-negative count")
    for name in ("md_interval", "threads", "max_relax_steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')}: expected a positive integer")
    if not 0.0 < args.rattle_min <= args.rattle_max:
        p.error("--rattle-min/--rattle-max: expected 0 < min <= max")
