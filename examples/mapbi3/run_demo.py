#!/usr/bin/env python
"""The MAPbI3 example: reference set → potential → NPT series → EFG model → 127I C_Q(T), c/a(T), τ(T).

    python examples/mapbi3/run_demo.py [--full] [--out examples/mapbi3/out] [--jobs 2] [--deuterate]

Not yet a make target: with the shipped reference set the NPT runs still leave its domain and
run away within picoseconds (the guard stops them and the demo says so); see the README section
"The second example: MAPbI3" for what was found and what is next.

Steps (every command is echoed, so each can be rerun by hand):

  1. pyexport fit          the cluster potential on the shipped 7net-0 set (reference/README.md),
                           with short per-pair cutoffs for the intramolecular C–H, N–H, C–N and
                           H–H pairs; held-out errors against the issue's targets
  2. LAMMPS (pair_style mlff)  NPT (a, b, c free, angles fixed: fix npt aniso) of the relaxed
                           tetragonal reference cell, 2×2×2 pseudocubic (96 atoms; --full: 4×4×4,
                           768 atoms), at a series of temperatures across the tetragonal → cubic
                           transition; every frame of every dump checked for intact cations
  3. pyexport fit-efg      the equivariant EFG model on the point-charge labels
  4. efg analyze / scan    127I C_Q(⟨V⟩), η, pseudocubic c/a, tilts, C–N reorientation times per
                           temperature; transition temperatures with uncertainties
  5. report                out/report.md: metrics, MD table, transitions next to experiment's
                           ~327 K, the plots, and what the harmonic baseline can and cannot say

Hydrogen: the default time step is 0.5 fs with real masses; ``--deuterate`` gives H the mass of
deuterium (2.014 u: CD3ND3⁺, the isotopologue 2H NMR measures) and lets the step grow to 0.8 fs.
Static averages (C_Q of ⟨V⟩, η, c/a) are classical-ensemble averages and do not depend on the
masses; the reorientation times of the deuterated cation are longer by up to √2 (inertia-limited
librations) and say so in the report.
"""
import argparse
import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from model_settings import ELEMENTS, FIT_OPTIONS, PAIR_CUTOFFS, REFERENCE
from structures import relaxed_phase_supercell

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # examples/: the shared driver steps
from demo_steps import run, step  # noqa: E402

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
ISOTOPES = ("I=127I", "N=14N", "H=2H")
EXPERIMENT_TC_K = (327.0, 330.0)                 # tetragonal → cubic, MAPbI3 (calorimetry, diffraction)
DEUTERIUM_MASS_U = 2.014

# quick: the 96-atom cell (2×2×2 pseudocubic), short runs, about 15 min on 2 cores; full: the
# 4×4×4 supercell (768 atoms) the issue asks for, 20 ps per temperature: about 80 ms per step
# per core here, i.e. hours on 2 cores (an HPC job: mpirun -np N lmp -in in.npt.lmp ...).
SETTINGS = {
    "quick": {"model": "cluster", "basis": "small", "cutoff": 6.0, "lambdas": "1e-10:1e-2:9",
              "supercell": 2, "temperatures": [250, 300, 350, 400, 450], "equil": 2000, "steps": 12000,
              "every": 40, "dt_ps": 0.0005, "baro": "aniso", "efg_epochs": 20},
    "full": {"model": "cluster", "basis": "small", "cutoff": 6.0, "lambdas": "1e-10:1e-2:9",
             "supercell": 4, "temperatures": [200, 250, 300, 350, 400, 450, 500], "equil": 4000, "steps": 40000,
             "every": 100, "dt_ps": 0.0005, "baro": "aniso", "efg_epochs": 30},
}


def tetragonal_supercell(reference, n):
    """The relaxed tetragonal 2×2×2 reference cell (96 atoms) repeated to n×n×n pseudocubic
    cells (n even; 4 → 768 atoms), atom order of structures.py kept cell by cell."""
    if n % 2:
        raise SystemExit(f"supercell {n}: the 96-atom cell is 2x2x2 pseudocubic; n must be even")
    return relaxed_phase_supercell(reference, "tetragonal", n)


def cation_check(dump, n_atoms_per_cell=12):
    """(frames read, frames with a broken cation, first broken timestep) of a dump whose atoms are
    in structures.py order (the data file's, dumps sorted by id)."""
    sys.path.insert(0, str(HERE))
    from structures import intact_molecules
    from pyexport.lammps.dump import iread
    n, broken, first = 0, 0, None
    for atoms in iread(dump, types=",".join(ELEMENTS)):
        n += 1
        if not intact_molecules(atoms):
            broken += 1
            first = atoms.info.get("timestep") if first is None else first
    return n, broken, first


def held_out_table(metrics):
    test = metrics["test"]
    e = test.get("energy_rmse_meV_per_atom")
    f = test.get("forces_rmse_meV_per_A")
    s = test.get("stress_rmse_GPa")
    return e, f, s


def fmt(value, digits=1):
    return "—" if value is None else f"{value:.{digits}f}"


def write_report(out, cfg, metrics, efg_metrics, md_rows, scan, timings, deuterated):
    e, f, s = held_out_table(metrics)
    tc = scan.get("transition_temperature_K", {})
    coa = scan.get("c_over_a_transition_K", {})
    cq = scan.get("cq_transition_K", {}).get("I", {})
    lines = ["# MAPbI3: 127I C_Q through the tetragonal → cubic transition (7net-0 stand-in reference)", "",
             f"Setting `{cfg['name']}`; total {timings['total_s'] / 60:.1f} min. Reference: "
             "`examples/mapbi3/reference/` (SevenNet-0 energies/forces/stresses, point-charge EFGs: stand-ins "
             "for DFT, see its README).", "",
             "## Potential (held-out test structures)", "",
             "| model | E RMSE (meV/atom) | F RMSE (meV/Å) | stress RMSE (GPa) | targets (cluster-nn) |",
             "|---|---|---|---|---|",
             f"| {cfg['model']}, basis {cfg['basis']}, cutoff {cfg['cutoff']} Å, pair cutoffs {PAIR_CUTOFFS} "
             f"| {fmt(e, 2)} | {fmt(f)} | {fmt(s, 3)} | E ≤ 2, F ≤ 80 |", ""]
    if efg_metrics:
        lines += ["EFG model, held-out: " + ", ".join(
            f"{k} {v:.3g}" for k, v in efg_metrics.items() if isinstance(v, (int, float))), ""]
    n = cfg["supercell"]
    lines += [f"## NPT runs ({n}×{n}×{n} pseudocubic, {12 * n ** 3} atoms, barostat {cfg['baro']})", "",
              f"Time step {cfg['dt_ps'] * 1000:.2f} fs, {cfg['equil']} equilibration + {cfg['steps']} production "
              f"steps ({cfg['steps'] * cfg['dt_ps']:.1f} ps), frame every {cfg['every']} steps; hydrogen mass "
              + (f"{DEUTERIUM_MASS_U} u (deuterated cation)" if deuterated else "1.008 u") + ".", "",
              "| T (K) | frames | cations intact | halted | c/a | ¹²⁷I C_Q(⟨V⟩) (MHz) | η(⟨V⟩) | τ2 (ps) |",
              "|---|---|---|---|---|---|---|---|"]
    for row in md_rows:
        lines.append(f"| {row['T']} | {row['frames']} | {row['intact']} | {row['halted'] or 'no'} | {row['c_over_a']} "
                     f"| {row['cq']} | {row['eta']} | {row['tau2']} |")
    lines += ["", "## Transition temperatures", "",
              "| from | T_c (K) |", "|---|---|"]
    for label, est in (("c/a → 1", coa), ("R tilt / lattice spread (structural)", tc), ("¹²⁷I C_Q(⟨V⟩) break", cq)):
        value = (f"{est['tc_K']:.0f} ± {est['tc_error_K']:.0f}" if est and est.get("significant") and est.get("tc_K")
                 else "no significant transition in this range")
        lines.append(f"| {label} | {value} |")
    lines += ["", f"Experiment (MAPbI3): tetragonal → cubic at {EXPERIMENT_TC_K[0]:.0f}–{EXPERIMENT_TC_K[1]:.0f} K. "
              "The reference is PBE-level (7net-0): its pseudocubic a0 is 6.43 Å against 6.33 Å measured, and "
              "errors of that size in lattice, tilt and cation energetics move the transition by tens of kelvin, "
              "in a direction not known in advance. The two numbers stand side by side; agreement would be "
              "luck, disagreement is no failure of the workflow.", ""]
    reorientation = scan.get("reorientation", {})
    if reorientation:
        lines += ["## Cation reorientation (C–N axis)", ""]
        for name, fit in reorientation.items():
            if name == "axis":
                continue
            if fit.get("fitted"):
                lines.append(f"- {name}: Arrhenius E_a = {fit['activation_energy_meV']:.0f} ± "
                             f"{fit['activation_energy_error_meV']:.0f} meV")
            else:
                lines.append(f"- {name}: no Arrhenius fit ({fit.get('reason')})")
        if deuterated:
            lines.append("- deuterated cation: times up to √2 longer than for CH3NH3⁺ (heavier librator)")
        lines.append("")
    lines += ["## Harmonic baseline", "",
              "Not computed for this example. A harmonic (phonopy) reference needs an equilibrium "
              "structure that MD oscillates about; the cations of MAPbI3 jump between orientations on "
              "picosecond time scales at every temperature studied here, so the averaged ¹²⁷I tensor is a "
              "motional average over orientations that no harmonic expansion about one orientation "
              "reproduces, and the H and N mean-square displacements of a rotor have no harmonic "
              "counterpart. What a harmonic baseline could still describe is the low-temperature "
              "framework with the cations frozen (`efg harmonic` on a relaxed cell): the CsPbBr3 example "
              "shows that comparison.", "", "## Plots", ""]
    for png in sorted((out / "analyze").glob("scan*.png")) + sorted((out / "analyze").glob("run_*_reorientation.png")):
        lines.append(f"![{png.stem}](../analyze/{png.name})")
    (out / "report").mkdir(exist_ok=True)
    (out / "report" / "report.md").write_text("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the longer, higher-fidelity setting")
    parser.add_argument("--out", help="output folder (examples/mapbi3/out, with --full out_full)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="LAMMPS runs in parallel (one core each)")
    parser.add_argument("--deuterate", action="store_true",
                        help=f"H mass {DEUTERIUM_MASS_U} u and a 0.8 fs step (see the docstring)")
    args = parser.parse_args(argv)
    name = "full" if args.full else "quick"
    cfg = dict(SETTINGS[name], name=name)
    if args.deuterate:
        cfg["dt_ps"] = 0.0008
    out = Path(args.out) if args.out else HERE / ("out_full" if args.full else "out")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    timings = {}
    py = [sys.executable, "-m"]

    step("1. fit the potential to the reference set (SevenNet-0 stand-in for DFT)")
    t = time.time()
    run(py + ["pyexport", "fit", REFERENCE, "--model", cfg["model"], "--basis", cfg["basis"],
              "--cutoff", cfg["cutoff"], *FIT_OPTIONS, "--lambdas", cfg["lambdas"], "--no-progress",
              "-o", out / "potential.ckpt", "--metrics", out / "fit_metrics.json"])
    run(py + ["pyexport", "export", out / "potential.ckpt", "-o", out / "potential.pt"])
    metrics = json.loads((out / "fit_metrics.json").read_text())
    timings["fit_potential_s"] = time.time() - t

    n = cfg["supercell"]
    step(f"2. LAMMPS NPT ({cfg['baro']}) of {n}x{n}x{n} pseudocubic MAPbI3 ({12 * n ** 3} atoms) from the "
         f"tetragonal cell, T = {cfg['temperatures']} K")
    t = time.time()
    import ase.io
    from pyexport.data.dataset import decompressed_text
    from pyexport.lammps.data_file import write_lammps_data
    reference = ase.io.read(decompressed_text(REFERENCE), index=":", format="extxyz")
    start = tetragonal_supercell(reference, cfg["supercell"])
    write_lammps_data(out / "mapbi3.data", start, ELEMENTS)
    md = out / "md"
    shutil.rmtree(md, ignore_errors=True)       # no dump or halt note of an earlier run may survive
    md.mkdir()
    shutil.copy(HERE / "in.npt.lmp", md / "in.npt.lmp")

    def lammps(T):
        run([BIN / "lmp", "-in", "in.npt.lmp", "-log", f"log_{T}K.lammps", "-nocite", "-screen", "none",
             "-var", "T", T, "-var", "model", out / "potential.pt", "-var", "data", out / "mapbi3.data",
             "-var", "steps", cfg["steps"], "-var", "equil", cfg["equil"], "-var", "seed", 2000 + T,
             "-var", "every", cfg["every"], "-var", "dt", cfg["dt_ps"], "-var", "baro", cfg["baro"],
             "-var", "hmass", DEUTERIUM_MASS_U if args.deuterate else 1.008], cwd=md, log=md / f"screen_{T}K.txt")
        return T

    os.environ["OMP_NUM_THREADS"] = "1"
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for T in pool.map(lammps, cfg["temperatures"]):
            print(f"  MD at {T} K done ({time.time() - t:.0f} s)", flush=True)
    timings["md_s"] = time.time() - t

    step("3. fit the equivariant EFG model to the point-charge labels")
    t = time.time()
    run(py + ["pyexport", "fit-efg", REFERENCE, "--epochs", cfg["efg_epochs"], "--elements", ",".join(ELEMENTS),
              *(a for iso in ISOTOPES for a in ("--isotope", iso)), "-o", out / "efg.ckpt", "--metrics", out / "efg_metrics.json", "--no-progress"])
    run(py + ["pyexport", "export", out / "efg.ckpt", "-o", out / "efg.pt"])
    timings["fit_efg_s"] = time.time() - t

    step("4. cation check, efg analyze at every temperature, efg scan")
    t = time.time()
    shutil.rmtree(out / "analyze", ignore_errors=True)
    runs, rows = [], []
    for T in cfg["temperatures"]:
        dump = md / f"md_{T}K.dump"
        note = md / f"halted_{T}K.txt"
        halted = note.read_text().strip().splitlines()[0] if note.exists() else None
        n_frames, broken, first_broken = cation_check(dump) if dump.exists() else (0, 0, None)
        row = {"T": T, "frames": n_frames, "halted": halted, "c_over_a": "—", "cq": "—", "eta": "—", "tau2": "—",
               "intact": "all" if broken == 0 else f"no: {broken} frames from step {first_broken}"}
        rows.append(row)
        if halted:
            print(f"  WARNING {T} K: {halted}", flush=True)
        if n_frames < 10 or broken:
            print(f"  {T} K left out of the analysis: {n_frames} frames, {broken} with a broken cation", flush=True)
            continue
        target = out / "analyze" / f"run_{T}K.json"
        run(py + ["efg", "analyze", "--dump", dump, "--model", out / "efg.pt", "--types", ",".join(ELEMENTS),
                  *(a for iso in ISOTOPES for a in ("--isotope", iso)), "--temperature", T, "--md-timestep", cfg["dt_ps"],
                  "-o", target, "--no-progress"])
        runs.append(target)
    if len(runs) < 2:
        raise SystemExit("fewer than two temperatures have usable MD; see the halted_*.txt files in " + str(md))
    run(py + ["efg", "scan", *runs, "-o", out / "analyze" / "scan.json"])
    scan = json.loads((out / "analyze" / "scan.json").read_text())
    fill_rows(rows, scan)
    timings["analyze_scan_s"] = time.time() - t

    timings["total_s"] = time.time() - t_start
    efg_metrics = {}
    if (out / "efg_metrics.json").exists():
        raw = json.loads((out / "efg_metrics.json").read_text())
        efg_metrics = raw.get("test", {}) if isinstance(raw.get("test"), dict) else {}
    write_report(out, cfg, metrics, efg_metrics, rows, scan, timings, args.deuterate)
    (out / "demo_timings.json").write_text(json.dumps({**cfg, "deuterated": args.deuterate, **timings}, indent=1))
    print(f"\nDone in {timings['total_s'] / 60:.1f} min: {out / 'report' / 'report.md'}")


#: MD-table column → efg scan curve (scan.json "curves")
TABLE_CURVES = {"c_over_a": "structure:c_over_a", "cq": "I:abs_cq_of_mean_tensor_mhz",
                "eta": "I:eta_of_mean_tensor", "tau2": "molecules:tau2_ps"}


def fill_rows(rows, scan):
    """The MD table's c/a, |C_Q(⟨V⟩)| of 127I, η(⟨V⟩), τ2 cells from efg scan's curves (value ±
    standard error per temperature; τ2 "not decorrelated" where the run had no τ)."""
    curves = scan.get("curves", {})
    for column, name in TABLE_CURVES.items():
        curve = curves.get(name)
        if curve is None:
            continue
        for T, value, error in zip(curve["temperature_K"], curve["value"], curve["error"]):
            row = next((r for r in rows if float(r["T"]) == float(T)), None)
            if row is None:
                continue
            if value is None or not np.isfinite(value):
                row[column] = "not decorrelated" if column == "tau2" else "—"
            else:
                digits = 4 if column == "c_over_a" else 3
                shown_error = "?" if error is None else f"{error:.{digits}f}"
                row[column] = f"{value:.{digits}f} ± {shown_error}"


if __name__ == "__main__":
    main()
