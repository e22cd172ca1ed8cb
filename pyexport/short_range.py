"""Does a potential stay repulsive at short range? Push one atom towards its nearest neighbour of
each species inside a crystal and watch the energy.

A fitted polynomial is unconstrained where its data has no samples and can dig deep holes at
contacts shorter than any it was trained on (CsPbBr3 without a core: −1212 eV with a Cs pushed to
0.67 Å of another Cs). The repulsive core that ``pyexport fit`` adds by default
(:class:`pyexport.models.pair.CoreRepulsion`) must win there. The criterion this module checks
(and the tests assert for the shipped potentials), per species pair (A, B):

- the energy stays above its starting value for every separation below ``inner`` (1.5 Å), and
- it is at least ``barrier`` (10 eV) above it at ``closest`` (0.4 Å).

The moving atom approaches along the straight line to its neighbour, every other atom fixed, so
on the way it may pass other atoms; that is what MD collisions look like too.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np


@dataclass
class ApproachScan:
    """Energies (eV, relative to the unperturbed crystal) of atom ``mover`` (species A) pushed
    towards its nearest neighbour ``target`` (species B), at ``separations`` (Å, descending)."""

    pair: str
    mover: int
    target: int
    start_separation: float
    separations: np.ndarray
    energies: np.ndarray
    inner: float
    closest: float
    barrier: float
    failures: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict:
        return {"pair": self.pair, "mover": self.mover, "target": self.target,
                "start_separation_A": self.start_separation, "separations_A": self.separations.tolist(),
                "energies_eV": self.energies.tolist(), "ok": self.ok, "failures": list(self.failures)}


def nearest_of_species(atoms, index: int, species: str) -> int:
    """The atom of ``species`` nearest to atom ``index`` (minimum image), itself excluded."""
    symbols = np.array(atoms.get_chemical_symbols())
    candidates = [k for k in np.flatnonzero(symbols == species) if k != index]
    if not candidates:
        raise ValueError(f"the structure has no other atom of {species}")
    distances = atoms.get_distances(index, candidates, mic=True)
    return int(candidates[int(np.argmin(distances))])


def approach_scan(calc, atoms, a: str, b: str, separations: Sequence[float], inner: float = 1.5,
                  closest: float = 0.4, barrier: float = 10.0) -> ApproachScan:
    """Push the first atom of species ``a`` towards its nearest ``b`` (module docstring)."""
    symbols = atoms.get_chemical_symbols()
    mover = symbols.index(a)
    target = nearest_of_species(atoms, mover, b)
    vector = atoms.get_distance(mover, target, mic=True, vector=True)
    start = float(np.linalg.norm(vector))
    unit = vector / start
    work = atoms.copy()
    work.calc = calc
    e0 = work.get_potential_energy()
    separations = np.asarray(sorted(separations, reverse=True), dtype=float)
    energies = []
    for d in separations:
        trial = atoms.copy()
        trial.positions[mover] = atoms.positions[mover] + (start - d) * unit
        trial.calc = calc
        energies.append(trial.get_potential_energy() - e0)
    energies = np.asarray(energies)
    scan = ApproachScan(f"{a}-{b}", mover, target, start, separations, energies, inner, closest, barrier)
    below = [(d, e) for d, e in zip(separations, energies) if d < inner and e <= 0.0]
    if below:
        d, e = min(below, key=lambda x: x[1])
        scan.failures.append(f"{a}-{b}: {e:.3g} eV at {d:.2f} Å, below the starting energy inside {inner} Å")
    at_closest = energies[np.argmin(np.abs(separations - closest))]
    if at_closest < barrier:
        scan.failures.append(f"{a}-{b}: only {at_closest:.3g} eV above the start at {closest} Å "
                             f"(at least {barrier} eV expected)")
    return scan


def short_range_scans(calc, atoms, elements: Sequence[str], inner: float = 1.5, closest: float = 0.4,
                      barrier: float = 10.0, step: float = 0.05, pairs: Optional[Sequence[str]] = None,
                      progress: bool = False, longest: Optional[float] = None) -> Dict[str, ApproachScan]:
    """:func:`approach_scan` for every ordered species pair (A pushed towards B, and B towards A:
    the environments differ), or only ``pairs`` ("A-B"), separations from just below the starting
    one (or below ``longest`` Å, if shorter) down to ``closest`` in steps of ``step`` Å."""
    from tqdm.auto import tqdm

    symbols = atoms.get_chemical_symbols()
    present = set(symbols)
    todo = [(a, b) for a in elements for b in elements if a in present and b in present]
    if pairs is not None:
        wanted = [tuple(p.split("-")) for p in pairs]
        unknown = [f"{a}-{b}" for a, b in wanted if (a, b) not in todo]
        if unknown:
            raise ValueError(f"pairs {', '.join(unknown)}: not pairs of the potential's species present in the "
                             f"structure ({', '.join(sorted(present & set(elements)))})")
        todo = wanted
    scans = {}
    for a, b in tqdm(todo, desc="approach scans", unit="pair", disable=not progress):
        start = atoms.get_distance(symbols.index(a), nearest_of_species(atoms, symbols.index(a), b), mic=True)
        separations = np.arange(closest, start if longest is None else min(start, longest), step)
        scans[f"{a}-{b}"] = approach_scan(calc, atoms, a, b, separations, inner, closest, barrier)
    return scans


def plot_scans(scans: Dict[str, ApproachScan], path) -> None:
    """Energy (eV, symmetric-log axis) against separation (Å) of every scan, the failing ones
    dashed, ``inner`` and ``closest`` marked: a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, scan in scans.items():
        ax.plot(scan.separations, scan.energies, ls="-" if scan.ok else "--", lw=1.0,
                label=name if scan.ok else f"{name} (fails)")
    first = next(iter(scans.values()))
    ax.axvline(first.inner, color="k", lw=0.6, ls=":")
    ax.axhline(0.0, color="k", lw=0.6)
    ax.axhline(first.barrier, color="grey", lw=0.6, ls=":")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlabel("separation from the approached atom (Å)")
    ax.set_ylabel("E − E(crystal) (eV)")
    ax.legend(fontsize=6, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
