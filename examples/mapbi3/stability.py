#!/usr/bin/env python
"""Does a MAPbI3 potential survive production NPT with every CH3NH3+ intact? Guarded LAMMPS runs,
resumable, and a JSON the README quotes.

    python examples/mapbi3/stability.py --model potential.pt \\
        --temperatures 250:3,300:3,350:3,400:3,450:3 --ps 20 -o examples/mapbi3/stability
    python examples/mapbi3/stability.py --model potential.pt --supercell 4 --temperatures 450:1 --ps 20 \\
        -o examples/mapbi3/stability
    python examples/mapbi3/stability.py --model potential.pt --supercell 4 --temperatures 450:1 --ps 20 \\
        --start-from examples/mapbi3/stability/runs/450K_n2_s11/md_450K.dump    # (a run kept with --keep-dumps)

Every run starts from the relaxed tetragonal 96-atom cell of the reference set (repeated to
n×n×n pseudocubic cells; n = 2 is the cell itself, n = 4 has 768 atoms) and runs ``in.npt.lmp``
(0.5 fs, ``aniso`` NPT at 0 bar) with its three guards (temperature, energy, extrapolation grade
γ > ``--gbreak``), with no separate equilibration by default, so that every step is dumped
(every ``--every`` steps) and checked. A run survives when it reaches its end with no guard
firing, no LAMMPS error, max γ below G at every check, its volume within 20 % of the start's and
every cation intact in every frame: each C–N, C–H and N–H bond (the cation's own atoms, by the
start's atom order) within the range of that bond over the reference set
(:func:`bond_ranges`). ``--start-from`` starts instead from the last frame of an earlier run's
dump, repeated (:func:`structures.repeated_frame`): the 768-atom cell equilibrated as the 96-atom one at
the same temperature. The campaign itself (records per run, resuming, summary, plot,
``--compare-guards``) is ``examples/stability_campaign.py``.
"""
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))        # examples/: the shared campaign
from stability_campaign import Campaign, main  # noqa: E402
from model_settings import ELEMENTS, REFERENCE  # noqa: E402
from structures import cation_bond_lengths, relaxed_phase_supercell, repeated_frame  # noqa: E402


@lru_cache(maxsize=1)
def reference_frames() -> tuple:
    import ase.io
    from pyexport.data.dataset import decompressed_text

    return tuple(ase.io.read(decompressed_text(str(REFERENCE)), index=":", format="extxyz"))


def tetragonal_supercell(n: int):
    """The relaxed tetragonal 96-atom cell of the reference set repeated to n×n×n pseudocubic
    cells (n even), atom order of structures.py kept cell by cell."""
    if n % 2:
        raise SystemExit(f"--supercell {n}: the 96-atom cell is 2x2x2 pseudocubic; give an even n")
    return relaxed_phase_supercell(reference_frames(), "tetragonal", n)


@lru_cache(maxsize=1)
def bond_ranges() -> dict:
    """{"C-N" | "C-H" | "N-H": (shortest, longest)} Å over every cation of the reference set:
    where the potential has data for the cation's bonds."""
    ranges = {}
    for atoms in reference_frames():
        for bond, lengths in cation_bond_lengths(atoms).items():
            low, high = ranges.get(bond, (np.inf, -np.inf))
            ranges[bond] = (min(low, float(lengths.min())), max(high, float(lengths.max())))
    return ranges


def check_cations(dump: Path) -> dict:
    """Every frame of a production dump (atoms in structures.py order): the shortest and longest
    length of each bond type over the run, the frames read, and the first frame (timestep, bond,
    length) with a bond outside :func:`bond_ranges`. ``ok``: frames were read and none was outside."""
    from pyexport.lammps.dump import iread

    ranges = bond_ranges()
    seen = {bond: [np.inf, -np.inf] for bond in ranges}
    frames, first_outside = 0, None
    for atoms in iread(dump, types=ELEMENTS):
        frames += 1
        for bond, lengths in cation_bond_lengths(atoms).items():
            low, high = float(lengths.min()), float(lengths.max())
            seen[bond] = [min(seen[bond][0], low), max(seen[bond][1], high)]
            lo, hi = ranges[bond]
            if first_outside is None and (low < lo or high > hi):
                first_outside = {"timestep": int(atoms.info["timestep"]), "bond": bond,
                                 "length_A": low if low < lo else high}
    return {"ok": frames > 0 and first_outside is None, "frames": frames,
            "bond_range_data_A": {b: [round(lo, 4), round(hi, 4)] for b, (lo, hi) in ranges.items()},
            "bond_range_run_A": {b: [round(lo, 4), round(hi, 4)] for b, (lo, hi) in seen.items()},
            "first_outside": first_outside}


CAMPAIGN = Campaign(folder=HERE, elements=ELEMENTS, start=tetragonal_supercell,
                    temperatures="250:3,300:3,350:3,400:3,450:3", supercell=2, dt_ps=0.0005,
                    ps=20.0, equil_ps=0.0, every=20, volume_limit=0.20, check_dump=check_cations,
                    start_from_frame=repeated_frame)

if __name__ == "__main__":
    sys.exit(main(CAMPAIGN, __doc__.split("\n\n")[0]))
