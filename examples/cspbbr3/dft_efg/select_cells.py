"""The 40-atom CsPbBr3 cells that get PAW-DFT (GPAW) EFG labels for the example's EFG model.

    python examples/cspbbr3/dft_efg/select_cells.py            # writes cells.extxyz, cells_0/1.extxyz

From the shipped reference set (``reference/cspbbr3_7net0.extxyz.xz``: 7net-0 geometries) it takes
the three relaxed phases (``phase_min``: orthorhombic a⁻a⁻c⁺, tetragonal, cubic) and ``--per-temperature``
frames of each 40-atom 7net-0 MD run (``config_type = md``: 100, 200, 300 K orthorhombic cell,
400 K tetragonal, 500 and 700 K cubic; 30 frames 40 fs apart each). The frames of a run are taken
spread out first (the order 0, 15, 8, 23, ... of a bisection), and the runs in turn, so that any
prefix of the list, which is what a partly finished labelling holds, spans every temperature with
the least correlated frames. The list is split by cell into two files, one per labelling process
(``pyexport label`` runs serially, one core each): ``cells_0.extxyz`` the orthorhombic cell (its
minimum and the 100-300 K frames), ``cells_1.extxyz`` the tetragonal and cubic cells, each in the
order of the list, so that ``pyexport label --reuse-wavefunctions`` starts every frame from the
last one of its cell.

Only positions, cell, species and the frame's descriptive info are written: the 7net-0 energies,
forces and point-charge EFGs of the reference are left out, so nothing of them can pass for a DFT
label.
"""
import argparse
import sys
from pathlib import Path

import ase.io
from ase import Atoms

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))

from pyexport.data.dataset import decompressed_text  # noqa: E402

REFERENCE = HERE.parent / "reference" / "cspbbr3_7net0.extxyz.xz"
KEEP_INFO = ("config_type", "phase", "temperature_K", "md_time_fs")
#: the phases (cells) of each labelling process's input file
SHARDS = (("orthorhombic",), ("tetragonal", "cubic"))


def spread_order(n: int) -> list:
    """0 .. n-1 in bisection order (0, n/2, n/4, 3n/4, ...): every prefix is spread over the range."""
    order, seen, step = [], set(), n
    while step >= 1:
        for start in range(0, n, step):
            if start not in seen:
                seen.add(start)
                order.append(start)
        step //= 2
    order += [i for i in range(n) if i not in seen]
    return order


def bare(atoms: Atoms, source_index: int) -> Atoms:
    """Species, positions and cell of ``atoms`` with its descriptive info, no results."""
    out = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True)
    out.info.update({k: atoms.info[k] for k in KEEP_INFO if k in atoms.info})
    out.info["reference_index"] = source_index
    return out


def select(frames, per_temperature: int) -> list:
    """The phase minima, then the MD frames of every temperature interleaved (module docstring)."""
    chosen = [bare(a, i) for i, a in enumerate(frames) if a.info.get("config_type") == "phase_min"]
    runs = {}
    for i, a in enumerate(frames):
        if a.info.get("config_type") == "md" and len(a) == 40:
            runs.setdefault(float(a.info["temperature_K"]), []).append((i, a))
    picks = {}
    for T, run in runs.items():
        run.sort(key=lambda item: float(item[1].info["md_time_fs"]))
        picks[T] = [run[k] for k in spread_order(len(run))][:per_temperature]
    for rank in range(per_temperature):
        for T in sorted(picks):
            if rank < len(picks[T]):
                i, a = picks[T][rank]
                chosen.append(bare(a, i))
    return chosen


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--per-temperature", type=int, default=20, help="MD frames per temperature (of 30)")
    p.add_argument("--out", type=Path, default=HERE, help="folder of cells.extxyz and cells_0/1.extxyz")
    args = p.parse_args(argv)
    frames = ase.io.read(decompressed_text(REFERENCE), ":", format="extxyz")
    chosen = select(frames, args.per_temperature)
    args.out.mkdir(parents=True, exist_ok=True)
    ase.io.write(args.out / "cells.extxyz", chosen, format="extxyz")
    for k, phases in enumerate(SHARDS):
        ase.io.write(args.out / f"cells_{k}.extxyz", [a for a in chosen if a.info["phase"] in phases],
                     format="extxyz")
    print(f"{len(chosen)} cells -> {args.out / 'cells.extxyz'} and {len(SHARDS)} shards by cell")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
