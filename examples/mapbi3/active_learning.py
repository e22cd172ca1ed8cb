#!/usr/bin/env python
"""Grow the MAPbI3 reference set where the fitted potential's own MD goes (the loop:
``examples/active_learning_loop.py``).

    python examples/mapbi3/active_learning.py --sevenn-python /path/to/venv-with-sevenn/bin/python

MD starts (``--start``): ``tetragonal`` or ``cubic``, the relaxed 96-atom cell of that phase in
the reference, repeated to ``--supercell`` pseudocubic cells per edge (even; 2 = the 96-atom cell
itself, which keeps each round to minutes on 2 cores). The fit uses the demo's options
(``model_settings.FIT_OPTIONS``: per-pair cutoffs, repulsive core). See ``reference/README.md`` for the rounds that made the shipped set.
"""
import sys
from pathlib import Path

import ase.io

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))        # examples/: the shared loop
from active_learning_loop import Example, grow  # noqa: E402
from model_settings import ELEMENTS, FIT_OPTIONS, REFERENCE  # noqa: E402
from structures import relaxed_phase_supercell, repeated_frame  # noqa: E402


def relaxed_phase(name):
    def start(args):
        from pyexport.data.dataset import decompressed_text
        n = args.supercell
        if n % 2:
            raise SystemExit(f"--supercell {n}: the 96-atom cell is 2x2x2 pseudocubic; give an even n")
        return relaxed_phase_supercell(ase.io.read(decompressed_text(REFERENCE), index=":", format="extxyz"), name, n)
    return start


EXAMPLE = Example(folder=HERE, reference=REFERENCE, elements=ELEMENTS,
                  starts={"tetragonal": relaxed_phase("tetragonal"), "cubic": relaxed_phase("cubic")},
                  default_start="tetragonal", temperatures="250,300,350,400,450", cutoff=6.0, supercell=2,
                  ensembles=("npt",), timestep_ps=0.0005,
                  fit_options=FIT_OPTIONS, start_from_frame=repeated_frame)

if __name__ == "__main__":
    grow(EXAMPLE, __doc__.split("\n\n")[0])
