"""The shipped example, end to end: CsPbBr3 from reference data to C_Q(T) through the tilt
transitions, and the harmonic picture next to it (what `make demo` runs).

    python examples/run_demo.py [--full] [--out examples/cspbbr3/out] [--jobs 2]

Steps (each a command a user can run by hand; they are printed as they run):
  1. pyexport fit / export      cluster potential from the reference set → potential.pt
  2. pyexport scan              R-point tilt double well: potential vs reference
  3. LAMMPS (pair_style mlff)   NPT heating runs of a 4×4×4 (--full 6×6×6) orthorhombic supercell
  4. pyexport fit-efg / export  equivariant EFG model from the shipped PAW-DFT EFG labels
                                (GPAW, examples/cspbbr3/dft_efg/) → efg.pt; and a point-charge
                                EFG test model → efg_pointcharge.pt for the closed loop of step 8
  5. efg analyze + efg scan     C_Q(T), η(T), NQR lines and a .magres file of ⟨V⟩ per T, tilts,
                                lattice, transition temperature; C_Q of 79Br/81Br beside experiment
  6. efg harmonic               phonopy baselines of the same potential: the orthorhombic ground
                                state relaxed with it (all modes real) and the cubic phase
                                (imaginary R/M modes)
  7. efg compare                harmonic vs MD report: out/report.md with every plot; each MD
                                temperature against the baseline of its phase (ranges from the
                                tilt transitions of step 5), none between the transitions
  8. closed_loop.py compare     C_Q(T) of the fitted potential + point-charge EFG test model's MD
                                vs the shipped reference MD (7net-0 + point charges) on a 40-atom
                                cell at two temperatures: a check of the fitting chain

The default is sized to finish in about 15 minutes on 2 cores; --full runs 13 temperatures,
2.5 times longer MD and a longer EFG training (see the README for its run time).
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

from demo_steps import run, step

HERE = Path(__file__).resolve().parent / "cspbbr3"
REFERENCE = HERE / "reference" / "cspbbr3_7net0.extxyz.xz"
#: PAW-DFT (GPAW) EFG labels of 40-atom cells, one file per labelling process (dft_efg/README.md)
DFT_EFG_LABELS = sorted((HERE / "dft_efg").glob("labels_*.extxyz"))
#: Measured 81Br quadrupole coupling of orthorhombic CsPbBr3 at room temperature, MHz: the largest
#: C_Q of the 79/81Br NMR/NQR study of CsPbBr3, CsPb2Br5 and Cs4PbBr6 ("3D to 0D cesium lead
#: bromide: a 79/81Br NMR, NQR and theoretical investigation"; 61-114 MHz over the three).
CQ_81BR_MEASURED_MHZ = 114.0
BIN = Path(sys.prefix) / "bin"

# Both settings heat the orthorhombic ground state of the reference (a-a-c+, Pnma, relaxed by
# 7net-0) in NPT with a free triclinic cell: below the tilt transitions the order parameters keep
# their ground-state values, above them they melt to ~0 and the cell turns cubic. --full runs
# twice the temperatures, 2.5 times longer, and trains the EFG model longer; it keeps the
# potential the active learning made MD-stable (cluster, small basis, see reference/README.md).
SETTINGS = {
    "quick": {"model": "cluster", "basis": "small", "cutoff": 6.5, "lambdas": "1e-8:1e-2:7",
              "temperatures": [100, 200, 300, 400, 500, 600, 700], "equil": 400, "ensemble": "npt",
              "steps": 1200, "every": 10, "efg_epochs": 150, "pointcharge_epochs": 24, "supercell": 4,
              "dt_ps": 0.004},
    "full": {"model": "cluster", "basis": "small", "cutoff": 6.5, "lambdas": "1e-8:1e-2:7",
             "temperatures": list(range(100, 701, 50)), "equil": 1000, "ensemble": "npt", "steps": 3000,
             "every": 20, "efg_epochs": 300, "pointcharge_epochs": 40, "supercell": 4, "dt_ps": 0.004},
}


def orthorhombic_supercell(reference, n):
    """The relaxed orthorhombic 2x2x2 cell (40 atoms) of the reference set (list of Atoms)
    repeated to n x n x n pseudocubic cells (n even)."""
    if n % 2:
        raise SystemExit(f"supercell {n}: the orthorhombic start needs an even n")
    ground = next(a for a in reference
                  if a.info.get("config_type") == "phase_min" and a.info.get("phase") == "orthorhombic")
    return ground.repeat((n // 2, n // 2, n // 2))


def orthorhombic_ground_state(reference):
    """The relaxed orthorhombic cell of the reference set (a⁻a⁻c⁺, Pnma, 40 atoms: 2×2×2
    pseudocubic cells), from which the MD starts."""
    return orthorhombic_supercell(reference, 2)


def harmonic_ranges(scan):
    """``(orthorhombic, cubic)`` MD temperature ranges (``efg compare --harmonic PATH:RANGE``)
    from the tilt transitions ``efg scan`` found: the orthorhombic ground state is the baseline
    below the lowest transition, the cubic phase above the highest, each kept one standard error
    away from the transition (a temperature within the error bar of a transition, or between two
    transitions (the tetragonal phase), gets no harmonic reference). None for a range with no
    room. Without a significant transition the tilts never vanished: orthorhombic throughout."""
    found = [e for e in scan.get("tilt_transitions_K", {}).values() if e.get("significant")]
    if not found:
        return "all", None
    below = min(e["tc_K"] - e["tc_error_K"] for e in found)
    above = max(e["tc_K"] + e["tc_error_K"] for e in found)
    return (f"0-{below:.0f}" if below > 0 else None), f"{above:.0f}-"


def cubic_supercell(a0, n):
    from ase import Atoms
    unit = Atoms("CsPbBr3", scaled_positions=[[.5, .5, .5], [0, 0, 0], [.5, 0, 0], [0, .5, 0], [0, 0, .5]],
                 cell=np.eye(3) * a0, pbc=True)
    return unit.repeat((n, n, n))


def append_closed_loop(report: Path, folder: Path) -> None:
    """The closed-loop table and plot, as a section of the report."""
    loop = json.loads((folder / "closed_loop.json").read_text())
    shutil.copy(folder / "closed_loop_cq.png", report.parent / "closed_loop_cq.png")
    lines = ["", "## Closed loop: fitted models vs the reference MD", "",
             "Same 40-atom cubic cell, fixed-cell canonical MD, same length; the reference side is 7net-0 MD "
             "with point-charge EFGs (shipped in `examples/cspbbr3/reference/closed_loop/`), the fitted side "
             f"is LAMMPS with the fitted potential and EFG model. Criterion: {loop['criterion']}.", "",
             "| T (K) | isotope | quantity | reference | fitted | Δ / σ | agree |",
             "|---|---|---|---|---|---|---|"]
    for T, species in loop["species"].items():
        for element, entry in species.items():
            for key, row in entry.items():
                if key == "isotope":
                    continue
                ratio = row["delta"] / row["sigma"] if row["sigma"] > 0 else float("inf")
                lines.append(f"| {T} | {entry['isotope']} | {key} | {row['reference']:.4f} ± {row['reference_error']:.4f} "
                             f"| {row['fitted']:.4f} ± {row['fitted_error']:.4f} | {ratio:+.1f} | "
                             f"{'yes' if row['agree_2sigma'] else 'no'} |")
    lines += ["", "![closed loop](closed_loop_cq.png)", ""]
    with open(report, "a") as fh:
        fh.write("\n".join(lines))


def append_experiment(report: Path, runs, efg_metrics) -> None:
    """C_Q and η of Br (both isotopes: C_Q scales with Q) and 133Cs per temperature, from the EFG
    model trained on the PAW-DFT labels, beside the measured 81Br C_Q, with what the stand-in
    differs in."""
    from pyexport.nmr import nuclear_spin, quadrupole_moment_mb
    from pyexport.nqr import nqr_frequencies_mhz

    scale_81 = quadrupole_moment_mb("81Br") / quadrupole_moment_mb("79Br")
    held_out = efg_metrics["test"]["species"]["Br"]
    lines = ["", "## C_Q beside experiment", "",
             "The EFG model of this run was trained on PAW-DFT EFGs (GPAW, PBE; "
             "`examples/cspbbr3/dft_efg/`), so these are DFT-grade couplings of the MD structures "
             f"(held-out ⁷⁹Br C_Q error of the model: {held_out['cq_mae_MHz']:.2f} MHz, "
             f"{100 * held_out['relative_cq_mae']:.1f} %). ⁸¹Br: C_Q(⁷⁹Br) × Q(⁸¹Br)/Q(⁷⁹Br) = × {scale_81:.4f}; "
             "NQR line ν = C_Q/2 · (1 + η²/3)^½ (I = 3/2).", "",
             "| T (K) | ⁷⁹Br \|C_Q(⟨V⟩)\| (MHz) | ⁸¹Br \|C_Q(⟨V⟩)\| (MHz) | ⁸¹Br ⟨\|C_Q\|⟩ (MHz) | η(⟨V⟩) "
             "| ⁸¹Br ν (MHz) | ¹³³Cs \|C_Q(⟨V⟩)\| (kHz) |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for path in runs:
        entry = json.loads(Path(path).read_text())
        br, cs = entry["species"]["Br"], entry["species"].get("Cs")
        cq, err = br["abs_cq_of_mean_tensor_mhz"]["value"], br["abs_cq_of_mean_tensor_mhz"]["error"]
        eta = br["eta_of_mean_tensor"]["value"]
        cs_text = (f"{1e3 * cs['abs_cq_of_mean_tensor_mhz']['value']:.1f}" if cs else "–")
        lines.append(f"| {entry['temperature_K']:g} | {cq:.2f} ± {err:.2f} | {scale_81 * cq:.2f} ± {scale_81 * err:.2f} "
                     f"| {scale_81 * br['mean_abs_cq_mhz']['value']:.2f} | {eta:.3f} "
                     f"| {float(nqr_frequencies_mhz(scale_81 * cq, eta, nuclear_spin('81Br'))[0]):.2f} | {cs_text} |")
    lines += ["", f"Measured: C_Q(⁸¹Br) ≈ {CQ_81BR_MEASURED_MHZ:g} MHz in orthorhombic CsPbBr3 at room temperature "
              "(η ≈ 0; 79/81Br NMR/NQR of CsPbBr3, CsPb2Br5 and Cs4PbBr6, \"3D to 0D cesium lead bromide\"). "
              "What the stand-in differs in: PBE without spin–orbit coupling (Pb 6p), structures from "
              "7net-0 and the fitted potential (a₀ = 6.008 Å against 5.87 Å measured for the cubic phase), "
              "the labels' k-mesh (Monkhorst–Pack 2×2×2 on 40 atoms: V_zz(Br) ~2 % above a converged mesh on an "
              "MD frame, `dft_efg/README.md`), and the EFG model's own error above.", ""]
    with open(report, "a") as fh:
        fh.write("\n".join(lines))


def append_nqr(report: Path, runs) -> None:
    """The NQR lines of every temperature (each run.json's ``nqr`` section) as a section of the
    report, with the line shapes at the lowest and highest temperature."""
    reports = [json.loads(Path(r).read_text()) for r in runs]
    lines = ["", "## NQR lines (pure NQR, zero field)", "",
             "Per temperature and isotope: the lines of each site's time-averaged tensor ⟨V⟩ (its C_Q and η "
             "through the quadrupole Hamiltonian of the nuclear spin, `pyexport.nqr`), averaged over the sites, "
             "± the block-jackknife error; ⟨ν⟩ averages the instantaneous lines (static limit). The `.magres` "
             "file beside each run.json holds ⟨V⟩ of every atom in atomic units on the average structure "
             "(Soprano, MagresView and ASE read it).", "",
             "| T (K) | isotope | transition | ν(⟨V⟩) (MHz) | ⟨ν⟩ (MHz) | .magres |", "|---|---|---|---|---|---|"]
    for entry in reports:
        for nqr in (entry.get("nqr") or {}).values():
            of_mean, mean = nqr["lines_of_mean_tensor_mhz"], nqr["mean_lines_mhz"]
            for k, transition in enumerate(nqr["transitions"]):
                error = of_mean["error"][k] if of_mean["error"] is not None else float("nan")
                lines.append(f"| {entry['temperature_K']:g} | {nqr['isotope']} | {transition} | "
                             f"{of_mean['value'][k]:.4f} ± {error:.4f} | {mean['value'][k]:.4f} | "
                             f"`{Path(entry.get('magres_file') or '-').name}` |")
    for index in sorted({0, len(runs) - 1}):
        entry = reports[index]
        if entry.get("nqr_png"):
            shutil.copy(Path(runs[index]).parent / entry["nqr_png"], report.parent / entry["nqr_png"])
            lines += ["", f"![NQR line shapes at {entry['temperature_K']:g} K]({entry['nqr_png']})"]
    lines.append("")
    with open(report, "a") as fh:
        fh.write("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the longer, higher-fidelity setting")
    parser.add_argument("--out", help="output folder (examples/cspbbr3/out, with --full out_full)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="LAMMPS runs in parallel (one core each)")
    args = parser.parse_args(argv)
    cfg = SETTINGS["full" if args.full else "quick"]
    out = Path(args.out) if args.out else HERE / ("out_full" if args.full else "out")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    timings = {}
    py = [sys.executable, "-m"]

    step("1. fit the potential to the reference set (SevenNet-0 stand-in for DFT)")
    t = time.time()
    run(py + ["pyexport", "fit", REFERENCE, "--model", cfg["model"], "--basis", cfg["basis"],
              "--cutoff", cfg["cutoff"], "--lambdas", cfg["lambdas"], "--no-progress",
              "-o", out / "potential.ckpt", "--metrics", out / "fit_metrics.json"])
    run(py + ["pyexport", "export", out / "potential.ckpt", "-o", out / "potential.pt"])
    timings["fit_potential_s"] = time.time() - t

    step("2. R-point tilt double well: fitted potential vs reference")
    summary = json.loads((HERE / "reference" / "generation_summary.json").read_text())
    a0 = float(summary["a0_A"])
    import ase.io
    from pyexport.data.dataset import decompressed_text
    reference = ase.io.read(decompressed_text(REFERENCE), index=":", format="extxyz")
    tilt_frames = [a for a in reference if a.info.get("config_type") == "r_tilt_scan"]
    ase.io.write(out / "r_tilt_reference.extxyz", tilt_frames, format="extxyz")
    untilted = next(a for a in tilt_frames if abs(a.info.get("amplitude_A", 1.0)) < 1e-9)
    untilted.write(out / "cubic_222.vasp", format="vasp", direct=True)
    run(py + ["pyexport", "scan", out / "potential.pt", "--structure", out / "cubic_222.vasp",
              "--mode", "R-tilt", "--amplitudes=-1.0:1.0:41", "--reference", out / "r_tilt_reference.extxyz",
              "-o", out / "r_tilt_scan.json"])
    tilt = json.loads((out / "r_tilt_scan.json").read_text())
    print(f"  R-tilt well: potential {tilt['model']['well_depth_meV_per_fu']:.1f} meV/f.u. at "
          f"{tilt['model']['minimum_amplitude_A']:.3f} Å; reference {tilt['reference']['well_depth_meV_per_fu']:.1f} "
          f"meV/f.u. at {tilt['reference']['minimum_amplitude_A']:.3f} Å", flush=True)

    step(f"3. LAMMPS {cfg['ensemble'].upper()}, {cfg['supercell']}x{cfg['supercell']}x{cfg['supercell']} supercell "
         f"from the orthorhombic ground state, T = {cfg['temperatures']} K")
    t = time.time()
    from pyexport.lammps.data_file import write_lammps_data
    n = cfg["supercell"]
    write_lammps_data(out / "cspbbr3.data", orthorhombic_supercell(reference, n), ["Cs", "Pb", "Br"])
    md = out / "md"
    shutil.rmtree(md, ignore_errors=True)       # no dump or halt note of an earlier run may survive
    md.mkdir()
    script = f"in.{cfg['ensemble']}.lmp"
    shutil.copy(HERE / script, md / script)

    def lammps(T):
        run([BIN / "lmp", "-in", script, "-log", f"log_{T}K.lammps", "-nocite", "-screen", "none",
             "-var", "T", T, "-var", "model", out / "potential.pt", "-var", "data", out / "cspbbr3.data",
             "-var", "steps", cfg["steps"], "-var", "equil", cfg["equil"], "-var", "seed", 1000 + T,
             "-var", "every", cfg["every"], "-var", "dt", cfg["dt_ps"]], cwd=md, log=md / f"screen_{T}K.txt")
        return T

    env_threads = {"OMP_NUM_THREADS": "1"}
    os.environ.update(env_threads)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for T in pool.map(lammps, cfg["temperatures"]):
            print(f"  MD at {T} K done ({time.time() - t:.0f} s)", flush=True)
    timings["md_s"] = time.time() - t

    step("4. fit the equivariant EFG model to the PAW-DFT EFG labels (GPAW), and a point-charge test model")
    t = time.time()
    if not DFT_EFG_LABELS:
        raise SystemExit(f"no PAW-DFT EFG labels in {HERE / 'dft_efg'} (labels_*.extxyz): see its README.md")
    run(py + ["pyexport", "fit-efg", *DFT_EFG_LABELS, "--epochs", cfg["efg_epochs"], "-o", out / "efg.ckpt",
              "--metrics", out / "efg_metrics.json"])
    run(py + ["pyexport", "export", out / "efg.ckpt", "-o", out / "efg.pt"])
    # The closed loop (step 8) compares with 7net-0 MD whose EFGs are point charges: it needs an
    # EFG model of the same labels, trained on the reference's cells of its size (40 atoms).
    run(py + ["pyexport", "fit-efg", REFERENCE, "--epochs", cfg["pointcharge_epochs"], "--max-atoms", 40,
              "-o", out / "efg_pointcharge.ckpt", "--metrics", out / "efg_pointcharge_metrics.json"])
    run(py + ["pyexport", "export", out / "efg_pointcharge.ckpt", "-o", out / "efg_pointcharge.pt"])
    timings["fit_efg_s"] = time.time() - t

    step("5. efg analyze at every temperature, then efg scan")
    t = time.time()
    from pyexport.lammps.dump import count_frames
    shutil.rmtree(out / "analyze", ignore_errors=True)   # no report of an earlier run may be scanned
    runs, halted = [], {}
    for T in cfg["temperatures"]:
        dump = md / f"md_{T}K.dump"
        note = md / f"halted_{T}K.txt"
        index = ":"
        if note.exists():
            halted[T] = note.read_text().strip().splitlines()[0]
            print(f"  WARNING {T} K: {halted[T]}", flush=True)
            n_frames = count_frames(dump) if dump.exists() else 0
            if n_frames < 24:
                print(f"  {T} K left out: {n_frames} frames before the guard stopped the run", flush=True)
                continue
            index = ":-4"          # the last frames before the stop already feel the runaway
        target = out / "analyze" / f"run_{T}K.json"
        run(py + ["efg", "analyze", "--dump", dump, "--model", out / "efg.pt", "--index", index,
                  "--types", "Cs,Pb,Br", "--isotope", "Br=79Br", "--isotope", "Cs=133Cs", "--temperature", T,
                  "--md-timestep", cfg["dt_ps"], "--magres", target.with_suffix(".magres"),
                  "-o", target, "--no-progress"])
        runs.append(target)
    if len(runs) < 2:
        raise SystemExit("fewer than two temperatures have usable MD; see the halted_*.txt files in " + str(md))
    run(py + ["efg", "scan", *runs, "-o", out / "scan.json"])
    timings["analyze_scan_s"] = time.time() - t

    step("6. harmonic baselines (phonopy) of the same potential: orthorhombic ground state, cubic phase")
    t = time.time()
    # Both relaxed with the potential to 1e-4 eV/Å (cell at zero pressure, space group kept): a
    # harmonic model is one about a minimum of the potential that runs the MD, and the 7net-0
    # ground state has residual forces of 0.01 eV/Å with the fitted one. Force constants: the
    # orthorhombic 40-atom cell 2x2x2 (320 atoms, the MD cell; 3x3x3 changes no MSD at 1e-5 Å²,
    # about 7 s with the sampling), the 5-atom cubic cell 2x2x2 (40 atoms: R and M are in it).
    orthorhombic_ground_state(reference).write(out / "orthorhombic_unit.vasp", format="vasp", direct=True)
    cubic_supercell(a0, 1).write(out / "cubic_unit.vasp", format="vasp", direct=True)
    temperatures = (f"{cfg['temperatures'][0]}:{cfg['temperatures'][-1]}:"
                    f"{cfg['temperatures'][1] - cfg['temperatures'][0]}")
    for phase in ("orthorhombic", "cubic"):
        run(py + ["efg", "harmonic", "--potential", out / "potential.pt", "--structure", out / f"{phase}_unit.vasp",
                  "--relax", "1e-4", "--supercell", "2", "2", "2", "--temperatures", temperatures,
                  "--efg-model", out / "efg.pt", "--isotope", "Br=79Br", "--isotope", "Cs=133Cs",
                  "--no-progress", "-o", out / f"harmonic_{phase}.json"])
    timings["harmonic_s"] = time.time() - t

    step("7. harmonic vs MD report: each temperature against the baseline of its phase")
    ranges = harmonic_ranges(json.loads((out / "scan.json").read_text()))
    references = [f"{out / f'harmonic_{phase}.json'}:{span}"
                  for phase, span in zip(("orthorhombic", "cubic"), ranges) if span]
    run(py + ["efg", "compare", out / "scan.json", *[arg for ref in references for arg in ("--harmonic", ref)],
              "-o", out / "report"])
    if halted:
        with open(out / "report" / "report.md", "a") as fh:
            fh.write("\n## MD runs stopped by the guard\n\nThe potential left its training domain "
                     "(temperature runaway) in these runs; only the frames before the stop were analysed:\n\n")
            fh.writelines(f"- {T} K: {text}\n" for T, text in halted.items())
    append_nqr(out / "report" / "report.md", runs)
    append_experiment(out / "report" / "report.md", runs, json.loads((out / "efg_metrics.json").read_text()))
    step("8. closed loop: fitted potential + point-charge EFG model vs the reference MD (7net-0 + point charges)")
    t = time.time()
    run([sys.executable, HERE / "closed_loop.py", "compare", "--potential", out / "potential.pt",
         "--efg-model", out / "efg_pointcharge.pt", "--work", out / "closed_loop", "--jobs", args.jobs])
    append_closed_loop(out / "report" / "report.md", out / "closed_loop")
    timings["closed_loop_s"] = time.time() - t

    timings["total_s"] = time.time() - t_start
    (out / "demo_timings.json").write_text(json.dumps({"setting": "full" if args.full else "quick",
                                                        **cfg, **timings, "halted_md": halted}, indent=1))
    print(f"\nDone in {timings['total_s'] / 60:.1f} min: {out / 'report' / 'report.md'}")


if __name__ == "__main__":
    main()
