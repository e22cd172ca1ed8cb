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
        NPT MD with it at each temperature from the example's start   LAMMPS, pair_style mlff,
            guarded by temperature, energy and extrapolation grade    fix halt (γ > --gbreak)
        pick frames: among the approach to every stop a guard caught, or the whole run if none,
                     the frames of highest max γ (above --gselect), farthest-point among them
        label them with 7net-0 (+ point-charge EFG)                   <example>/make_reference.py --label
        add them to the set

Rounds stop early once every run reaches its end with max γ below --gselect (nothing left to
learn at these temperatures and lengths). ``--gbreak 0`` falls back to the temperature and energy
guards and evenly spaced frames (what the shipped sets' earlier rounds used). The fitted
potential's stability is what each round measures; ``active_learning.json`` records, per round,
the fit metrics, per run where and why it stopped and its max γ, the runs and atom-ps that
survived, and how many frames were added.

Runs with efgmd installed (pyexport, LAMMPS with the plugin); the labelling runs in the Python
given by ``--sevenn-python`` (one with the ``reference`` extra, i.e. sevenn). The result
replaces the example's shipped reference (``--out``); see its ``reference/README.md``.
"""
import argparse
import hashlib
import json
import os
import re
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
from pyexport.lammps.log import elapsed_steps, read_thermo, read_timestep

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
    start_from_frame: Optional[Callable[[Atoms, int], Atoms]] = None   # --start-from: (dump frame, n) -> start


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
    p.add_argument("--start-from", type=Path, metavar="DUMP",
                   help="start every run from a frame of this LAMMPS dump (e.g. an equilibrated smaller cell) "
                        "repeated to --supercell, instead of --start")
    p.add_argument("--start-frame", type=int, default=-1, help="which frame of --start-from (-1: the last)")
    p.add_argument("--timestep", type=float, default=example.timestep_ps,
                   help="MD time step, ps (default: the LAMMPS input's)")
    p.add_argument("--steps", type=int, default=2000, help="MD steps per run")
    p.add_argument("--every", type=int, default=10, help="dump interval, steps")
    p.add_argument("--frames-per-run", type=int, default=6,
                   help="frames added from each run (runaway approach or evenly spaced)")
    p.add_argument("--approach-steps", type=int, default=150,
                   help="a halted run contributes frames from this many steps before the halt")
    p.add_argument("--gbreak", type=float, default=10.0,
                   help="stop a run when an atom's extrapolation grade exceeds this (0: no grade guard)")
    p.add_argument("--gselect", type=float, default=2.0,
                   help="frames whose max extrapolation grade exceeds this are candidates for labelling")
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
         "-var", "seed", seed, "-var", "every", args.every, "-var", "thermo", args.every,
         "-var", "gbreak", f"{args.gbreak:g}", *timestep],
        cwd=folder, log=folder / f"screen_{temperature}K.txt", check=False)
    note = folder / f"halted_{temperature}K.txt"
    log_path = folder / f"log_{temperature}K.lammps"
    log = log_path.read_text()
    thermo = read_thermo(log_path)
    steps_run = int(elapsed_steps(thermo["Step"])[-1]) if len(thermo.get("Step", [])) else 0
    n_atoms = int(re.search(r"^\s*(\d+) atoms$", log, re.M).group(1))
    dt = read_timestep(log_path)
    outcome = {"temperature_K": temperature, "steps_run": steps_run, "atom_ps": steps_run * dt * n_atoms,
               "max_grade": float(thermo["c_grade"].max()) if len(thermo.get("c_grade", [])) else None}
    errors = [line for line in log.splitlines() if line.startswith("ERROR")]
    if rc != 0 or errors:   # e.g. lost atoms before the guard's next check: a runaway all the same
        return outcome | {"halted": f"LAMMPS stopped (rc {rc}): {' '.join(errors[-1:])}"}
    return outcome | {"halted": note.read_text().strip() if note.exists() else None}


def printed_grades(log: Path) -> Dict[int, float]:
    """{timestep: max γ} that LAMMPS printed in the thermo (``c_grade``) of a run's log, the last
    section's value where sections repeat a step. The runs print thermo at their dump interval,
    so this is every dumped frame's grade, and reading it is what makes picking from 20-ps runs
    cheap: evaluating the model again took 0.46 s per 96-atom MAPbI3 frame on a loaded machine
    (load 5.7), ~20 min for the 3,000 candidate frames of one 20-ps run. Empty without a log or
    without the column."""
    thermo = read_thermo(log) if log.exists() else {}
    if "c_grade" not in thermo or len(thermo["c_grade"]) != len(thermo.get("Step", [])):
        return {}
    return {int(step): float(g) for step, g in zip(thermo["Step"], thermo["c_grade"])}


def pick_frames(dump: Path, outcome: Dict, round_index: int, args, elements: Sequence[str],
                model: Optional[Path] = None) -> List[Atoms]:
    """Frames from one run. Candidates: the approach to the stop if a guard stopped the run,
    otherwise the whole run after its first quarter. With the grade (``model`` and --gbreak > 0):
    the candidates whose max γ exceeds --gselect, the highest first, farthest-point among the
    3 × --frames-per-run highest (:func:`pyexport.select.select_frames`); none when the run
    stayed inside the data. Without it: evenly spaced candidates."""
    from pyexport.lammps.dump import iread
    frames = list(iread(dump, types=list(elements)))
    if not frames:
        return []
    if outcome["halted"]:
        last = frames[-1].info["timestep"]
        # the final frames of a runaway are already deep in it, far from anything physical
        end = last if outcome.get("stopped_by_grade") else last - 2 * args.every
        window = [a for a in frames if last - args.approach_steps <= a.info["timestep"] <= end]
    else:
        window = frames[len(frames) // 4:]
    if model is not None and args.gbreak > 0 and window:
        from pyexport.select import RDFDescriptor, default_elements, frame_descriptors, frame_score, select_frames

        printed = printed_grades(dump.parent / f"log_{outcome['temperature_K']}K.lammps")
        score = None
        grades = []
        for k, a in enumerate(window):
            if a.info["timestep"] not in printed:   # a frame the thermo did not show: evaluate it here
                score = score or frame_score(grade=str(model))
                grades.append(score.of_frame(a, str(dump), k))
            else:
                grades.append(printed[a.info["timestep"]])
        grades = np.array(grades)
        window = [a for a, g in zip(window, grades) if g > args.gselect]
        grades = grades[grades > args.gselect]
        if not window:
            return []
        n = min(args.frames_per_run, len(window))
        descriptors = frame_descriptors(window, RDFDescriptor(default_elements(window[0])))
        order = select_frames(None, n, uncertainty=grades, descriptors=descriptors,
                              candidates=min(len(window), 3 * n))
        chosen = [window[k] for k in order]
    elif outcome["halted"]:
        chosen = window[:: max(1, len(window) // args.frames_per_run)][-args.frames_per_run:]
    else:
        idx = np.linspace(0, len(window) - 1, args.frames_per_run).astype(int)
        chosen = [window[i] for i in sorted(set(idx))]
    picked = []
    for atoms in chosen:
        clean = Atoms(atoms.get_chemical_symbols(), positions=atoms.get_positions(), cell=atoms.cell, pbc=True)
        clean.info.update(config_type="active_learning", active_round=round_index,
                          temperature_K=float(outcome["temperature_K"]), ensemble=args.ensemble,
                          start="dump" if args.start_from else args.start,
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
    if args.start_from:
        from stability_campaign import start_from_dump
        start, _, origin = start_from_dump(args.start_from, args.start_frame, example.elements,
                                           example.start_from_frame, args.supercell)
    else:
        start, origin = example.starts[args.start](args), None
    write_lammps_data(folder / "start.data", start, example.elements)
    os.environ["OMP_NUM_THREADS"] = "1"
    seeds = {T: args.seed * 1000 + 10 * round_index + T for T in args.temperatures}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        outcomes = list(pool.map(lambda T: md(folder, T, seeds[T], args, example), args.temperatures))
    for o in outcomes:
        print(f"  round {round_index} {o['temperature_K']} K: {o['halted'] or 'ran to the end'}", flush=True)
    picked = []
    for o in outcomes:
        o["stopped_by_grade"] = bool(o["halted"]) and _grade_fired(o, args)
        picked += pick_frames(folder / f"md_{o['temperature_K']}K.dump", o, round_index, args, example.elements,
                              folder / "potential.pt")
    survived = [o for o in outcomes if not o["halted"]]
    grades = [o["max_grade"] for o in outcomes if o["max_grade"] is not None]
    summary = {"round": round_index, "fit": {k: metrics[k] for k in ("lambda", "val", "test") if k in metrics},
               "md": outcomes, "n_halted": len(outcomes) - len(survived), "runs_survived": len(survived),
               "atom_ps_survived": sum(o["atom_ps"] for o in survived),
               "max_grade": max(grades) if grades else None, "frames_added": len(picked)}
    if origin is not None:
        summary["start_from"] = origin
    if not picked:
        summary["frames_added"] = 0
        summary["seconds"] = round(time.time() - t0, 1)
        return summary | {"new_frames": []}
    ase.io.write(folder / "picked.extxyz", picked, format="extxyz")
    run([args.sevenn_python, example.folder / "make_reference.py", "--label", folder / "picked.extxyz",
         "--out", folder / "labelled.extxyz"], log=folder / "label.log")
    summary["new_frames"] = ase.io.read(folder / "labelled.extxyz", index=":", format="extxyz")
    summary["seconds"] = round(time.time() - t0, 1)
    return summary


def _grade_fired(outcome: Dict, args) -> bool:
    """Whether the grade guard (rather than temperature or energy) stopped the run: its max γ
    reached --gbreak."""
    return args.gbreak > 0 and outcome.get("max_grade") is not None and outcome["max_grade"] > args.gbreak


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
    record = args.work / "active_learning.json"
    # rounds of earlier invocations on the same work folder stay in the record
    history = [h for h in json.loads(record.read_text()) if h["round"] <= done] if record.exists() else []
    for r in range(done + 1, done + args.rounds + 1):
        summary = one_round(r, data, args, example)
        new = summary.pop("new_frames")
        history.append(summary)
        record.write_text(json.dumps(history, indent=1) + "\n")
        print(f"round {r}: {summary['runs_survived']}/{len(args.temperatures)} runs survived "
              f"({summary['atom_ps_survived']:.3g} atom-ps), max grade {summary['max_grade']}, "
              f"{len(new)} frames added ({summary['seconds']:.0f} s)", flush=True)
        if not new:
            break
        frames += new
        data = args.work / f"data_round_{r + 1}.extxyz"
        ase.io.write(data, frames, format="extxyz")
    ase.io.write(args.out, frames, format="extxyz")
    print(f"{args.out}: {len(frames)} structures ({len(frames) - start_count} from active learning)")

