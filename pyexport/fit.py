"""Fitting the ``cluster`` and ``cluster-nn`` potentials (:mod:`pyexport.models.cluster`).

Pipeline (``pyexport fit``): labelled structures -> split into train / validation / test by
structure -> closed-form ridge fit of the linear ``cluster`` model -> for ``cluster-nn``, Adam
(then optionally L-BFGS) on the MLP residual with early stopping -> metrics -> checkpoint.

Loss (the same for both fits)::

    L = w_E · mean_structures[(ΔE / N_atoms)²]        E in eV
      + w_F · mean_force_components[ΔF²]              F in eV/Å
      + w_S · mean_stress_components[ΔS²]             S in GPa (structures with a stress only)

Default weights ``w_E = 1000, w_F = 1, w_S = 0.1`` make 1 meV/atom of energy error cost as much
as ~32 meV/Å of force error and 0.1 GPa of stress error.

Linear fit
----------
The ``cluster`` energy is linear in its coefficients, so every label is a row of a design matrix:
energy rows are the per-species sums of invariants (and atom counts for ``e0``) divided by the
atom count; force rows are ``-∂(Σ_i B_i)/∂r_a``; stress rows ``-W/V`` with the feature virial
``W = -Σ_edges r_e ⊗ ∂B/∂r_e``, exactly as :class:`pyexport.contract.PotentialModule` computes
them for the energy. The feature derivatives are directional derivatives of the invariants along
each edge vector (an edge moves only its centre atom's base A, and the invariants are polynomials
of degree ≤ 3 in A, so :meth:`ClusterDescriptor.linearised_invariants` gives them exactly): the
cost is about one invariant evaluation per edge and direction, not a backward pass per feature.

Weighted rows are reduced block by block to the triangular factor of a QR decomposition
(:class:`LeastSquares`: the conditioning of X, not of XᵀX); columns are scaled to unit norm and
the ridge problem is solved for a log grid of λ from one SVD of that factor. The λ kept is the
largest whose validation loss is within 2 % (``lambda_tolerance``) of the lowest: equally accurate
on held-out data, with smaller coefficients.
"""
import copy
import hashlib
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .contract import GradedPotentialModule, PotentialModule, build_inputs, species_indices
from .models.cluster import ClusterBasis, ClusterDescriptor, ClusterNN, build_energy_model
from .models.grade import ExtrapolationGrade, active_set_summary, build_active_set
from .models.pair import CoreRepulsion, WithCore

#: GPa per eV/Å³.
GPA_PER_EV_A3 = 160.21766208
CHECKPOINT_FORMAT = "pyexport-potential-checkpoint"
CHECKPOINT_VERSION = 1


# --------------------------------------------------------------------------------------------
# Labelled data
# --------------------------------------------------------------------------------------------
@dataclass
class LossWeights:
    """Weights of the energy (per atom, eV), force (eV/Å) and stress (GPa) terms of the loss."""

    energy: float = 1000.0
    forces: float = 1.0
    stress: float = 0.1

    def __post_init__(self):
        for name in ("energy", "forces", "stress"):
            value = float(getattr(self, name))
            if not value >= 0.0 or not math.isfinite(value):
                raise ValueError(f"weight {name!r} must be a finite number >= 0, got {getattr(self, name)}")
            setattr(self, name, value)
        if self.energy == self.forces == self.stress == 0.0:
            raise ValueError("at least one loss weight must be positive")


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
    from .data import read

    out: list = []
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: data file not found")
        frames = read(path)
        if not frames:
            raise ValueError(f"{path}: no structures found")
        out.extend(convert(frames, where=os.fspath(path)))
    return out


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


# --------------------------------------------------------------------------------------------
# Contract inputs and batches
# --------------------------------------------------------------------------------------------
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


@dataclass
class Batch:
    """Several structures as one contract graph: all owned atoms first, then all image rows."""

    pos: torch.Tensor
    species: torch.Tensor
    edge_index: torch.Tensor
    n_local: int
    atom_of_row: torch.Tensor        # (R,) owned-atom index of every row
    structure_of_atom: torch.Tensor  # (n_local,)
    structure_of_edge: torch.Tensor  # (E,)
    n_atoms: torch.Tensor            # (B,) float
    volume: torch.Tensor             # (B,)
    energy: torch.Tensor             # (B,) eV
    forces: torch.Tensor             # (n_local, 3) eV/Å
    stress: torch.Tensor             # (B, 6) GPa (zeros where absent)
    has_stress: torch.Tensor         # (B,) bool


def make_batch(items: Sequence[Prepared]) -> Batch:
    n_owned = [p.n_atoms for p in items]
    n_ghost = [p.pos.shape[0] - p.n_atoms for p in items]
    owned_offset = np.concatenate([[0], np.cumsum(n_owned)[:-1]]).astype(np.int64)
    total_owned = int(sum(n_owned))
    ghost_offset = total_owned + np.concatenate([[0], np.cumsum(n_ghost)[:-1]]).astype(np.int64)
    pos, species, atom_of_row, edges, s_atom, s_edge = [], [], [], [], [], []
    pos_ghost, species_ghost, atom_ghost = [], [], []
    for b, p in enumerate(items):
        n = p.n_atoms
        pos.append(p.pos[:n])
        species.append(p.species[:n])
        atom_of_row.append(p.image_of[:n] + int(owned_offset[b]))
        pos_ghost.append(p.pos[n:])
        species_ghost.append(p.species[n:])
        atom_ghost.append(p.image_of[n:] + int(owned_offset[b]))
        ei = p.edge_index
        remap = torch.where(ei < n, ei + int(owned_offset[b]), ei - n + int(ghost_offset[b]))
        edges.append(remap)
        s_atom.append(torch.full((n,), b, dtype=torch.int64))
        s_edge.append(torch.full((ei.shape[1],), b, dtype=torch.int64))
    stress = torch.stack([p.stress if p.stress is not None else torch.zeros(6, dtype=torch.float64) for p in items])
    return Batch(
        pos=torch.cat(pos + pos_ghost), species=torch.cat(species + species_ghost),
        edge_index=torch.cat(edges, dim=1), n_local=total_owned,
        atom_of_row=torch.cat(atom_of_row + atom_ghost), structure_of_atom=torch.cat(s_atom),
        structure_of_edge=torch.cat(s_edge),
        n_atoms=torch.tensor(n_owned, dtype=torch.float64),
        volume=torch.tensor([p.volume for p in items], dtype=torch.float64),
        energy=torch.tensor([p.energy for p in items], dtype=torch.float64),
        forces=torch.cat([p.forces for p in items]), stress=stress,
        has_stress=torch.tensor([p.stress is not None for p in items]))


def _voigt(t: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 6) in ASE order xx yy zz yz xz xy (off-diagonals symmetrised)."""
    return torch.stack([t[..., 0, 0], t[..., 1, 1], t[..., 2, 2],
                        0.5 * (t[..., 1, 2] + t[..., 2, 1]), 0.5 * (t[..., 0, 2] + t[..., 2, 0]),
                        0.5 * (t[..., 0, 1] + t[..., 1, 0])], dim=-1)


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The floating dtype of a model's parameters / buffers (float64 if it has none)."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.float64


def batch_forward(energy_model: torch.nn.Module, batch: Batch, create_graph: bool = False
                  ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-structure energies (B,) eV, forces (n_local, 3) eV/Å and stresses (B, 6) GPa, by the
    same autograd through edge vectors as :class:`pyexport.contract.PotentialModule`."""
    dtype = model_dtype(energy_model)
    src, dst = batch.edge_index[0], batch.edge_index[1]
    pos = batch.pos.to(dtype)
    edge_vec = (pos.index_select(0, dst) - pos.index_select(0, src)).detach().requires_grad_(True)
    atom_energy = energy_model(edge_vec, batch.species, batch.edge_index, batch.n_local)
    energy = torch.zeros(len(batch.n_atoms), dtype=dtype).index_add(0, batch.structure_of_atom, atom_energy)
    (de_dr,) = torch.autograd.grad(atom_energy.sum(), edge_vec, create_graph=create_graph)
    rows = torch.zeros((batch.pos.shape[0], 3), dtype=dtype).index_add(0, src, de_dr).index_add(0, dst, -de_dr)
    forces = torch.zeros((batch.n_local, 3), dtype=dtype).index_add(0, batch.atom_of_row, rows)
    w_edge = -(edge_vec.unsqueeze(2) * de_dr.unsqueeze(1))
    virial = torch.zeros((len(batch.n_atoms), 3, 3), dtype=dtype).index_add(0, batch.structure_of_edge, w_edge)
    stress = -_voigt(virial) / batch.volume.to(dtype).unsqueeze(1) * GPA_PER_EV_A3
    return energy.double(), forces.double(), stress.double()


def batches(items: Sequence[Prepared], max_atoms: int) -> List[List[Prepared]]:
    """Consecutive groups of structures with at most ``max_atoms`` atoms each (at least one)."""
    groups, current, count = [], [], 0
    for p in items:
        if current and count + p.n_atoms > max_atoms:
            groups.append(current)
            current, count = [], 0
        current.append(p)
        count += p.n_atoms
    if current:
        groups.append(current)
    return groups


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------
def predict(energy_model: torch.nn.Module, items: Sequence[Prepared], max_atoms: int = 4000) -> dict:
    """Model predictions for ``items``: energies (B,), forces list of (n, 3), stresses (B, 6)."""
    energies, forces, stresses = [], [], []
    for group in batches(items, max_atoms):
        batch = make_batch(group)
        e, f, s = batch_forward(energy_model, batch)
        energies.append(e.detach())
        stresses.append(s.detach())
        forces.extend(torch.split(f.detach(), [p.n_atoms for p in group]))
    if not items:
        return {"energy": torch.zeros(0, dtype=torch.float64), "forces": [],
                "stress": torch.zeros((0, 6), dtype=torch.float64)}
    return {"energy": torch.cat(energies), "forces": forces, "stress": torch.cat(stresses)}


def error_metrics(items: Sequence[Prepared], pred: dict) -> dict:
    """RMSE and MAE of energies (meV/atom), forces (meV/Å per component) and stresses (GPa per
    Voigt component, structures that have a stress)."""
    out = {"n_structures": len(items), "n_atoms": int(sum(p.n_atoms for p in items)),
           "n_stress": int(sum(p.stress is not None for p in items))}
    if not items:
        return out
    n = torch.tensor([p.n_atoms for p in items], dtype=torch.float64)
    de = (pred["energy"] - torch.tensor([p.energy for p in items], dtype=torch.float64)) / n * 1000.0
    df = torch.cat([f - p.forces for f, p in zip(pred["forces"], items)]).reshape(-1) * 1000.0
    out.update(energy_rmse_meV_per_atom=float(de.pow(2).mean().sqrt()),
               energy_mae_meV_per_atom=float(de.abs().mean()),
               forces_rmse_meV_per_A=float(df.pow(2).mean().sqrt()), forces_mae_meV_per_A=float(df.abs().mean()))
    with_s = [k for k, p in enumerate(items) if p.stress is not None]
    if with_s:
        ds = torch.stack([pred["stress"][k] - items[k].stress for k in with_s]).reshape(-1)
        out.update(stress_rmse_GPa=float(ds.pow(2).mean().sqrt()), stress_mae_GPa=float(ds.abs().mean()))
    return out


def split_metrics(energy_model: torch.nn.Module, prepared: Sequence[Prepared], splits: Dict[str, np.ndarray]) -> dict:
    return {name: error_metrics([prepared[k] for k in idx], predict(energy_model, [prepared[k] for k in idx]))
            for name, idx in splits.items()}


# --------------------------------------------------------------------------------------------
# Linear least squares
# --------------------------------------------------------------------------------------------
@dataclass
class DesignRows:
    """Design rows of one structure, columns = S·K feature coefficients then S reference energies.

    ``energy`` (P,) per atom (eV/atom per unit coefficient), ``forces`` (3N, P) eV/Å, ``stress``
    (6, P) GPa (ASE Voigt order) or None for a non-periodic structure."""

    energy: torch.Tensor
    forces: torch.Tensor
    stress: Optional[torch.Tensor]


def _edge_tangents(descriptor: ClusterDescriptor, edge_vec: torch.Tensor, edge_cutoff: torch.Tensor,
                   neighbour_species: torch.Tensor) -> List[torch.Tensor]:
    """Per-l base tangents (3E, C_l, 2l+1): the change of A_i when edge e's vector (E, 3) Å moves
    along x, y, z (rows ordered e-major), non-zero only in the neighbour's species channels. The
    edge cutoffs (E,) Å depend on species only, so they are held fixed."""
    n_edges = edge_vec.shape[0]
    directions = torch.eye(3, dtype=edge_vec.dtype).unsqueeze(1).expand(3, n_edges, 3)

    def products(vec: torch.Tensor) -> torch.Tensor:
        return descriptor.edge_products(vec, edge_cutoff)

    d_phi = torch.func.vmap(lambda t: torch.func.jvp(products, (edge_vec,), (t,))[1])(directions)
    d_phi = d_phi.transpose(0, 1).reshape(3 * n_edges, *d_phi.shape[2:])   # (3E, n0, LM)
    full = torch.zeros((3 * n_edges, descriptor.n_species) + tuple(d_phi.shape[1:]), dtype=edge_vec.dtype)
    full[torch.arange(3 * n_edges), neighbour_species.repeat_interleave(3)] = d_phi
    return descriptor.split_base(full)


def design_rows(descriptor: ClusterDescriptor, item: Prepared, chunk_edges: int = 4096) -> DesignRows:
    """Energy, force and stress rows of one structure (see the module docstring)."""
    s_count = descriptor.n_species
    k = descriptor.n_features
    dtype = torch.float64
    n = item.n_atoms
    src, dst = item.edge_index[0], item.edge_index[1]
    edge_vec = (item.pos.index_select(0, dst) - item.pos.index_select(0, src)).to(dtype)
    edge_cutoff = descriptor.edge_cutoffs(item.species, item.edge_index).to(dtype)
    species_atoms = item.species[:n]
    with torch.no_grad():
        base = descriptor.atomic_base(edge_vec, item.species, item.edge_index, n)
        features = descriptor.invariants(base)
        partials = descriptor.partials(base)
    energy = torch.zeros((s_count, k), dtype=dtype).index_add(0, species_atoms, features).reshape(-1)
    counts = torch.bincount(species_atoms, minlength=s_count).to(dtype)
    energy_row = torch.cat([energy, counts]) / n

    forces = torch.zeros((n * s_count, 3, k), dtype=dtype)
    virial = torch.zeros((s_count, 3, 3, k), dtype=dtype)
    centre_species = species_atoms.index_select(0, src)
    atom_of_dst = item.image_of.index_select(0, dst)
    for start in range(0, edge_vec.shape[0], chunk_edges):
        sl = slice(start, start + chunk_edges)
        ev, c_src, c_dst, c_s = edge_vec[sl], src[sl], atom_of_dst[sl], centre_species[sl]
        tangents = _edge_tangents(descriptor, ev, edge_cutoff[sl], item.species.index_select(0, dst[sl]))
        rows = c_src.repeat_interleave(3)
        with torch.no_grad():
            d_feat = descriptor.linearised_invariants(
                [[q.index_select(0, rows) for q in block] for block in partials], tangents)
        d_feat = d_feat.reshape(ev.shape[0], 3, k)  # ∂B_src/∂r_e
        # F_a = -∂E/∂r_a with r_e = r_dst - r_src
        forces.index_add_(0, c_dst * s_count + c_s, -d_feat)
        forces.index_add_(0, c_src * s_count + c_s, d_feat)
        for sp in range(s_count):
            mask = c_s == sp
            if bool(mask.any()):
                virial[sp] -= torch.einsum("ea,ebk->abk", ev[mask], d_feat[mask])
    force_rows = forces.reshape(n, s_count, 3, k).permute(0, 2, 1, 3).reshape(3 * n, s_count * k)
    force_rows = torch.cat([force_rows, torch.zeros((3 * n, s_count), dtype=dtype)], dim=1)
    stress_rows = None
    if math.isfinite(item.volume):
        w = _voigt(virial.permute(0, 3, 1, 2)).permute(2, 0, 1).reshape(6, s_count * k)
        stress_rows = torch.cat([-w / item.volume * GPA_PER_EV_A3, torch.zeros((6, s_count), dtype=dtype)], dim=1)
    return DesignRows(energy=energy_row, forces=force_rows, stress=stress_rows)


class LeastSquares:
    """The weighted least-squares problem ``min ||X c - y||²`` of one set, kept as the triangular
    factor R of ``[X | y]`` (R ᵀR = [X|y]ᵀ[X|y]), updated block by block with QR (TSQR).

    Unlike the normal equations XᵀX, R has the conditioning of X itself, so coefficients and
    losses stay accurate to near machine precision even for nearly dependent features; it costs
    about twice the floating-point work of accumulating XᵀX. Rows are scaled so that each loss
    term is a weighted mean over its rows (``n_energy``, ``n_force``, ``n_stress``: the numbers of
    rows of each term in the set).
    """

    def __init__(self, n_columns: int, weights: LossWeights, n_energy: int, n_force: int, n_stress: int,
                 block_rows: Optional[int] = None):
        self.n_columns = n_columns
        self.factor = torch.zeros((0, n_columns + 1), dtype=torch.float64)
        self.pending: List[torch.Tensor] = []
        self.n_pending = 0
        self.block_rows = block_rows or max(2 * (n_columns + 1), 512)
        self.scale = {"energy": math.sqrt(weights.energy / max(n_energy, 1)),
                      "forces": math.sqrt(weights.forces / max(n_force, 1)),
                      "stress": math.sqrt(weights.stress / max(n_stress, 1))}

    def add(self, rows: DesignRows, item: Prepared) -> None:
        xs = [rows.energy.unsqueeze(0) * self.scale["energy"], rows.forces * self.scale["forces"]]
        ys = [torch.tensor([item.energy / item.n_atoms], dtype=torch.float64) * self.scale["energy"],
              item.forces.reshape(-1) * self.scale["forces"]]
        if item.stress is not None and rows.stress is not None:
            xs.append(rows.stress * self.scale["stress"])
            ys.append(item.stress * self.scale["stress"])
        self.pending.append(torch.cat([torch.cat(xs), torch.cat(ys).unsqueeze(1)], dim=1))
        self.n_pending += self.pending[-1].shape[0]
        if self.n_pending >= self.block_rows:
            self._reduce()

    def _reduce(self) -> None:
        if self.pending:
            stacked = torch.cat([self.factor] + self.pending)
            self.factor = torch.linalg.qr(stacked, mode="r")[1]
            self.pending, self.n_pending = [], 0

    @property
    def r(self) -> torch.Tensor:
        """(≤ P+1, P+1) upper-triangular factor of [X | y]."""
        self._reduce()
        return self.factor

    def loss(self, coef: torch.Tensor) -> float:
        """``||X c - y||²`` (the weighted loss of the set), from R without cancellation."""
        r = self.r
        return float((r[:, : self.n_columns] @ coef - r[:, self.n_columns]).pow(2).sum())


def _row_counts(items: Sequence[Prepared]) -> Tuple[int, int, int]:
    return (len(items), 3 * sum(p.n_atoms for p in items), 6 * sum(p.stress is not None for p in items))


def ridge_path(train: LeastSquares, val: LeastSquares, lambdas: Sequence[float], tolerance: float = 0.0
               ) -> Tuple[torch.Tensor, float, List[dict]]:
    """Ridge solutions ``min ||X c - y||² + λ ||D^½ c||²`` (D = diag XᵀX: the ridge acts on
    unit-scaled columns, so λ is relative) for every λ, from one SVD of the scaled R factor.

    Returns the coefficients of the chosen λ, that λ, and the scan. The chosen λ is the largest
    whose validation loss is within ``1 + tolerance`` of the lowest: as accurate on validation
    data, with smaller coefficients (fewer cancellations, tamer extrapolation in MD).
    Columns that are zero in the training data get zero coefficients."""
    r = train.r
    x, z = r[:, : train.n_columns], r[:, train.n_columns]
    norms = x.pow(2).sum(0).sqrt()
    scale = torch.where(norms > 0, 1.0 / norms, torch.zeros_like(norms))
    u, sigma, vt = torch.linalg.svd(x * scale, full_matrices=False)
    proj = u.T @ z
    scan, solutions = [], []
    for lam in sorted(lambdas):
        coef = scale * (vt.T @ (sigma / (sigma * sigma + lam) * proj))
        scan.append({"lambda": float(lam), "train_loss": train.loss(coef), "val_loss": val.loss(coef)})
        solutions.append(coef)
    lowest = min(entry["val_loss"] for entry in scan)
    chosen = max(k for k, entry in enumerate(scan) if entry["val_loss"] <= (1.0 + tolerance) * lowest)
    return solutions[chosen], scan[chosen]["lambda"], scan


DEFAULT_LAMBDAS = tuple(10.0 ** k for k in range(-15, 1))


def fit_linear(model: torch.nn.Module, prepared: Sequence[Prepared], splits: Dict[str, np.ndarray],
               weights: LossWeights, lambdas: Sequence[float] = DEFAULT_LAMBDAS, progress: bool = True,
               lambda_tolerance: float = 0.0) -> dict:
    """Closed-form ridge fit of ``model.coef`` and ``model.e0`` (a :class:`ClusterLinear` or the
    linear part of a :class:`ClusterNN`). Returns the fit report (λ, scan, timing)."""
    from tqdm.auto import tqdm

    descriptor = model.descriptor
    s_count, k = descriptor.n_species, descriptor.n_features
    n_columns = s_count * k + s_count
    train_items = [prepared[i] for i in splits["train"]]
    val_items = [prepared[i] for i in splits["val"]]
    eqs = {"train": LeastSquares(n_columns, weights, *_row_counts(train_items)),
           "val": LeastSquares(n_columns, weights, *_row_counts(val_items))}
    t0 = time.perf_counter()
    jobs = [("train", p) for p in train_items] + [("val", p) for p in val_items]
    for name, item in tqdm(jobs, desc="design rows", disable=not progress, unit="struct"):
        eqs[name].add(design_rows(descriptor, item), item)
    t1 = time.perf_counter()
    coef, lam, scan = ridge_path(eqs["train"], eqs["val"], lambdas, lambda_tolerance)
    t2 = time.perf_counter()
    with torch.no_grad():
        model.coef.copy_(coef[: s_count * k].reshape(s_count, k))
        model.e0.copy_(coef[s_count * k:])
    inactive = int((eqs["train"].r[:, : s_count * k].abs().sum(0) == 0).sum())
    best = min(scan, key=lambda entry: entry["val_loss"])["lambda"]
    edge = best in (min(lambdas), max(lambdas)) and len(lambdas) > 1
    return {"lambda": lam, "lambda_lowest_val_loss": best, "lambda_tolerance": lambda_tolerance,
            "lambda_at_grid_edge": edge, "lambda_scan": scan, "n_columns": n_columns,
            "inactive_columns": inactive, "time_design_s": t1 - t0, "time_solve_s": t2 - t1}


# --------------------------------------------------------------------------------------------
# Neural network training
# --------------------------------------------------------------------------------------------
@dataclass
class NNTraining:
    """Options of the ``cluster-nn`` training (Adam with early stopping, then optional L-BFGS)."""

    hidden: Tuple[int, ...] = (64, 64)
    epochs: int = 200
    learning_rate: float = 1e-3
    batch_atoms: int = 400
    patience: int = 20
    lbfgs_steps: int = 0
    train_linear: bool = False


def _loss(energy_model, batch: Batch, weights: LossWeights, create_graph: bool) -> Tuple[torch.Tensor, dict]:
    e, f, s = batch_forward(energy_model, batch, create_graph=create_graph)
    de = (e - batch.energy) / batch.n_atoms
    df = f - batch.forces
    terms = {"energy": de.pow(2).mean(), "forces": df.pow(2).mean()}
    if bool(batch.has_stress.any()):
        terms["stress"] = (s[batch.has_stress] - batch.stress[batch.has_stress]).pow(2).mean()
    total = sum(getattr(weights, name) * value for name, value in terms.items())
    return total, terms


def _mean_loss(energy_model, groups: Sequence[Batch], weights: LossWeights) -> float:
    """Loss over a whole set (each term averaged over all its rows, as in training)."""
    sums = {"energy": 0.0, "forces": 0.0, "stress": 0.0}
    counts = {"energy": 0, "forces": 0, "stress": 0}
    for batch in groups:
        e, f, s = (t.detach() for t in batch_forward(energy_model, batch))
        sums["energy"] += float(((e - batch.energy) / batch.n_atoms).pow(2).sum())
        sums["forces"] += float((f - batch.forces).pow(2).sum())
        counts["energy"] += len(batch.energy)
        counts["forces"] += batch.forces.numel()
        if bool(batch.has_stress.any()):
            sums["stress"] += float((s[batch.has_stress] - batch.stress[batch.has_stress]).pow(2).sum())
            counts["stress"] += int(batch.has_stress.sum()) * 6
    return sum(getattr(weights, k) * sums[k] / counts[k] for k in sums if counts[k])


def standardise(model: ClusterNN, items: Sequence[Prepared]) -> None:
    """Set the per-species feature mean and standard deviation from ``items``."""
    s_count, k = model.descriptor.n_species, model.descriptor.n_features
    total = torch.zeros((s_count, k), dtype=torch.float64)
    square = torch.zeros((s_count, k), dtype=torch.float64)
    count = torch.zeros(s_count, dtype=torch.float64)
    with torch.no_grad():
        for p in items:
            src, dst = p.edge_index
            ev = (p.pos[dst] - p.pos[src]).to(torch.float64)
            b = model.descriptor(ev, p.species, p.edge_index, p.n_atoms)
            sp = p.species[: p.n_atoms]
            total.index_add_(0, sp, b)
            square.index_add_(0, sp, b * b)
            count.index_add_(0, sp, torch.ones_like(sp, dtype=torch.float64))
    n = count.clamp_min(1.0).unsqueeze(1)
    mean = total / n
    var = (square / n - mean * mean).clamp_min(0.0)
    model.set_standardisation(mean, var.sqrt())


def start_nn(model: ClusterNN, train_items: Sequence[Prepared], linear_train_metrics: dict) -> None:
    """Standardise the invariants on the training set and set the MLP output scale to the linear
    fit's force RMSE × 1 Å (the size of the energy left to learn, 0.1 meV at least)."""
    standardise(model, train_items)
    with torch.no_grad():
        model.output_scale.fill_(max(linear_train_metrics["forces_rmse_meV_per_A"] * 1e-3, 1e-4))


def train_nn(model: ClusterNN, prepared: Sequence[Prepared], splits: Dict[str, np.ndarray], weights: LossWeights,
             options: NNTraining, seed: int = 0, progress: bool = True) -> dict:
    """Adam on the MLPs (and the linear part when ``options.train_linear``) with early stopping on
    the validation loss, then ``options.lbfgs_steps`` full-batch L-BFGS steps; the state with the
    lowest validation loss is kept. Returns the training history."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_items = [prepared[i] for i in splits["train"]]
    val_batches = [make_batch(g) for g in batches([prepared[i] for i in splits["val"]], 4 * options.batch_atoms)]
    train_eval = [make_batch(g) for g in batches(train_items, 4 * options.batch_atoms)]
    for p in (model.coef, model.e0):
        p.requires_grad_(options.train_linear)
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=options.learning_rate)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, factor=0.5,
                                                           patience=max(1, options.patience // 3))
    best_val = _mean_loss(model, val_batches, weights)
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    history = [{"epoch": 0, "val_loss": best_val}]
    stale = 0
    t0 = time.perf_counter()
    bar = tqdm(range(1, options.epochs + 1), desc="cluster-nn", disable=not progress, unit="epoch")
    for epoch in bar:
        order = rng.permutation(len(train_items))
        running, n_batches = 0.0, 0
        for group in batches([train_items[i] for i in order], options.batch_atoms):
            optimiser.zero_grad()
            loss, _ = _loss(model, make_batch(group), weights, create_graph=True)
            loss.backward()
            optimiser.step()
            running += float(loss.detach())
            n_batches += 1
        val = _mean_loss(model, val_batches, weights)
        scheduler.step(val)
        history.append({"epoch": epoch, "train_loss": running / max(n_batches, 1), "val_loss": val})
        if val < best_val:
            best_val, stale = val, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
        bar.set_postfix(train=f"{running / max(n_batches, 1):.3g}", val=f"{val:.3g}", best=f"{best_val:.3g}")
        if stale >= options.patience:
            break
    model.load_state_dict(best_state)
    if options.lbfgs_steps > 0:
        lbfgs = torch.optim.LBFGS(params, lr=1.0, max_iter=options.lbfgs_steps, line_search_fn="strong_wolfe")
        train_batches = [make_batch(g) for g in batches(train_items, 4 * options.batch_atoms)]
        n_rows = _row_counts(train_items)

        def closure():
            lbfgs.zero_grad()
            total = torch.zeros((), dtype=torch.float64)
            for batch in train_batches:
                # batch terms are batch means: weight them back to means over the whole set
                loss_terms = _loss(model, batch, weights, create_graph=True)[1]
                share = {"energy": len(batch.energy) / n_rows[0], "forces": batch.forces.numel() / n_rows[1],
                         "stress": 6 * int(batch.has_stress.sum()) / max(n_rows[2], 1)}
                part = sum(getattr(weights, k) * v * share[k] for k, v in loss_terms.items())
                part.backward()
                total = total + part.detach()
            return total

        lbfgs.step(closure)
        val = _mean_loss(model, val_batches, weights)
        history.append({"epoch": "lbfgs", "val_loss": val})
        if val < best_val:
            best_val = val
        else:
            model.load_state_dict(best_state)
    for p in model.parameters():
        p.requires_grad_(True)
    return {"best_val_loss": best_val, "epochs_run": len([h for h in history if isinstance(h["epoch"], int)]) - 1,
            "history": history, "time_train_s": time.perf_counter() - t0,
            "final_train_loss": _mean_loss(model, train_eval, weights)}


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------
def make_checkpoint(model: torch.nn.Module, model_type: str, elements: Sequence[str], basis: ClusterBasis,
                    dtype: str, hidden: Sequence[int], metrics: dict, data_hash: str, data_files: Sequence[str],
                    fit_report: dict) -> dict:
    from . import __version__

    return {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, "model_type": model_type,
            "elements": list(elements), "cutoff": float(basis.cutoff), "dtype": dtype,
            "hyperparameters": {"basis": basis.as_dict(), "hidden": list(hidden)},
            "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "metrics": metrics, "data_hash": data_hash, "data_files": [os.fspath(p) for p in data_files],
            "fit": fit_report, "pyexport_version": __version__}


class UnsafeCheckpointError(ValueError):
    """A checkpoint file holding Python objects other than tensors and plain data: unpickling
    them could run code from the file, so it is refused."""


def _plain_data(obj):
    """``obj`` with numpy scalars and arrays turned into Python numbers and lists (tensors, dicts,
    lists, tuples, numbers and strings kept), so that ``torch.load(weights_only=True)`` reads it."""
    if isinstance(obj, dict):
        return {k: _plain_data(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain_data(v) for v in obj)
    if isinstance(obj, (np.ndarray, np.generic)):
        return obj.tolist()
    return obj


def write_checkpoint(ckpt: dict, path: str) -> None:
    """Write a checkpoint as plain data (dicts, lists, numbers, strings, tensors): what
    :func:`read_checkpoint_file` reads without unpickling arbitrary objects."""
    torch.save(_plain_data(ckpt), path)


def read_checkpoint_file(path: str):
    """The object in a torch checkpoint file, with errors naming the file (missing, unreadable);
    the callers check that it is their kind of checkpoint. Only tensors and plain data are
    unpickled (``weights_only=True``): a file with anything else is refused with
    :class:`UnsafeCheckpointError` before any of its code can run."""
    import pickle

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)|Unsupported operand \S+", str(exc))
        what = f" ({found.group(1) or found.group(0)})" if found else ""
        raise UnsafeCheckpointError(
            f"{path}: refused: the file holds Python objects other than tensors and plain data{what}; "
            f"unpickling them could run code from the file. pyexport checkpoints hold plain data only: "
            f"refit if this is an old one, and never load files of unknown origin") from None
    except Exception as exc:
        raise ValueError(f"{path}: not a pyexport checkpoint ({type(exc).__name__}: {exc})") from None


def load_checkpoint(path: str) -> dict:
    """A checkpoint written by ``pyexport fit``; a clear error for anything else."""
    ckpt = read_checkpoint_file(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a pyexport potential checkpoint (written by `pyexport fit`)")
    if ckpt.get("format_version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint format version {ckpt.get('format_version')} is not supported")
    return ckpt


def model_from_checkpoint(ckpt: dict) -> torch.nn.Module:
    """The float64 energy model of a checkpoint, with its fitted state."""
    basis = ClusterBasis.from_dict(ckpt["hyperparameters"]["basis"])
    model = build_energy_model(ckpt["model_type"], len(ckpt["elements"]), basis, ckpt["hyperparameters"]["hidden"],
                               elements=ckpt["elements"])
    model.load_state_dict(ckpt["state_dict"])
    core = ckpt.get("core_repulsion")
    if core:
        model = WithCore(model, CoreRepulsion(core["r_core_A"], core["strength_eV"]))
    return model.eval()


def potential_from_checkpoint(ckpt: dict, dtype: Optional[str] = None) -> torch.nn.Module:
    """The contract module of a checkpoint, in the checkpoint's dtype or ``dtype``: a
    :class:`GradedPotentialModule` when the checkpoint has an active set, else a
    :class:`PotentialModule`."""
    dtype = dtype or ckpt["dtype"]
    model = model_from_checkpoint(ckpt)
    if dtype == "float32":
        model = model.to(torch.float32)
    for p in model.parameters():
        p.requires_grad_(False)
    if ckpt.get("active_set"):
        grade = ExtrapolationGrade(ckpt["active_set"])
        if dtype == "float32":
            grade = grade.to(torch.float32)
        return GradedPotentialModule(model, grade, ckpt["elements"], ckpt["cutoff"], dtype=dtype)
    return PotentialModule(model, ckpt["elements"], ckpt["cutoff"], dtype=dtype)


def provenance(ckpt: dict) -> dict:
    """What ``pyexport export`` writes next to the contract keys in ``metadata.json``."""
    from . import __version__

    return {"model_type": ckpt["model_type"], "hyperparameters": ckpt["hyperparameters"],
            "data_hash": ckpt["data_hash"], "data_files": ckpt["data_files"], "metrics": ckpt["metrics"],
            "fit": {k: v for k, v in ckpt["fit"].items() if k != "history"},
            "package": "pyexport", "package_version": __version__,
            "trained_with_version": ckpt.get("pyexport_version")}


# --------------------------------------------------------------------------------------------
# The whole fit
# --------------------------------------------------------------------------------------------
@dataclass
class FitConfig:
    """Everything ``pyexport fit`` needs (config file keys = these names)."""

    data: List[str] = field(default_factory=list)
    model: str = "cluster"
    basis: str = "medium"
    cutoff: float = 6.0
    basis_overrides: Dict[str, float] = field(default_factory=dict)
    pair_cutoffs: Dict[str, float] = field(default_factory=dict)   # "A-B" -> Å (ClusterBasis)
    elements: Optional[List[str]] = None
    weights: LossWeights = field(default_factory=LossWeights)
    split: Tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    dtype: str = "float64"
    lambdas: Tuple[float, ...] = DEFAULT_LAMBDAS
    lambda_tolerance: float = 0.02
    nn: NNTraining = field(default_factory=NNTraining)
    core_repulsion: bool = True      # CoreRepulsion below the data's shortest pair distances
    core_strength: float = 100.0     # eV
    active_set: bool = True          # extrapolation grade (MaxVol active set of the training atoms)
    output: str = "model.ckpt"
    metrics: Optional[str] = None
    progress: bool = True


def fit_inputs(config, structures=None):
    """What every fit starts from: the structures (read from ``config.data`` unless given), the
    data hash, element order, cluster basis, the seeded train/val/test split and the prepared
    neighbour data. Returns (structures, data_hash, elements, basis, splits, prepared)."""
    if structures is None:
        if not config.data:
            raise ValueError("no data files given")
        structures = read_structures(config.data)
    data_hash = hash_files(config.data) if config.data and all(os.path.isfile(p) for p in config.data) else ""
    elements = list(config.elements) if config.elements else elements_of(structures)
    basis = ClusterBasis.preset(config.basis, cutoff=config.cutoff)
    if config.basis_overrides or config.pair_cutoffs:
        basis = ClusterBasis.from_dict({**basis.as_dict(), **config.basis_overrides,
                                        "pair_cutoffs": dict(config.pair_cutoffs)})
    basis.cutoff_table(elements)  # a pair of elements the data lacks is an error before any work
    splits = split_indices(len(structures), config.split, config.seed)
    prepared = prepare(structures, elements, basis.cutoff)
    return structures, data_hash, elements, basis, splits, prepared


def run_fit(config: FitConfig, structures: Optional[Sequence[Structure]] = None) -> Tuple[dict, dict]:
    """Read, split, fit, evaluate; return ``(checkpoint, metrics)`` (nothing is written here).

    ``structures`` may be passed directly (then ``config.data`` only names them for the hash)."""
    if config.model not in ("cluster", "cluster-nn"):
        raise ValueError(f"model must be 'cluster' or 'cluster-nn', got {config.model!r}")
    if config.dtype not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {config.dtype!r}")
    t0 = time.perf_counter()
    structures, data_hash, elements, basis, splits, prepared = fit_inputs(config, structures)
    t_read = time.perf_counter() - t0

    torch.manual_seed(config.seed)
    model = build_energy_model(config.model, len(elements), basis, config.nn.hidden, elements=elements)
    report = {"weights": asdict(config.weights), "split": list(config.split), "seed": config.seed,
              "split_sizes": {k: len(v) for k, v in splits.items()},
              "split_sources": {k: [structures[i].source for i in v] for k, v in splits.items()},
              "n_features_per_species": model.descriptor.n_features, "time_prepare_s": t_read}
    report.update(fit_linear(model, prepared, splits, config.weights, config.lambdas, config.progress,
                             config.lambda_tolerance))
    metrics = {"model": config.model, "elements": elements, "cutoff": basis.cutoff,
               "pair_cutoffs": dict(basis.pair_cutoffs), "n_features_per_species": model.descriptor.n_features,
               "lambda": report["lambda"]}
    if config.model == "cluster-nn":
        metrics["linear_start"] = split_metrics(model, prepared, splits)
        start_nn(model, [prepared[i] for i in splits["train"]], metrics["linear_start"]["train"])
        report["nn"] = {**asdict(config.nn), **train_nn(model, prepared, splits, config.weights, config.nn,
                                                        config.seed, config.progress)}
    metrics.update(split_metrics(model, prepared, splits))
    if config.dtype == "float32":
        metrics["float32"] = split_metrics(copy.deepcopy(model).to(torch.float32), prepared, splits)
    metrics["n_parameters"] = int(sum(p.numel() for p in model.parameters()))
    core = None
    if config.core_repulsion:
        core = {"r_core_A": shortest_pair_distances(prepared, len(elements)), "strength_eV": float(config.core_strength)}
        metrics["core_repulsion"] = {"strength_eV": core["strength_eV"],
                                     "r_core_A": {f"{a}-{b}": core["r_core_A"][i][j]
                                                  for i, a in enumerate(elements) for j, b in enumerate(elements) if j >= i}}
    active_set = None
    if config.active_set:
        t_active = time.perf_counter()
        active_set = fit_active_set(model.descriptor, [prepared[i] for i in splits["train"]], elements)
        report["time_active_set_s"] = time.perf_counter() - t_active
        metrics["active_set"] = active_set_summary(active_set)
    report["time_total_s"] = time.perf_counter() - t0
    ckpt = make_checkpoint(model, config.model, elements, basis, config.dtype, config.nn.hidden, metrics,
                           data_hash, config.data, report)
    ckpt["core_repulsion"] = core
    ckpt["active_set"] = active_set
    return ckpt, metrics


def species_features(descriptor: ClusterDescriptor, items: Sequence[Prepared], max_atoms: int = 4000
                     ) -> List[np.ndarray]:
    """The invariants of every atom of ``items``, grouped by species: a list over species of
    (n_s, n_features) float64 arrays (what the active set is chosen from)."""
    per_species: List[List[np.ndarray]] = [[] for _ in range(descriptor.n_species)]
    with torch.no_grad():
        for group in batches(items, max_atoms):
            batch = make_batch(group)
            src, dst = batch.edge_index[0], batch.edge_index[1]
            edge_vec = batch.pos.index_select(0, dst) - batch.pos.index_select(0, src)
            features = descriptor(edge_vec, batch.species, batch.edge_index, batch.n_local).numpy()
            species = batch.species[: batch.n_local].numpy()
            for s in range(descriptor.n_species):
                per_species[s].append(features[species == s])
    return [np.concatenate(parts) if parts else np.zeros((0, descriptor.n_features)) for parts in per_species]


def fit_active_set(descriptor: ClusterDescriptor, train_items: Sequence[Prepared], elements: Sequence[str]) -> dict:
    """The extrapolation grade's active set (:func:`pyexport.models.grade.build_active_set`) of the
    training structures' atoms."""
    features = species_features(descriptor, train_items)
    missing = [e for e, f in zip(elements, features) if len(f) == 0]
    if missing:
        raise ValueError(f"no training atoms of {missing}: no active set (fit with --no-active-set)")
    return build_active_set(features, elements)


def shortest_pair_distances(prepared: Sequence[Prepared], n_species: int) -> List[List[float]]:
    """(S, S) Å: the shortest distance between atoms of each pair of species over all edges of
    ``prepared`` (every split: the core must be zero on all of the data); 0 for pairs that never
    come within the cutoff (no core)."""
    shortest = np.full((n_species, n_species), np.inf)
    for item in prepared:
        src, dst = item.edge_index[0], item.edge_index[1]
        r = torch.linalg.norm(item.pos.index_select(0, dst) - item.pos.index_select(0, src), dim=1).numpy()
        np.minimum.at(shortest, (item.species.index_select(0, src).numpy(), item.species.index_select(0, dst).numpy()), r)
    shortest = np.minimum(shortest, shortest.T)
    return np.where(np.isfinite(shortest), shortest, 0.0).tolist()
