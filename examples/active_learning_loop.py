#!/usr/bin/env python
"""Grow an example's reference set where the fitted potential's own MD goes (shared by
``examples/cspbbr3/active_learning.py`` and ``examples/mapbi3/active_learning.py``).

A potential fitted to frozen-mode scans, rattles and short reference MD is accurate on what it
saw, but LAMMPS MD with it wanders into local environments the data never held (a Cs far off
its cage centre, strongly sheared octahedra, a compressed C–N bond) where the polynomial has no
reason to be right and can turn attractive. The cure is the usual active-learning loop, with
7net-0 as the oracle:

    for each round:
        fit `cluster` to the current set (the example's settings)    pyexport fit / export
        NPT MD with it at each temperature from the example's start   LAMMPS, pair_style mlff
        pick frames: the approach to every runaway the guard caught,
                     evenly spaced frames of every run that survived
        label them with 7net-0 (+ point-charge EFG)                   <example>/make_reference.py --label
        add them to the set

Rounds stop early once every run survives. The fitted potential's stability is what each round
measures; ``active_learning.json`` records, per round, the fit metrics, which runs halted
(step, temperature) and how many frames were added.

Runs with efgmd installed (pyexport, LAMMPS with the plugin); the labelling runs in the Python
given by ``--sevenn-python`` (one with the ``reference`` extra, i.e. sevenn). The result
replaces the example's shipped reference (``--out``); see its ``reference/README.md``.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import ase.io
import numpy as np
from ase import Atoms

from pyexport.data.dataset import decompressed_text

BIN = Path(sys.prefix) / "bin"


@dataclass
class Example:
    """What the loop needs to know of an example.

    ``starts`` maps the ``--start`` choices to functions (parsed args → the MD start structure,
    n × n × n pseudocubic cells for ``--supercell n``); ``fit_options`` are extra ``pyexport
    fit`` arguments (pair cutoffs, element order); the folder holds ``make_reference.py`` (the
    labeller) and the LAMMPS inputs ``in.<ensemble>.lmp``."""

    folder: Path
    reference: Path
    elements: List[str]                 # LAMMPS types 1, 2, ...
    starts: Dict[str, Callable[[argparse.Namespace], Atoms]]
    default_start: str
    temperatures: str                   # K, comma list
    cutoff: float
    supercell: int
    ensembles: Sequence[str] = ("npt", "nvt")
    fit_options: List[str] = field(default_factory=list)
    timestep_ps: Optional[float] = None  # None: the input's own default


def parse_args(example: Example, description: str, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--reference", type=Path, default=example.reference, help="the set to start from")
    p.add_argument("--out", type=Path, default=example.reference, help="the grown set (extxyz, .xz ok)")
    p.add_argument("--work", type=Path, default=example.folder / "out" / "active_learning",
                   help="folder for fits, MD and labels of every round")
    p.add_argument("--sevenn-python", default=sys.executable,
                   help="Python that has sevenn (runs make_reference.py --label)")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--temperatures", default=example.temperatures, help="K")
    p.add_argument("--ensemble", choices=tuple(example.ensembles), default=example.ensembles[0])
    p.add_argument("--supercell", type=int, default=example.supercell,
                   help="n of the n x n x n pseudocubic start")
    p.add_argument("--start", choices=tuple(example.starts), default=example.default_start,
                   help="MD start structure (see the example's active_learning.py)")
    p.add_argument("--timestep", type=float, default=example.timestep_ps,
                   help="MD time step, ps (default: the LAMMPS input's)")
    p.add_argument("--steps", type=int, default=2000, help="MD steps per run")
    p.add_argument("--every", type=int, default=10, help="dump interval, steps")
    p.add_argument("--frames-per-run", type=int, default=6,
                   help="frames added from each run (runaway approach or evenly spaced)")
    p.add_argument("--approach-steps", type=int, default=150,
                   help="a halted run contributes frames from this many steps before the halt")
    p.add_argument("--basis", default="small")
    p.add_argument("--cutoff", type=float, default=example.cutoff)
    p.add_argument("--lambdas", default="1e-8:1e-2:7")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    args.temperatures = [int(t) for t in args.temperatures.split(",")]
    if args.rounds < 1 or args.frames_per_run < 1 or args.every < 1:
        p.error("--rounds, --frames-per-run and --every must be positive")
    return args


def run(cmd: List, cwd: Optional[Path] = None, log: Optional[Path] = None, check: bool = True) -> int:
    """Run a command (output to ``log`` if given); stop the script if it fails and ``check``."""
    cmd = [str(c) for c in cmd]
    print("$ " + " ".join(cmd), flush=True)
    with open(log, "w") if log else open(os.devnull, "w") as fh:
        proc = subprocess.run(cmd, cwd=cwd, stdout=fh if log else None, stderr=subprocess.STDOUT)
    if check and proc.returncode != 0:
        raise SystemExit(f"failed (rc {proc.returncode}): {' '.join(cmd)}" + (f"; log {log}" if log else ""))
    return proc.returncode


def fit(data: Path, folder: Path, args, example: Example) -> Dict:
    """Fit and export `cluster` with the example's settings; the fit metrics. A fit of the same
    data with the same settings already in ``folder`` (an interrupted run) is reused."""
    stamp = (hashlib.sha256(data.read_bytes()).hexdigest() + f" {args.basis} {args.cutoff} {args.lambdas} "
             + " ".join(example.fit_options))
    stamp_file = folder / "fit_stamp.txt"
    if stamp_file.exists() and stamp_file.read_text() == stamp and (folder / "potential.pt").exists():
        print(f"reusing the fit in {folder}", flush=True)
        return json.loads((folder / "fit_metrics.json").read_text())
    py = [sys.executable, "-m", "pyexport"]
    run(py + ["fit", data, "--model", "cluster", "--basis", args.basis, "--cutoff", args.cutoff,
              "--lambdas", args.lambdas, *example.fit_options, "--no-progress", "-o", folder / "potential.ckpt",
              "--metrics", folder / "fit_metrics.json"], log=folder / "fit.log")
    run(py + ["export", folder / "potential.ckpt", "-o", folder / "potential.pt"])
    stamp_file.write_text(stamp)
    return json.loads((folder / "fit_metrics.json").read_text())


def md(folder: Path, temperature: int, seed: int, args, example: Example) -> Dict:
    """One guarded LAMMPS run from the start structure; where and whether the guard stopped it."""
    script = f"in.{args.ensemble}.lmp"
    timestep = [] if args.timestep is None else ["-var", "dt", args.timestep]
    rc = run([BIN / "lmp", "-in", example.folder / script, "-log", f"log_{temperature}K.lammps", "-nocite",
         "-screen", "none", "-var", "T", temperature, "-var", "model", folder / "potential.pt",
         "-var", "data", folder / "start.data", "-var", "steps", args.steps, "-var", "equil", 0,
         "-var", "seed", seed, "-var", "every", args.every, *timestep],
        cwd=folder, log=folder / f"screen_{temperature}K.txt", check=False)
    note = folder / f"halted_{temperature}K.txt"
    log = (folder / f"log_{temperature}K.lammps").read_text()
    errors = [line for line in log.splitlines() if line.startswith("ERROR")]
    if rc != 0 or errors:   # e.g. lost atoms before the guard's next check: a runaway all the same
        return {"temperature_K": temperature, "halted": f"LAMMPS stopped (rc {rc}): {' '.join(errors[-1:])}"}
    return {"temperature_K": temperature, "halted": note.read_text().strip() if note.exists() else None}


def pick_frames(dump: Path, outcome: Dict, round_index: int, args, elements: Sequence[str]) -> List[Atoms]:
    """Frames from one run: the approach to the runaway if the guard stopped it, otherwise
    evenly spaced frames of the whole run."""
    from pyexport.lammps.dump import iread
    frames = list(iread(dump, types=list(elements)))
    if not frames:
        return []
    if outcome["halted"]:
        last = frames[-1].info["timestep"]
        # the final frames are already deep in the runaway, far from anything physical
        window = [a for a in frames if last - args.approach_steps <= a.info["timestep"] <= last - 2 * args.every]
        chosen = window[:: max(1, len(window) // args.frames_per_run)][-args.frames_per_run:]
    else:
        idx = np.linspace(len(frames) // 4, len(frames) - 1, args.frames_per_run).astype(int)
        chosen = [frames[i] for i in sorted(set(idx))]
    picked = []
    for atoms in chosen:
        clean = Atoms(atoms.get_chemical_symbols(), positions=atoms.get_positions(), cell=atoms.cell, pbc=True)
        clean.info.update(config_type="active_learning", active_round=round_index,
                          temperature_K=float(outcome["temperature_K"]), ensemble=args.ensemble, start=args.start,
                          md_step=int(atoms.info["timestep"]), runaway=bool(outcome["halted"]))
        picked.append(clean)
    return picked


def one_round(round_index: int, data: Path, args, example: Example) -> Dict:
    folder = args.work / f"round_{round_index}"
    folder.mkdir(parents=True, exist_ok=True)
    for old in [*folder.glob("halted_*"), *folder.glob("md_*.dump"), *folder.glob("log_*"), *folder.glob("screen_*")]:
        old.unlink()    # nothing of an interrupted run may be taken for this one's
    t0 = time.time()
    metrics = fit(data, folder, args, example)
    from pyexport.lammps.data_file import write_lammps_data
    write_lammps_data(folder / "start.data", example.starts[args.start](args), example.elements)
    os.environ["OMP_NUM_THREADS"] = "1"
    seeds = {T: args.seed * 1000 + 10 * round_index + T for T in args.temperatures}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        outcomes = list(pool.map(lambda T: md(folder, T, seeds[T], args, example), args.temperatures))
    for o in outcomes:
        print(f"  round {round_index} {o['temperature_K']} K: {o['halted'] or 'ran to the end'}", flush=True)
    picked = []
    for o in outcomes:
        picked += pick_frames(folder / f"md_{o['temperature_K']}K.dump", o, round_index, args, example.elements)
    summary = {"round": round_index, "fit": {k: metrics[k] for k in ("lambda", "val", "test") if k in metrics},
               "md": outcomes, "n_halted": sum(bool(o["halted"]) for o in outcomes),
               "frames_added": len(picked)}
    if summary["n_halted"] == 0:
        summary["frames_added"] = 0
        summary["seconds"] = round(time.time() - t0, 1)
        return summary | {"new_frames": []}
    ase.io.write(folder / "picked.extxyz", picked, format="extxyz")
    run([args.sevenn_python, example.folder / "make_reference.py", "--label", folder / "picked.extxyz",
         "--out", folder / "labelled.extxyz"], log=folder / "label.log")
    summary["new_frames"] = ase.io.read(folder / "labelled.extxyz", index=":", format="extxyz")
    summary["seconds"] = round(time.time() - t0, 1)
    return summary


def grow(example: Example, description: str, argv: Optional[Sequence[str]] = None) -> None:
    """The command line of an example's active_learning.py: parse, run the rounds, write --out."""
    args = parse_args(example, description, argv)
    args.work.mkdir(parents=True, exist_ok=True)
    frames = ase.io.read(decompressed_text(args.reference), index=":", format="extxyz")
    start_count = len(frames)
    # a run that grows an already grown set continues its round numbers
    done = max((int(a.info.get("active_round", 0)) for a in frames), default=0)
    data = args.work / f"data_round_{done + 1}.extxyz"
    ase.io.write(data, frames, format="extxyz")
    history = []
    for r in range(done + 1, done + args.rounds + 1):
        summary = one_round(r, data, args, example)
        new = summary.pop("new_frames")
        history.append(summary)
        (args.work / "active_learning.json").write_text(json.dumps(history, indent=1) + "\n")
        print(f"round {r}: {summary['n_halted']}/{len(args.temperatures)} runs halted, "
              f"{len(new)} frames added ({summary['seconds']:.0f} s)", flush=True)
        if not new:
            break
        frames += new
        data = args.work / f"data_round_{r + 1}.extxyz"
        ase.io.write(data, frames, format="extxyz")
    ase.io.write(args.out, frames, format="extxyz")
    print(f"{args.out}: {len(frames)} structures ({len(frames) - start_count} from active learning)")

