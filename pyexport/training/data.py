"""Labelled structures for fitting: reading them, the train / validation / test split, and the
contract inputs of each structure (:class:`Prepared`, neighbour lists built once).

Units: energies eV, forces eV/Å, stresses in ASE's sign and Voigt order, eV/Å³ in
:class:`Structure` and GPa in :class:`Prepared`.
"""
import hashlib
import logging
import math
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..contract import build_inputs, species_indices
from ..units import GPA_PER_EV_A3


@dataclass
class Structure:
    """A labelled structure: ``energy`` eV, ``forces`` (N, 3) eV/Å, ``stress`` (6,) eV/Å³ in
    ASE's sign and Voigt order or None; ``source`` says where it came from (file:step)."""

    atoms: object
    energy: float
    forces: np.ndarray
    stress: Optional[np.ndarray]
    source: str

    @property
    def n_atoms(self) -> int:
        return len(self.atoms)

def structures_from_frames(frames, where: str) -> List[Structure]:
    """Labelled structures from ASE Atoms with a calculator holding energy and forces (the
    :mod:`pyexport.data` convention). A frame without energy or forces is an error; the stress
    is optional (such frames get no stress rows)."""
    out = []
    for k, atoms in enumerate(frames):
        src = atoms.info.get("source", {}) if isinstance(atoms.info.get("source"), dict) else {}
        label = f"{src.get('file', where)}:{src.get('step', k + 1)}"
        results = atoms.calc.results if atoms.calc is not None else {}
        if "energy" not in results and "free_energy" not in results:
            raise ValueError(f"{label}: structure has no energy")
        if "forces" not in results:
            raise ValueError(f"{label}: structure has no forces")
        energy = float(results.get("free_energy", results.get("energy")))
        forces = np.asarray(results["forces"], dtype=np.float64)
        if forces.shape != (len(atoms), 3):
            raise ValueError(f"{label}: forces have shape {forces.shape}, expected ({len(atoms)}, 3)")
        stress = results.get("stress")
        if stress is not None:
            stress = np.asarray(stress, dtype=np.float64)
            if stress.shape == (3, 3):
                stress = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
            if stress.shape != (6,):
                raise ValueError(f"{label}: stress has shape {stress.shape}, expected (6,)")
            if not (atoms.pbc.all() and atoms.cell.rank == 3):
                raise ValueError(f"{label}: stress given for a structure that is not periodic in 3D")
        if not (np.isfinite(energy) and np.isfinite(forces).all() and (stress is None or np.isfinite(stress).all())):
            raise ValueError(f"{label}: labels contain NaN or infinity")
        out.append(Structure(atoms=atoms, energy=energy, forces=forces, stress=stress, source=label))
    return out

def read_labelled(paths: Sequence[str], convert) -> list:
    """``convert(frames, where=path)`` of every data file (:func:`pyexport.data.read`), in file
    order; a clear error for a missing or empty file."""
    from ..data import read

    out: list = []
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: data file not found")
        frames = read(path)
        if not frames:
            raise ValueError(f"{path}: no structures found")
        out.extend(convert(frames, where=os.fspath(path)))
    return out

def at_most_atoms(structures: Sequence, max_atoms: Optional[int]) -> list:
    """The structures (anything with ``.atoms``) of at most ``max_atoms`` atoms, in order; all of
    them for None. A fit's data selection by size: big MD frames dominate a fit's cost (it grows
    with the atom count) while adding few environments the small cells lack."""
    if max_atoms is None:
        return list(structures)
    if int(max_atoms) != max_atoms or max_atoms < 1:
        raise ValueError(f"max_atoms must be a positive integer, got {max_atoms!r}")
    kept = [s for s in structures if len(s.atoms) <= max_atoms]
    if not kept:
        smallest = min((len(s.atoms) for s in structures), default=0)
        raise ValueError(f"max_atoms = {max_atoms} leaves no structure (the smallest has {smallest} atoms)")
    if len(kept) < len(structures):
        logging.getLogger(__name__).info("max_atoms = %d: %d of %d structures used, %d larger ones left out",
                                         max_atoms, len(kept), len(structures), len(structures) - len(kept))
    return kept

def read_structures(paths: Sequence[str]) -> List[Structure]:
    """All labelled structures of the data files, in file order (:func:`pyexport.data.read`)."""
    return read_labelled(paths, structures_from_frames)

def hash_files(paths: Sequence[str]) -> str:
    """sha256 over the contents of the files, in the given order (the order fixes the split)."""
    total = hashlib.sha256()
    for path in paths:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        total.update(h.digest())
    return total.hexdigest()

def elements_of(structures: Sequence[Structure]) -> List[str]:
    """Element symbols present in the data, ordered by atomic number."""
    from ase.data import atomic_numbers

    symbols = {s for st in structures for s in st.atoms.get_chemical_symbols()}
    return sorted(symbols, key=lambda s: atomic_numbers[s])

def split_indices(n: int, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> Dict[str, np.ndarray]:
    """Random split of ``n`` structures into train / val / test by the given fractions.

    Counts are rounded so that they sum to ``n``; validation gets at least one structure
    (it chooses the regularisation), train at least one.
    """
    fractions = [float(f) for f in fractions]
    if len(fractions) != 3 or min(fractions) < 0 or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ValueError(f"split fractions must be three numbers >= 0 summing to 1, got {fractions}")
    n_val = max(1, int(round(fractions[1] * n)))
    n_test = int(round(fractions[2] * n))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(f"{n} structures are too few for the split {fractions} "
                         "(need at least one training and one validation structure)")
    order = np.random.default_rng(seed).permutation(n)
    return {"train": np.sort(order[:n_train]), "val": np.sort(order[n_train:n_train + n_val]),
            "test": np.sort(order[n_train + n_val:])}

@dataclass
class Prepared:
    """Contract inputs (image atoms included) and labels of one structure as tensors."""

    pos: torch.Tensor         # (R, 3) Å, owned atoms first
    species: torch.Tensor     # (R,) int64
    edge_index: torch.Tensor  # (2, E) int64
    n_atoms: int
    image_of: torch.Tensor    # (R,) int64, atom of each row
    volume: float             # Å³ (nan when not periodic)
    energy: float             # eV
    forces: torch.Tensor      # (n_atoms, 3) eV/Å
    stress: Optional[torch.Tensor]  # (6,) GPa, ASE order, or None
    source: str

def prepare(structures: Sequence[Structure], elements: Sequence[str], cutoff: float) -> List[Prepared]:
    """Contract inputs for every structure (neighbour lists are built once here)."""
    out = []
    for st in structures:
        species_indices(st.atoms.get_chemical_symbols(), elements, where=st.source)  # names the structure
        inp = build_inputs(st.atoms, cutoff, elements)
        periodic = bool(st.atoms.pbc.all() and st.atoms.cell.rank == 3)
        out.append(Prepared(
            pos=inp.pos, species=inp.species, edge_index=inp.edge_index, n_atoms=inp.n_local,
            image_of=torch.from_numpy(inp.image_of), volume=float(st.atoms.get_volume()) if periodic else float("nan"),
            energy=st.energy, forces=torch.from_numpy(st.forces),
            stress=None if st.stress is None else torch.from_numpy(st.stress * GPA_PER_EV_A3),
            source=st.source))
    return out
