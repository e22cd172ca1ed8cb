#!/usr/bin/env python
"""Grow the CsPbBr3 reference set where the fitted potential's own MD goes (the loop:
``examples/active_learning_loop.py``).

    python examples/cspbbr3/active_learning.py --sevenn-python /path/to/venv-with-sevenn/bin/python

MD starts (``--start``): ``cubic``, the cubic cell at the reference's a0; ``orthorhombic``, the
relaxed orthorhombic ground state of the reference (``--supercell`` even), as ``make demo``
heats it. See ``reference/README.md`` for the rounds that made the shipped set.
"""
import json
import sys
from pathlib import Path

import ase.io

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))        # examples/: the shared loop
from active_learning_loop import Example, grow  # noqa: E402
from modes import cubic_supercell  # noqa: E402

REFERENCE = HERE / "reference" / "cspbbr3_7net0.extxyz.xz"


def cubic_start(args):
    a0 = float(json.loads((HERE / "reference" / "generation_summary.json").read_text())["a0_A"])
    n = args.supercell
    return cubic_supercell(a0, (n, n, n))


def orthorhombic_start(args):
    from pyexport.data.dataset import decompressed_text
    n = args.supercell
    if n % 2:
        raise SystemExit(f"--supercell {n}: the orthorhombic start needs an even n")
    ground = next(a for a in ase.io.read(decompressed_text(REFERENCE), index=":", format="extxyz")
                  if a.info.get("config_type") == "phase_min" and a.info.get("phase") == "orthorhombic")
    return ground.repeat((n // 2, n // 2, n // 2))


EXAMPLE = Example(folder=HERE, reference=REFERENCE, elements=["Cs", "Pb", "Br"],
                  starts={"cubic": cubic_start, "orthorhombic": orthorhombic_start}, default_start="cubic",
                  temperatures="100,200,300,400,500,600,700", cutoff=6.5, supercell=4)

if __name__ == "__main__":
    grow(EXAMPLE, __doc__.split("\n\n")[0])
