"""Pick a diverse set of MD frames to label with DFT (``pyexport select``).

    pyexport select --dump md.lammpstrj --types Cs,Pb,Br -n 50 -o selected/
    pyexport vasp-inputs selected/ --efg

Frames are chosen by greedy farthest-point sampling in a descriptor space: the first pick is
the first frame (or, given a per-frame ``uncertainty``, the most uncertain one), and every
further pick is the frame whose descriptor is farthest (Euclidean) from all frames picked so
far. Near-duplicate frames of a long trajectory are therefore taken once, and rare
configurations early.

The descriptor (:class:`RDFDescriptor`) is a smoothed partial radial distribution per species
pair: for the pair block (a, b) and grid radius r_k,

    g_ab(r_k) = (1/N) · Σ_{pairs i<j of species {a, b}, r_ij < r_c + 4σ} exp(-(r_ij - r_k)² / 2σ²)

with r_k = (k + ½)·r_c/n_bins, σ = r_c/n_bins by default, N the number of atoms, periodic
images included. Dividing by N makes it the same for a cell and any supercell of it; the
Gaussian tails make it a continuous function of the positions (a pair crossing the neighbour
cutoff changes it by at most e⁻⁸ per pair). It is invariant under translation, rotation and
relabelling of atoms, and sees what distinguishes MD frames of a perovskite: bond-length
spread, octahedral tilts (B-X-B and X-X distances) and A-site displacements.

With a committee of models, pass its per-frame disagreement as ``uncertainty``:
:func:`select_frames` then keeps the ``candidates`` most uncertain frames and picks among them
farthest-point, starting with the most uncertain. ``pyexport select --committee committee.pt``
does this with the committee's max_i σ_i per frame (:mod:`pyexport.committee`, eV/Å):

    pyexport select --dump md.lammpstrj --types Cs,Pb,Br --committee committee.pt -n 50

``--grade potential.pt`` ranks frames the same way by the potential's extrapolation grade,
max_i γ_i (:mod:`pyexport.models.grade`): frames where the MD left the training data first.
"""
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .outputs import write_json

__all__ = ["RDFDescriptor", "farthest_point_sampling", "select_frames", "select_from_dump", "write_selection"]

#: Name of the selected frames and of the selection record in the ``select`` output folder.
FRAMES_FILE = "frames.extxyz"
SELECTION_FILE = "selection.json"

_PAIR_CHUNK = 32768   # pairs per block of the (pairs, bins) Gaussian matrix: bounds memory


# --------------------------------------------------------------------------------------------
# Descriptor
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RDFDescriptor:
    """Smoothed per-species-pair radial distribution of a structure (see the module docstring).

    ``elements``: species order; fixes the layout of the vector (pair blocks (a, b), a ≤ b, in
    this order), so every frame of a selection must use the same instance. ``cutoff`` r_c (Å),
    ``n_bins`` grid points per pair block, ``width`` σ (Å, default r_c/n_bins).
    Calling it on an ``ase.Atoms`` returns a (n_pairs · n_bins,) float64 vector, counts per atom.
    """

    elements: Tuple[str, ...]
    cutoff: float = 6.0
    n_bins: int = 48
    width: Optional[float] = None

    def __post_init__(self):
        object.__setattr__(self, "elements", tuple(self.elements))
        if not self.elements or len(set(self.elements)) != len(self.elements):
            raise ValueError(f"RDFDescriptor: elements must be distinct symbols, got {list(self.elements)}")
        if not self.cutoff > 0:
            raise ValueError(f"RDFDescriptor: cutoff must be positive (Å), got {self.cutoff}")
        if int(self.n_bins) < 1:
            raise ValueError(f"RDFDescriptor: n_bins must be >= 1, got {self.n_bins}")
        if self.width is not None and not self.width > 0:
            raise ValueError(f"RDFDescriptor: width must be positive (Å), got {self.width}")

    @property
    def sigma(self) -> float:
        """Gaussian width σ, Å."""
        return float(self.width) if self.width is not None else self.cutoff / self.n_bins

    @property
    def pairs(self) -> List[Tuple[str, str]]:
        """Species pairs in the order of the vector's blocks."""
        n = len(self.elements)
        return [(self.elements[a], self.elements[b]) for a in range(n) for b in range(a, n)]

    @property
    def radii(self) -> np.ndarray:
        """(n_bins,) grid radii r_k, Å."""
        return (np.arange(self.n_bins) + 0.5) * (self.cutoff / self.n_bins)

    @property
    def size(self) -> int:
        return len(self.pairs) * self.n_bins

    def __call__(self, atoms) -> np.ndarray:
        from ase.neighborlist import primitive_neighbor_list

        n_species = len(self.elements)
        lookup = {e: k for k, e in enumerate(self.elements)}
        symbols = atoms.get_chemical_symbols()
        unknown = sorted(set(symbols) - set(lookup))
        if unknown:
            raise ValueError(f"structure has element(s) {unknown} outside the descriptor's "
                             f"elements {list(self.elements)}")
        species = np.fromiter((lookup[s] for s in symbols), dtype=np.int64, count=len(symbols))
        reach = self.cutoff + 4.0 * self.sigma
        i, j, d = primitive_neighbor_list("ijd", atoms.pbc, atoms.cell.array, atoms.positions,
                                          reach, self_interaction=False)
        a = np.minimum(species[i], species[j])
        b = np.maximum(species[i], species[j])
        # index of block (a, b), a <= b, in the upper-triangle order of `pairs`
        block = a * n_species - a * (a - 1) // 2 + (b - a)
        n_blocks = n_species * (n_species + 1) // 2
        out = np.zeros((n_blocks, self.n_bins))
        radii = self.radii
        for start in range(0, len(d), _PAIR_CHUNK):
            stop = start + _PAIR_CHUNK
            gauss = np.exp(-0.5 * ((d[start:stop, None] - radii[None, :]) / self.sigma) ** 2)
            np.add.at(out, block[start:stop], gauss)
        # every pair was listed twice (i -> j and j -> i)
        return (0.5 / max(len(atoms), 1)) * out.ravel()


def default_elements(frames_or_symbols) -> Tuple[str, ...]:
    """Species of the first structure ordered by atomic number: the descriptor's default layout."""
    from ase.data import atomic_numbers

    symbols = set(frames_or_symbols.get_chemical_symbols())
    return tuple(sorted(symbols, key=lambda s: atomic_numbers[s]))


def frame_descriptors(frames: Sequence, descriptor: Optional[RDFDescriptor] = None) -> np.ndarray:
    """(n_frames, size) descriptors of ``frames`` (default :class:`RDFDescriptor` over the
    elements of the first frame)."""
    frames = list(frames)
    if not frames:
        raise ValueError("frame_descriptors: no frames given")
    if descriptor is None:
        descriptor = RDFDescriptor(default_elements(frames[0]))
    return np.stack([descriptor(atoms) for atoms in frames])


# --------------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------------
def farthest_point_sampling(points: np.ndarray, n: int, first: int = 0
                            ) -> Tuple[np.ndarray, np.ndarray]:
    """Greedy farthest-point order of ``n`` rows of ``points`` (M, D), starting at row ``first``.

    Returns ``(order, distance)``: ``order[k]`` is the k-th pick, ``distance[k]`` its Euclidean
    distance to the nearest earlier pick (``inf`` for the first). Each pick maximises that
    distance over the rows not yet picked (lowest row index on ties), so ``distance`` is
    non-increasing; exact duplicates of a picked row come last.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2:
        raise ValueError(f"points: expected a (M, D) array, got shape {points.shape}")
    m = len(points)
    if not 1 <= n <= m:
        raise ValueError(f"cannot pick {n} of {m} points")
    if not 0 <= first < m:
        raise ValueError(f"first={first} is not a row of the {m} points")
    order = np.empty(n, dtype=np.int64)
    distance = np.empty(n)
    nearest = np.linalg.norm(points - points[first], axis=1)
    order[0], distance[0] = first, np.inf
    nearest[first] = -np.inf
    for k in range(1, n):
        pick = int(np.argmax(nearest))
        order[k], distance[k] = pick, nearest[pick]
        nearest = np.minimum(nearest, np.linalg.norm(points - points[pick], axis=1))
        nearest[order[:k + 1]] = -np.inf
    return order, distance


def select_frames(frames: Optional[Sequence], n: int, uncertainty: Optional[Sequence[float]] = None,
                  descriptors: Optional[np.ndarray] = None, candidates: Optional[int] = None,
                  descriptor: Optional[RDFDescriptor] = None) -> np.ndarray:
    """Indices (into ``frames``) of ``n`` frames to label, in the order picked.

    frames: ase.Atoms to compute descriptors from; may be None when ``descriptors`` is given.
    uncertainty: optional (n_frames,) per-frame uncertainty (e.g. a committee's force
        disagreement). Then only the ``candidates`` most uncertain frames (default
        min(n_frames, 3n)) are considered and the most uncertain of them is picked first.
    descriptors: optional precomputed (n_frames, D) descriptors; default
        :func:`frame_descriptors` with ``descriptor`` (an :class:`RDFDescriptor`).
    Without uncertainty the first pick is frame 0; the rest are farthest-point picks
    (:func:`farthest_point_sampling`).
    """
    if descriptors is None:
        if frames is None:
            raise ValueError("select_frames: give frames or descriptors")
        descriptors = frame_descriptors(frames, descriptor)
    descriptors = np.asarray(descriptors, dtype=np.float64)
    if descriptors.ndim != 2:
        raise ValueError(f"descriptors: expected (n_frames, D), got shape {descriptors.shape}")
    n_frames = len(descriptors)
    if frames is not None and len(frames) != n_frames:
        raise ValueError(f"descriptors has {n_frames} rows for {len(frames)} frames")
    if not np.all(np.isfinite(descriptors)):
        raise ValueError("descriptors contain NaN or inf")
    n = int(n)
    if not 1 <= n <= n_frames:
        raise ValueError(f"asked for {n} frames, but there are {n_frames}")
    if uncertainty is None:
        if candidates is not None:
            raise ValueError("candidates only applies together with uncertainty")
        return farthest_point_sampling(descriptors, n, first=0)[0]

    uncertainty = np.asarray(uncertainty, dtype=np.float64)
    if uncertainty.shape != (n_frames,):
        raise ValueError(f"uncertainty: expected shape ({n_frames},), got {uncertainty.shape}")
    if not np.all(np.isfinite(uncertainty)):
        raise ValueError("uncertainty contains NaN or inf")
    pool = min(n_frames, 3 * n) if candidates is None else int(candidates)
    if not n <= pool <= n_frames:
        raise ValueError(f"candidates={pool}: must lie between n={n} and the {n_frames} frames")
    # most uncertain first; stable, so equal uncertainties keep trajectory order
    ranked = np.argsort(-uncertainty, kind="stable")[:pool]
    order, _ = farthest_point_sampling(descriptors[ranked], n, first=0)
    return ranked[order]


# --------------------------------------------------------------------------------------------
# Selection from a LAMMPS dump (``pyexport select``; the command line is pyexport.cli.select)
# --------------------------------------------------------------------------------------------
@dataclass
class DumpSelection:
    """Frames picked from a dump: ``frames`` (as written to frames.extxyz, in the order picked),
    ``order`` (their positions among the frames considered), ``distance`` (descriptor distance
    of each pick to the nearest earlier one), ``timesteps`` and ``scores`` of every frame
    considered (scores empty without a model), ``score`` (None or the model's measure) and the
    ``record`` that becomes selection.json."""

    frames: list
    order: np.ndarray
    distance: np.ndarray
    timesteps: List[int]
    scores: List[float]
    score: Optional["FrameScore"]
    record: dict


def select_from_dump(dump: str, n: int, types: Optional[str] = None, index: str = ":",
                     cutoff: float = RDFDescriptor.cutoff, bins: int = RDFDescriptor.n_bins,
                     committee: Optional[str] = None, grade: Optional[str] = None,
                     candidates: Optional[int] = None) -> DumpSelection:
    """Pick ``n`` frames of a LAMMPS dump by farthest-point sampling of :class:`RDFDescriptor`
    (``cutoff`` Å, ``bins`` per pair); with a ``committee`` or ``grade`` model, among the
    ``candidates`` (default 3·n) highest-scoring frames, the highest first. The dump is read
    twice (descriptors, then the picked frames), so memory holds one frame at a time."""
    from .trajectories import iread

    if candidates is not None and not (committee or grade):
        raise ValueError("--candidates needs --committee or --grade (it counts the highest-scoring frames)")
    score = frame_score(committee=committee, grade=grade)
    descriptor = None
    rows, timesteps, scores = [], [], []
    for position, atoms in enumerate(iread(dump, types=types, index=index)):
        if descriptor is None:
            descriptor = RDFDescriptor(default_elements(atoms), cutoff=cutoff, n_bins=bins)
        rows.append(descriptor(atoms))
        timesteps.append(int(atoms.info["timestep"]))
        if score is not None:
            scores.append(score.of_frame(atoms, dump, position))
    if not rows:
        raise ValueError(f"{dump}: no frames selected by --index {index!r}")
    descriptors = np.stack(rows)
    n = _checked_n(n, len(rows))
    if score is None:
        order, distance = farthest_point_sampling(descriptors, n, first=0)
        method = "farthest-point sampling, first pick = first frame"
    else:
        order = select_frames(None, n, uncertainty=scores, descriptors=descriptors, candidates=candidates)
        distance = pick_distances(descriptors, order)
        pool = min(len(rows), 3 * n) if candidates is None else candidates
        method = (f"the {pool} frames of highest {score.description}, "
                  "then farthest-point sampling among them, first pick = highest")

    picked = {int(k): rank for rank, k in enumerate(order)}
    chosen = [None] * len(order)
    for position, atoms in enumerate(iread(dump, types=types, index=index)):
        if position in picked:
            chosen[picked[position]] = _selection_frame(atoms, dump, position)
    record = {
        "dump": os.path.abspath(dump), "types": types, "index": index,
        "frames_considered": len(rows), "method": method,
        "descriptor": {"kind": "smoothed per-species-pair radial distribution (pyexport.select.RDFDescriptor)",
                       "elements": list(descriptor.elements), "cutoff_A": descriptor.cutoff,
                       "n_bins": descriptor.n_bins, "sigma_A": descriptor.sigma},
        "selected": [{"position": int(k), "timestep": timesteps[k],
                      "distance": None if not np.isfinite(dist) else float(dist)}
                     for k, dist in zip(order, distance)],
    }
    if score is not None:
        record[score.kind] = score.record()
        for entry in record["selected"]:
            entry[score.json_key] = float(scores[entry["position"]])
    return DumpSelection(chosen, order, distance, timesteps, scores, score, record)


def write_selection(selection: DumpSelection, output: str) -> str:
    """OUTPUT/frames.extxyz and OUTPUT/selection.json; returns the frames file's path."""
    import ase.io

    os.makedirs(output, exist_ok=True)
    frames_path = os.path.join(output, FRAMES_FILE)
    ase.io.write(frames_path, selection.frames, format="extxyz")
    write_json(os.path.join(output, SELECTION_FILE), selection.record, indent=2)
    return frames_path


def pick_distances(points: np.ndarray, order: Sequence[int]) -> np.ndarray:
    """Euclidean distance of each pick to the nearest earlier pick (``inf`` for the first)."""
    points = np.asarray(points, dtype=np.float64)
    distance = np.full(len(order), np.inf)
    for k in range(1, len(order)):
        distance[k] = np.linalg.norm(points[list(order[:k])] - points[order[k]], axis=1).min()
    return distance


@dataclass
class FrameScore:
    """How far a model trusts a frame, as the largest per-atom value of one of its measures:
    a committee's force deviation σ_i (eV/Å) or a potential's extrapolation grade γ_i."""

    kind: str              # "committee" | "grade": the selection.json section
    model: str
    description: str       # "committee force uncertainty (...)"
    header: str            # table column
    json_key: str          # per selected frame in selection.json
    per_atom: object       # atoms -> (n_atoms,) values
    details: dict

    def of_frame(self, atoms, dump: str, position: int) -> float:
        """The frame's score (max over atoms); errors name the frame."""
        from .contract import ContractError

        try:
            return float(np.max(self.per_atom(atoms)))
        except ContractError as exc:
            raise ValueError(f"{dump}: frame {position} (timestep {atoms.info.get('timestep')}): {exc}") from None

    def record(self) -> dict:
        return {"model": os.path.abspath(self.model), **self.details}


def frame_score(committee: Optional[str] = None, grade: Optional[str] = None) -> Optional[FrameScore]:
    """The :class:`FrameScore` of ``--committee`` or ``--grade`` (at most one), or None."""
    if committee:
        from .committee import CommitteeEvaluator

        evaluator = CommitteeEvaluator(committee)
        return FrameScore("committee", committee, "committee force uncertainty (max over atoms of sigma_i)",
                          "max σ (eV/Å)", "uncertainty_eV_per_A", evaluator.force_uncertainty,
                          {"committee_size": evaluator.committee_size,
                           "uncertainty": "max over atoms of sigma_i = sqrt(mean_k |F_k,i - mean F_i|^2), eV/A"})
    if grade:
        from .calculator import MLFFCalculator

        calc = MLFFCalculator(grade)
        if not calc.has_grade:
            raise ValueError(f"{grade}: this potential has no extrapolation grade (no active set; fit it with "
                             "`pyexport fit`, which stores one unless --no-active-set, and export it again)")

        def per_atom(atoms):
            atoms = atoms.copy()
            atoms.calc = calc
            return calc.get_property("extrapolation_grade", atoms)

        return FrameScore("grade", grade, "extrapolation grade (max over atoms of gamma_i)", "max γ",
                          "extrapolation_grade", per_atom,
                          {"active_set_size": int(calc.metadata["active_set_size"]),
                           "grade": "max over atoms of gamma_i (<= 1 inside the training data's active set)"})
    return None


def _checked_n(n: int, available: int) -> int:
    if not 1 <= n <= available:
        raise ValueError(f"-n {n}: the dump has {available} frame(s) in --index")
    return n


def _selection_frame(atoms, dump: str, position: int):
    """The frame as written to frames.extxyz: species, positions (Å), cell, pbc, atom ids and
    types, and where it came from. Other per-atom dump columns stay in the dump."""
    from ase import Atoms

    frame = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    for name in ("id", "type"):
        if name in atoms.arrays:
            frame.new_array(name, np.asarray(atoms.arrays[name], dtype=np.int64))
    frame.info["timestep"] = int(atoms.info["timestep"])
    frame.info["dump_position"] = int(position)
    frame.info["dump"] = os.path.basename(dump)
    return frame
