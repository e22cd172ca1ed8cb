"""Claim: a float32 export of a `cluster` potential is a usable option: its energies and forces
stay close to float64's, NVE over 10⁴ steps drifts little more, and it costs less CPU per
atom-step (issue #19, item 2). Measured, not assumed: the script prints all three.

One checkpoint (`pyexport fit`) exported twice (`pyexport export --dtype float64|float32`):

1. accuracy, in Python (the contract's own inputs): every ``--every``-th structure of the
   reference set, |ΔE| per atom (meV/atom) and |ΔF| per component (meV/Å) of float32 against
   float64, RMS and max, beside the float64 model's own error against the reference labels;
2. NVE in LAMMPS (`pair_style mlff`, 1 rank, 1 thread): the orthorhombic CsPbBr3 ground state
   repeated to n×n×n pseudocubic cells, velocities at ``--temperature``, ``--steps`` steps of
   ``--dt``; the drift of the total energy is the slope of a straight-line fit to E_tot(t)
   (meV/atom/ps) and the CPU time per atom-step of the run (user + sys of `lmp`, start-up
   included, so only the ratio counts).

    python benchmarks/bench_float32.py --checkpoint potential.ckpt [--supercell 4] [--steps 10000]
           [--dt 0.002] [--temperature 300] [--every 10] [-o float32.json]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from lammps_timing import md_input, run_lmp

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "examples" / "cspbbr3" / "reference" / "cspbbr3_7net0.extxyz.xz"


def accuracy(paths: dict, frames) -> dict:
    """float32 against float64 (and float64 against the labels) on ``frames``."""
    import torch
    from pyexport.contract import build_inputs, fold_to_atoms, load_model

    models = {name: load_model(path) for name, path in paths.items()}
    dE, dF, eE, eF = [], [], [], []
    for atoms in frames:
        out = {}
        for name, (module, meta) in models.items():
            inputs = build_inputs(atoms, meta["cutoff"], meta["elements"])
            result = module(*inputs.as_args())
            rows = result["forces"].detach().to(torch.float64).numpy()      # owned atoms and images
            out[name] = (float(result["energy"]), fold_to_atoms(rows, inputs.image_of, len(atoms)))
        n = len(atoms)
        dE.append(abs(out["float32"][0] - out["float64"][0]) / n * 1e3)
        dF.append(np.abs(out["float32"][1] - out["float64"][1]).ravel() * 1e3)
        eE.append(abs(out["float64"][0] - atoms.get_potential_energy()) / n * 1e3)
        eF.append(np.abs(out["float64"][1] - atoms.get_forces()).ravel() * 1e3)
    dF, eF = np.concatenate(dF), np.concatenate(eF)
    rms = lambda x: float(np.sqrt(np.mean(np.square(x))))  # noqa: E731
    return {"structures": len(frames), "atoms": int(sum(len(a) for a in frames)),
            "float32_vs_float64": {"E_rms_meV_per_atom": rms(dE), "E_max_meV_per_atom": float(max(dE)),
                                   "F_rms_meV_per_A": rms(dF), "F_max_meV_per_A": float(dF.max())},
            "float64_vs_reference": {"E_rms_meV_per_atom": rms(eE), "F_rms_meV_per_A": rms(eF)}}


def nve_input(model: Path, elements, steps: int, dt_ps: float, temperature: float) -> str:
    """NVE from velocities at 2T (equipartition brings T to about ``temperature``), the total
    energy per atom written every 10 steps to energy.txt."""
    return md_input(model, elements, steps, timestep_ps=dt_ps, velocity_K=2 * temperature, integrator="fix nve all nve",
                    extra='neigh_modify every 1 delay 0 check yes\nvariable t equal time\n'
                          'variable e equal etotal/atoms\nfix out all print 10 "$t $e" file energy.txt screen no\n',
                    thermo=1000)


def nve_drift(model: Path, elements, folder: Path, args) -> dict:
    (folder / "in.lmp").write_text(nve_input(model, elements, args.steps, args.dt, args.temperature))
    cpu, _, _ = run_lmp(folder)
    t, e = np.loadtxt(folder / "energy.txt", comments="#", unpack=True)
    slope, intercept = np.polyfit(t, e, 1)
    residual = e - (slope * t + intercept)
    return {"drift_meV_per_atom_per_ps": float(slope * 1e3), "fluctuation_rms_meV_per_atom": float(residual.std() * 1e3),
            "E_end_minus_start_meV_per_atom": float((e[-1] - e[0]) * 1e3), "cpu_s": cpu}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="a `pyexport fit` checkpoint of a cluster potential")
    p.add_argument("--supercell", type=int, default=4, help="n of the n×n×n pseudocubic cell (even; 4: 320 atoms)")
    p.add_argument("--steps", type=int, default=10000)
    p.add_argument("--dt", type=float, default=0.002, help="time step, ps")
    p.add_argument("--temperature", type=float, default=300.0, help="K (velocities drawn at 2T: equipartition)")
    p.add_argument("--every", type=int, default=10, help="accuracy on every k-th reference structure")
    p.add_argument("-o", "--output", type=Path, help="JSON of the results")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "examples" / "cspbbr3"))
    import ase.io
    from stability import ground_state_supercell
    from pyexport.data.dataset import decompressed_text
    from pyexport.lammps.data_file import write_lammps_data

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = {}
        for dtype in ("float64", "float32"):
            paths[dtype] = tmp / f"{dtype}.pt"
            subprocess.run([sys.executable, "-m", "pyexport", "export", str(args.checkpoint), "-o", str(paths[dtype]),
                            "--dtype", dtype], check=True, capture_output=True)
        frames = ase.io.read(decompressed_text(str(REFERENCE)), index=f"::{args.every}", format="extxyz")
        results["accuracy"] = accuracy(paths, frames)
        from pyexport.contract import load_model
        elements = load_model(paths["float64"])[1]["elements"]
        atoms = ground_state_supercell(args.supercell)
        results["nve"] = {"atoms": len(atoms), "steps": args.steps, "dt_ps": args.dt, "temperature_K": args.temperature}
        for dtype, path in paths.items():
            folder = tmp / dtype
            folder.mkdir()
            write_lammps_data(folder / "start.data", atoms, elements)
            results["nve"][dtype] = nve_drift(path, elements, folder, args)
    results["load_average"] = os.getloadavg()
    acc, nve = results["accuracy"], results["nve"]
    a = acc["float32_vs_float64"]
    print(f"accuracy on {acc['structures']} reference structures ({acc['atoms']} atoms): float32 vs float64 "
          f"E rms {a['E_rms_meV_per_atom']:.2e} (max {a['E_max_meV_per_atom']:.2e}) meV/atom, "
          f"F rms {a['F_rms_meV_per_A']:.2e} (max {a['F_max_meV_per_A']:.2e}) meV/Å; float64 vs the labels "
          f"E rms {acc['float64_vs_reference']['E_rms_meV_per_atom']:.3f} meV/atom, "
          f"F rms {acc['float64_vs_reference']['F_rms_meV_per_A']:.1f} meV/Å")
    print(f"NVE, {nve['atoms']} atoms, {nve['steps']} steps of {nve['dt_ps']} ps, T ≈ {nve['temperature_K']:.0f} K, "
          f"load average {results['load_average'][0]:.1f}")
    print("| dtype | drift (meV/atom/ps) | E_tot end − start (meV/atom) | E_tot fluctuation rms (meV/atom) | CPU s | vs float64 |")
    print("|---|---:|---:|---:|---:|---:|")
    for dtype in ("float64", "float32"):
        r = nve[dtype]
        print(f"| {dtype} | {r['drift_meV_per_atom_per_ps']:+.2e} | {r['E_end_minus_start_meV_per_atom']:+.2e} | "
              f"{r['fluctuation_rms_meV_per_atom']:.2e} | {r['cpu_s']:.1f} | {r['cpu_s'] / nve['float64']['cpu_s']:.2f} |")
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
