"""``pyexport select``: pick diverse frames of a LAMMPS dump for DFT labelling
(:func:`pyexport.select.select_from_dump`), write them, print the picks."""
import os

from ..outputs import refuse_overwriting_inputs
from ..select import FRAMES_FILE, SELECTION_FILE, select_from_dump, write_selection
from .options import add_config_argument, defaults_of, require, resolve_options, show_defaults

#: Defaults of ``pyexport select`` (those of :func:`pyexport.select.select_from_dump`, then the
#: output's); config-file keys are these names.
SELECT_DEFAULTS = {"n": None, **defaults_of(select_from_dump), "output": "selected", "overwrite": False}


def add_select_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "select", help="pick diverse MD frames for DFT labelling (farthest-point sampling)",
        description="Pick N frames of a LAMMPS dump by farthest-point sampling of a smoothed per-species-pair "
                    "radial distribution (see pyexport.select). Writes OUTPUT/frames.extxyz (the frames, in "
                    "the order picked) and OUTPUT/selection.json; then run `pyexport vasp-inputs OUTPUT`.")
    p.add_argument("--dump", help="LAMMPS text dump (.gz/.bz2/.xz too); required")
    p.add_argument("--types", help="element of each atom type: Cs,Pb,Br (type 1 first), or a LAMMPS "
                                   "data file / input script; not needed if the dump has an element column")
    p.add_argument("-n", type=int, help="number of frames to pick; required")
    p.add_argument("--index", help="frames to consider, start:stop:step as in ASE (':' = all)")
    p.add_argument("--cutoff", type=float, help="descriptor radius r_c, Å")
    p.add_argument("--bins", type=int, help="grid points per species pair")
    score = p.add_mutually_exclusive_group()
    score.add_argument("--committee", help="committee model (pyexport committee fit): keep the --candidates frames "
                                           "of highest force uncertainty max_i σ_i, pick among them farthest-point, "
                                           "the most uncertain first")
    score.add_argument("--grade", metavar="MODEL",
                       help="potential with an active set (pyexport fit stores one): keep the --candidates frames of "
                            "highest extrapolation grade max_i γ_i, pick among them farthest-point, the highest first")
    p.add_argument("--candidates", type=int, help="with --committee or --grade: how many of the highest-scoring "
                                                  "frames to pick from (default 3·n, at most all frames)")
    p.add_argument("-o", "--output", help="output folder")
    p.add_argument("--overwrite", action="store_const", const=True, help="replace an existing selection in OUTPUT")
    add_config_argument(p)
    show_defaults(p, SELECT_DEFAULTS)
    p.set_defaults(func=run_select_command)


def run_select_command(args) -> int:
    o = resolve_options(args, SELECT_DEFAULTS)
    require(o, "dump", "n")
    if o["committee"] and o["grade"]:
        raise ValueError("--committee and --grade: give one score at a time")
    frames_path = os.path.join(o["output"], FRAMES_FILE)
    refuse_overwriting_inputs([o["dump"], o["types"], o["committee"], o["grade"], args.config],
                              [frames_path, os.path.join(o["output"], SELECTION_FILE)])
    if os.path.exists(frames_path) and not o["overwrite"]:
        raise FileExistsError(f"{frames_path} exists; pass --overwrite to replace it")
    selection = select_from_dump(o["dump"], int(o["n"]), types=o["types"], index=o["index"], cutoff=o["cutoff"],
                                 bins=o["bins"], committee=o["committee"], grade=o["grade"],
                                 candidates=o["candidates"])
    frames_path = write_selection(selection, o["output"])
    order, distance, score, scores = selection.order, selection.distance, selection.score, selection.scores
    print(f"{len(order)} of {selection.record['frames_considered']} frames -> {frames_path}")
    print(f"{'pick':>5} {'position':>9} {'timestep':>12} {'distance':>12}"
          + (f" {score.header:>13}" if score is not None else ""))
    for rank, (k, dist) in enumerate(zip(order, distance)):
        print(f"{rank:5d} {int(k):9d} {selection.timesteps[k]:12d} {dist:12.5g}"
              + (f" {scores[k]:13.5g}" if score is not None else ""))
    return 0
