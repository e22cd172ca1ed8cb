"""Label structures with GPAW (PAW, plane waves): energy, forces, stress and, on request, the EFG
tensor of every atom, written as extended XYZ in the dataset convention of
:mod:`pyexport.data` so that ``pyexport fit`` and ``pyexport fit-efg`` read the result as they
read VASP data (``pyexport label`` is the command line).

    from pyexport.dft.label import LabelSettings, label_file
    label_file(frames, "labelled.extxyz", LabelSettings(ecut_eV=500, kspacing=0.25, efg=True))

Per written frame (the input frame's own ``info`` is kept):

- calculator results ``energy`` (GPAW's energy extrapolated to zero smearing, VASP's
  ``energy(sigma->0)``), ``free_energy`` (the force-consistent energy, the one the dataset uses),
  ``forces`` (eV/Å), ``stress`` (eV/Å³, ASE sign);
- ``arrays["efg"]``: (N, 9) row-major 3×3 EFG tensors in V/Å² (with ``efg=True``), from
  :mod:`pyexport.dft.gpaw_efg`;
- ``info``: the settings (:data:`INFO_KEYS`: code and version, xc, cutoff, k-mesh, smearing,
  convergence, setups with their file fingerprints), the input frame's 0-based position
  ``label_frame`` and a fingerprint of its structure ``label_structure``, and the wall time.

Resuming: frames are appended to the output one at a time as each finishes; a second run on the
same input skips every input frame whose structure fingerprint is already in the output, so an
interrupted batch loses at most the frame that was running. The output must be an uncompressed
extended XYZ file (appending).

Each frame is a serial GPAW calculation, spin-paired unless ``spinpol`` (then collinear
spin-polarised, from the frame's initial magnetic moments where it has any, else 1 μB per atom as
VASP's MAGMOM default; the EFG is that of the total density n↑ + n↓), without point-group symmetry (MD frames
have none; forces stay as computed) but with time-reversal symmetry, k and −k being equivalent
(:data:`SYMMETRY`, as VASP's ISYM = 0), on a periodic cell with a Γ-centred k-mesh:
N_i = max(1, ⌈|b_i|/kspacing⌉) with |b_i| including 2π (VASP's KSPACING rule,
:func:`pyexport.vasp_inputs.kpoint_mesh`), or a fixed mesh; ``kpts_gamma=False`` shifts the
mesh to Monkhorst–Pack's (even sizes avoid Γ, odd ones hold it, as VASP's ``Monkhorst-Pack``
KPOINTS).

A frame starts from GPAW's LCAO guess, unless ``label_file(..., reuse=True)``: then a frame with
the same species, cell and settings as one labelled earlier in the run starts from that frame's
converged wave functions and density (GPAW moves the atoms), as an MD code starts each step from
the last. Such a frame skips the LCAO start, and a frame close to the last one most SCF iterations
too (MD frames 0.1-0.4 ps apart of 40-atom CsPbBr3 still took 12-13); the result is the same
self-consistent solution to the SCF tolerance (``convergence``), and each frame records where it
started (``dft_start``).

A frame whose SCF does not converge within ``maxiter`` iterations is reported and not written (a
rerun tries it again); the others go on.
"""
import hashlib
import io
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["DEFAULT_CONVERGENCE", "INFO_KEYS", "ConvergedCalculators", "LabelSettings", "MissingDependencyError",
           "check_datasets", "import_gpaw", "kpoint_mesh_for", "label_file", "label_frame", "labelled_fingerprints", "read_inputs",
           "structure_fingerprint"]

#: GPAW SCF convergence used unless given: its defaults, with the density converged to 1e-6
#: electrons per valence electron (the EFG is a property of the density; GPAW's default is 1e-4).
DEFAULT_CONVERGENCE = {"energy": 5e-4, "density": 1e-6, "eigenstates": 4e-8}

#: GPAW's ``symmetry`` argument: no point group, time reversal (halves most k-meshes).
SYMMETRY = {"point_group": False, "time_reversal": True}

#: The ``info`` keys :func:`label_frame` writes.
INFO_KEYS = ("dft_code", "dft_xc", "dft_ecut_eV", "dft_kpts", "dft_kmesh", "dft_kspacing", "dft_smearing",
             "dft_smearing_eV", "dft_convergence", "dft_symmetry", "dft_setups", "dft_efg_method",
             "dft_start", "dft_seconds", "label_frame", "label_structure")

GPAW_INSTALL_HINT = ("pip install 'efgmd[gpaw]' (it compiles against libxc, BLAS and FFTW: "
                     "apt-get install libxc-dev libopenblas-dev libfftw3-dev first), or `make gpaw`")


class MissingDependencyError(ImportError):
    """An optional package that a labelling run needs is not installed; the message says how to
    install it."""


def import_gpaw():
    """The ``gpaw`` module, or :class:`MissingDependencyError` naming GPAW and how to install it."""
    try:
        import gpaw
        from gpaw import PW  # noqa: F401  (the plane-wave mode this module uses)
    except ImportError as error:
        raise MissingDependencyError(f"pyexport label needs GPAW, which is not importable ({error}): "
                                     f"{GPAW_INSTALL_HINT}") from error
    return gpaw


@dataclass
class LabelSettings:
    """How every frame is computed. ``kpts`` (a fixed mesh) wins over ``kspacing`` (Å⁻¹, 2π
    included); the mesh is Γ-centred unless ``kpts_gamma`` is False (Monkhorst–Pack);
    ``maxiter``: SCF iterations before a frame counts as not converged; ``smearing``: GPAW
    occupation name (``fermi-dirac``, ``marzari-vanderbilt``, ...) with width ``smearing_eV``; ``convergence``: GPAW's convergence
    dict (``energy`` eV per valence electron, ``density`` electrons per valence electron,
    ``eigenstates`` eV² per valence electron); ``setups``: GPAW's ``setups`` argument; ``spinpol``:
    collinear spin polarisation (module docstring)."""

    ecut_eV: float = 500.0
    kspacing: float = 0.25
    kpts: Optional[Tuple[int, int, int]] = None
    kpts_gamma: bool = True
    maxiter: int = 333
    xc: str = "PBE"
    smearing: str = "fermi-dirac"
    smearing_eV: float = 0.05
    convergence: Dict[str, float] = field(default_factory=lambda: dict(DEFAULT_CONVERGENCE))
    setups: str = "paw"
    efg: bool = False
    spinpol: bool = False

    def __post_init__(self):
        if not self.ecut_eV > 0:
            raise ValueError(f"ecut must be positive (eV), got {self.ecut_eV}")
        if self.kpts is None and not self.kspacing > 0:
            raise ValueError(f"kspacing must be positive (1/Å), got {self.kspacing}")
        if self.kpts is not None:
            kpts = tuple(int(k) for k in self.kpts)
            if len(kpts) != 3 or min(kpts) < 1:
                raise ValueError(f"kpts must be three positive integers, got {self.kpts}")
            self.kpts = kpts
        if self.maxiter < 1:
            raise ValueError(f"maxiter must be >= 1, got {self.maxiter}")
        if not self.smearing_eV >= 0:
            raise ValueError(f"smearing width must be >= 0 (eV), got {self.smearing_eV}")
        self.convergence = {**DEFAULT_CONVERGENCE, **self.convergence}


def read_inputs(source, types: Optional[str] = None) -> List:
    """The frames to label: a VASP POSCAR/CONTCAR (``*.vasp``, ``*.poscar`` too), or what
    ``pyexport vasp-inputs`` reads (:func:`pyexport.vasp_inputs.read_structures`: a ``pyexport
    select`` folder, an extended XYZ file, a LAMMPS dump with ``types``)."""
    import ase.io

    from ..vasp_inputs import read_structures

    name = Path(source).name
    if Path(source).is_file() and (name.upper().startswith(("POSCAR", "CONTCAR"))
                                   or name.lower().endswith((".vasp", ".poscar"))):
        try:
            return [ase.io.read(source, format="vasp")]
        except Exception as error:  # ASE raises many types on bad input
            raise ValueError(f"{source}: not a readable POSCAR ({type(error).__name__}: {error})") from None
    return read_structures(str(source), types=types)


def kpoint_mesh_for(atoms, settings: LabelSettings) -> Tuple[int, int, int]:
    """The k-mesh size of ``atoms``: ``settings.kpts`` or the KSPACING rule."""
    if settings.kpts is not None:
        return settings.kpts
    from ..vasp_inputs import kpoint_mesh
    return tuple(int(k) for k in kpoint_mesh(atoms.cell, settings.kspacing))


def structure_fingerprint(atoms) -> str:
    """A short hash of atomic numbers, positions and cell (both rounded to 1e-6 Å): the same
    structure read back from an extended XYZ file has the same fingerprint."""
    digest = hashlib.sha1()
    digest.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    for array in (atoms.positions, np.asarray(atoms.cell)):
        digest.update(np.round(np.asarray(array, dtype=float), 6).astype(np.float64).tobytes())
    digest.update(np.asarray(atoms.pbc, dtype=bool).tobytes())
    # a prefix, so that the extended XYZ parser keeps it a string (never an int or a float)
    return "sha1-" + digest.hexdigest()[:16]


def _check_frame(atoms, k: int) -> None:
    if len(atoms) == 0:
        raise ValueError(f"frame {k}: no atoms")
    if not np.all(atoms.pbc):
        raise ValueError(f"frame {k}: GPAW plane waves need a periodic cell in all three directions "
                         f"(pbc={atoms.pbc.tolist()}); put a molecule in a box with pbc=True")
    if not atoms.get_volume() > 0:
        raise ValueError(f"frame {k}: the cell has no volume")


def check_datasets(frames: Sequence, settings: LabelSettings) -> None:
    """ValueError naming the first frame with an element that has no PAW dataset for
    ``settings.xc`` where GPAW looks for them (its ``gpaw-data`` package has none for Tc, Po, At
    and Fr–Pu), before any frame is computed; only for GPAW's standard ``paw`` setups."""
    if settings.setups != "paw":
        return
    from gpaw.setup_data import search_for_file

    checked = {}
    for k, atoms in enumerate(frames):
        for symbol in dict.fromkeys(atoms.get_chemical_symbols()):
            if symbol not in checked:
                try:
                    search_for_file(f"{symbol}.{settings.xc}")
                    checked[symbol] = True
                except FileNotFoundError:
                    checked[symbol] = False
            if not checked[symbol]:
                raise ValueError(f"frame {k}: GPAW has no PAW dataset for {symbol} with {settings.xc} (no file "
                                 f"{symbol}.{settings.xc} in its setup paths); set GPAW_SETUP_PATH to a folder that "
                                 f"has one, or leave the frames with {symbol} out")


def make_calculator(atoms, settings: LabelSettings, txt=None):
    """A GPAW plane-wave calculator with ``settings`` for ``atoms`` (log to ``txt``: a path,
    None for no log)."""
    gpaw = import_gpaw()
    return gpaw.GPAW(mode=gpaw.PW(settings.ecut_eV), xc=settings.xc, spinpol=settings.spinpol,
                     # ASE's gamma=None is the plain Monkhorst-Pack mesh (odd sizes hold Γ); False
                     # would shift odd sizes off Γ too
                     kpts={"size": kpoint_mesh_for(atoms, settings), "gamma": True if settings.kpts_gamma else None},
                     occupations={"name": settings.smearing, "width": settings.smearing_eV},
                     convergence=dict(settings.convergence), maxiter=settings.maxiter, setups=settings.setups,
                     symmetry=dict(SYMMETRY), txt=txt)


def setups_record(calc) -> str:
    """``symbol:file(fingerprint)`` for each distinct PAW setup of a converged calculation."""
    seen = {}
    for setup in calc.dft.setups:
        name = os.path.basename(str(getattr(setup, "filename", "") or setup.symbol))
        seen.setdefault(setup.symbol, f"{setup.symbol}:{name}({getattr(setup, 'fingerprint', '?')})")
    return " ".join(seen.values())


class ConvergedCalculators:
    """The live GPAW calculators of the last ``size`` distinct cells labelled in a run, so that a
    later frame of the same species, cell and periodicity starts from the converged state of the
    last frame labelled in it (module docstring). Each holds its wave functions in memory
    (k-points × bands × plane waves complex numbers: ~0.4 GB for 40 CsPbBr3 atoms on 4 k-points)."""

    def __init__(self, size: int = 2):
        self.size = size
        self._calcs = {}                  # key -> (calculator, frame index), oldest first

    @staticmethod
    def key(atoms) -> Tuple:
        return (np.asarray(atoms.numbers).tobytes(), np.round(np.asarray(atoms.cell), 8).tobytes(),
                np.asarray(atoms.pbc).tobytes())

    def take(self, atoms):
        """(calculator, frame index) of ``atoms``' cell, or (None, None); taken out until kept again."""
        return self._calcs.pop(self.key(atoms), (None, None))

    def keep(self, atoms, calc, index: int) -> None:
        self._calcs[self.key(atoms)] = (calc, index)
        while len(self._calcs) > self.size:
            self._calcs.pop(next(iter(self._calcs)))


def label_frame(atoms, settings: LabelSettings, index: int = 0, txt=None,
                reuse: Optional[ConvergedCalculators] = None):
    """A copy of ``atoms`` with GPAW's results attached (module docstring); ``index`` is the
    frame's position in its input, recorded as ``label_frame``. With ``reuse``, a frame of a cell
    labelled before starts from that calculation's converged state, and this frame's calculator is
    kept there for the next (a frame that fails leaves nothing behind)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    gpaw = import_gpaw()
    _check_frame(atoms, index)
    work = atoms.copy()
    if settings.spinpol and not np.any(work.get_initial_magnetic_moments()):
        work.set_initial_magnetic_moments(np.ones(len(work)))      # VASP's MAGMOM default
    calc, started_from = reuse.take(work) if reuse is not None else (None, None)
    work.calc = calc if calc is not None else make_calculator(work, settings, txt)
    start = time.perf_counter()
    free_energy = work.get_potential_energy(force_consistent=True)
    energy = work.get_potential_energy()
    forces = work.get_forces()
    stress = work.get_stress()
    magmom = float(work.calc.get_magnetic_moment()) if settings.spinpol else None
    efg = None
    if settings.efg:
        from .gpaw_efg import efg_tensors
        efg = efg_tensors(work.calc)
    seconds = time.perf_counter() - start

    out = atoms.copy()
    out.arrays.pop("efg", None)   # never mix an earlier label with these
    out.info.update({
        "dft_code": f"GPAW {gpaw.__version__}",
        "dft_xc": settings.xc,
        "dft_ecut_eV": float(settings.ecut_eV),
        "dft_kpts": np.array(kpoint_mesh_for(atoms, settings)),
        "dft_kmesh": "Gamma-centred" if settings.kpts_gamma else "Monkhorst-Pack",
        "dft_kspacing": float(settings.kspacing) if settings.kpts is None else "fixed mesh",
        "dft_smearing": settings.smearing,
        "dft_smearing_eV": float(settings.smearing_eV),
        "dft_convergence": json.dumps(settings.convergence, sort_keys=True),
        "dft_symmetry": "time reversal only",
        "dft_spin": "collinear polarised" if settings.spinpol else "paired",
        "dft_setups": setups_record(work.calc),
        "dft_start": "LCAO" if started_from is None else f"converged state of frame {started_from}",
        "dft_seconds": round(seconds, 3),
        "label_frame": int(index),
        "label_structure": structure_fingerprint(atoms),
    })
    if magmom is not None:
        out.info["dft_magmom_muB"] = magmom        # the converged total moment, μB
    if settings.efg:
        out.info["dft_efg_method"] = "PAW (Petrilli et al. 1998), pyexport.dft.gpaw_efg"
        out.arrays["efg"] = np.asarray(efg).reshape(len(out), 9)
    out.calc = SinglePointCalculator(out, energy=float(energy), free_energy=float(free_energy),
                                     forces=np.asarray(forces), stress=np.asarray(stress))
    if reuse is not None:
        reuse.keep(work, work.calc, index)
    return out


def labelled_fingerprints(path) -> set:
    """The ``label_structure`` fingerprints of the frames already in the output ``path`` (an
    empty set if it does not exist or is empty)."""
    import ase.io

    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return set()
    try:
        frames = ase.io.read(path, index=":", format="extxyz")
    except Exception as error:  # ASE raises many types on bad input
        raise ValueError(f"{path}: cannot read the frames already labelled to resume "
                         f"({type(error).__name__}: {error}); move it away to start afresh") from None
    return {str(a.info.get("label_structure", structure_fingerprint(a))) for a in frames}


def _append_frame(path: Path, atoms) -> None:
    """Append one frame to ``path`` in a single write, flushed to disk."""
    import ase.io

    buffer = io.StringIO()
    ase.io.write(buffer, atoms, format="extxyz")
    with open(path, "a") as fh:
        fh.write(buffer.getvalue())
        fh.flush()
        os.fsync(fh.fileno())


def label_file(frames: Sequence, output, settings: LabelSettings, *, logs=None,
               progress: bool = True, reuse: bool = False) -> Dict:
    """Label every frame of ``frames`` not yet in ``output`` and append it there (module
    docstring). ``logs``: a folder for one GPAW log per frame (``frame_<k>.txt``; with ``reuse``
    a frame that starts from an earlier one goes on in that frame's log), or None. ``reuse``:
    start frames from the converged state of the last frame of their cell.
    Returns ``{"labelled": [...], "skipped": [...], "unconverged": [...], "seconds": ...}`` with
    input positions; a frame whose SCF did not converge is reported on stderr and not written."""
    from tqdm.auto import tqdm

    gpaw = import_gpaw()
    output = Path(output)
    if output.suffix in (".gz", ".bz2", ".xz") or output.suffix not in (".extxyz", ".xyz"):
        raise ValueError(f"{output}: the output must be an uncompressed .extxyz (frames are appended)")
    for k, atoms in enumerate(frames):
        _check_frame(atoms, k)
    check_datasets(frames, settings)
    done = labelled_fingerprints(output)
    todo = [k for k, atoms in enumerate(frames) if structure_fingerprint(atoms) not in done]
    skipped = [k for k in range(len(frames)) if k not in set(todo)]
    if logs is not None:
        Path(logs).mkdir(parents=True, exist_ok=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    calculators = ConvergedCalculators() if reuse else None
    labelled, unconverged = [], []
    for k in tqdm(todo, desc="GPAW frames", unit="frame", disable=not progress):
        txt = None if logs is None else str(Path(logs) / f"frame_{k}.txt")
        try:
            frame = label_frame(frames[k], settings, index=k, txt=txt, reuse=calculators)
        except gpaw.ConvergenceError as error:
            unconverged.append(k)
            print(f"pyexport label: frame {k}: the SCF did not converge in {settings.maxiter} iterations "
                  f"({type(error).__name__}); not written to {output}", file=sys.stderr, flush=True)
            continue
        _append_frame(output, frame)
        labelled.append(k)
    return {"labelled": labelled, "skipped": skipped, "unconverged": unconverged,
            "seconds": time.perf_counter() - start, "settings": asdict(settings)}
