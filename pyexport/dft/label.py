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

Each frame is a fresh serial GPAW calculation, spin-paired unless ``spinpol`` (then collinear
spin-polarised, from the frame's initial magnetic moments where it has any, else 1 μB per atom as
VASP's MAGMOM default; the EFG is that of the total density n↑ + n↓), without point-group symmetry (MD frames
have none; forces stay as computed) but with time-reversal symmetry, k and −k being equivalent
(:data:`SYMMETRY`, as VASP's ISYM = 0), on a periodic cell with a Γ-centred k-mesh:
N_i = max(1, ⌈|b_i|/kspacing⌉) with |b_i| including 2π (VASP's KSPACING rule,
:func:`pyexport.vasp_inputs.kpoint_mesh`), or a fixed mesh.
"""
import hashlib
import io
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["DEFAULT_CONVERGENCE", "INFO_KEYS", "LabelSettings", "MissingDependencyError", "import_gpaw",
           "kpoint_mesh_for", "label_file", "label_frame", "labelled_fingerprints", "read_inputs",
           "structure_fingerprint"]

#: GPAW SCF convergence used unless given: its defaults, with the density converged to 1e-6
#: electrons per valence electron (the EFG is a property of the density; GPAW's default is 1e-4).
DEFAULT_CONVERGENCE = {"energy": 5e-4, "density": 1e-6, "eigenstates": 4e-8}

#: GPAW's ``symmetry`` argument: no point group, time reversal (halves most k-meshes).
SYMMETRY = {"point_group": False, "time_reversal": True}

#: The ``info`` keys :func:`label_frame` writes.
INFO_KEYS = ("dft_code", "dft_xc", "dft_ecut_eV", "dft_kpts", "dft_kspacing", "dft_smearing",
             "dft_smearing_eV", "dft_convergence", "dft_symmetry", "dft_setups", "dft_efg_method",
             "dft_seconds", "label_frame", "label_structure")

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
    """How every frame is computed. ``kpts`` (a fixed Γ-centred mesh) wins over ``kspacing``
    (Å⁻¹, 2π included); ``smearing``: GPAW occupation name (``fermi-dirac``,
    ``marzari-vanderbilt``, ...) with width ``smearing_eV``; ``convergence``: GPAW's convergence
    dict (``energy`` eV per valence electron, ``density`` electrons per valence electron,
    ``eigenstates`` eV² per valence electron); ``setups``: GPAW's ``setups`` argument; ``spinpol``:
    collinear spin polarisation (module docstring)."""

    ecut_eV: float = 500.0
    kspacing: float = 0.25
    kpts: Optional[Tuple[int, int, int]] = None
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
    """The Γ-centred mesh of ``atoms``: ``settings.kpts`` or the KSPACING rule."""
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


def make_calculator(atoms, settings: LabelSettings, txt=None):
    """A GPAW plane-wave calculator with ``settings`` for ``atoms`` (log to ``txt``: a path,
    None for no log)."""
    gpaw = import_gpaw()
    return gpaw.GPAW(mode=gpaw.PW(settings.ecut_eV), xc=settings.xc, spinpol=settings.spinpol,
                     kpts={"size": kpoint_mesh_for(atoms, settings), "gamma": True},
                     occupations={"name": settings.smearing, "width": settings.smearing_eV},
                     convergence=dict(settings.convergence), setups=settings.setups,
                     symmetry=dict(SYMMETRY), txt=txt)


def setups_record(calc) -> str:
    """``symbol:file(fingerprint)`` for each distinct PAW setup of a converged calculation."""
    seen = {}
    for setup in calc.dft.setups:
        name = os.path.basename(str(getattr(setup, "filename", "") or setup.symbol))
        seen.setdefault(setup.symbol, f"{setup.symbol}:{name}({getattr(setup, 'fingerprint', '?')})")
    return " ".join(seen.values())


def label_frame(atoms, settings: LabelSettings, index: int = 0, txt=None):
    """A copy of ``atoms`` with GPAW's results attached (module docstring); ``index`` is the
    frame's position in its input, recorded as ``label_frame``."""
    from ase.calculators.singlepoint import SinglePointCalculator

    gpaw = import_gpaw()
    _check_frame(atoms, index)
    work = atoms.copy()
    if settings.spinpol and not np.any(work.get_initial_magnetic_moments()):
        work.set_initial_magnetic_moments(np.ones(len(work)))      # VASP's MAGMOM default
    work.calc = make_calculator(work, settings, txt)
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
        "dft_kspacing": float(settings.kspacing) if settings.kpts is None else "fixed mesh",
        "dft_smearing": settings.smearing,
        "dft_smearing_eV": float(settings.smearing_eV),
        "dft_convergence": json.dumps(settings.convergence, sort_keys=True),
        "dft_symmetry": "time reversal only",
        "dft_spin": "collinear polarised" if settings.spinpol else "paired",
        "dft_setups": setups_record(work.calc),
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
               progress: bool = True) -> Dict:
    """Label every frame of ``frames`` not yet in ``output`` and append it there (module
    docstring). ``logs``: a folder for one GPAW log per frame (``frame_<k>.txt``), or None.
    Returns ``{"labelled": [...], "skipped": [...], "seconds": ...}`` with input positions."""
    from tqdm.auto import tqdm

    import_gpaw()
    output = Path(output)
    if output.suffix in (".gz", ".bz2", ".xz") or output.suffix not in (".extxyz", ".xyz"):
        raise ValueError(f"{output}: the output must be an uncompressed .extxyz (frames are appended)")
    for k, atoms in enumerate(frames):
        _check_frame(atoms, k)
    done = labelled_fingerprints(output)
    todo = [k for k, atoms in enumerate(frames) if structure_fingerprint(atoms) not in done]
    skipped = [k for k in range(len(frames)) if k not in set(todo)]
    if logs is not None:
        Path(logs).mkdir(parents=True, exist_ok=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for k in tqdm(todo, desc="GPAW frames", unit="frame", disable=not progress):
        txt = None if logs is None else str(Path(logs) / f"frame_{k}.txt")
        _append_frame(output, label_frame(frames[k], settings, index=k, txt=txt))
    return {"labelled": todo, "skipped": skipped, "seconds": time.perf_counter() - start,
            "settings": asdict(settings)}
