"""Claim: `cluster` and `cluster-nn` are more accurate than LAMMPS's own POD potential (ML-POD,
`fitpod`) fitted to the same data, at no more cost per atom-step in LAMMPS MD.

One run, on the shipped CsPbBr3 reference set (426 structures labelled by SevenNet-0):

1. one seeded split: 10 % of the structures held out, the rest for training; both halves are
   written once as extended XYZ in the minimal form POD's reader parses (``Lattice``,
   ``energy``, ``stress``, then ``species x y z fx fy fz`` per atom), which ASE and
   ``pyexport`` read too, so every model trains on the very same file;
2. fits, each timed by wall clock: POD at two sizes with ``lmp`` ``fitpod`` (its documented
   defaults: energy weight 100, force weight 1, no stress, regularisation 1e-10, on the whole
   training file); ``cluster`` (closed-form ridge) and ``cluster-nn`` with
   :func:`pyexport.fit.run_fit` on the training file only, the ridge λ and the network's early
   stopping chosen on a seeded 10 % validation part of it;
3. held-out errors of every model from LAMMPS itself (``pair_style pod`` / ``pair_style mlff``,
   ``run 0`` on each held-out structure), scored by one function
   (:func:`pyexport.fit.error_metrics`): energy meV/atom, force meV/Å per component, stress GPa
   per Voigt component; fitpod's own test summary is printed next to it as a cross-check, and
   our models' LAMMPS forces are compared with their Python evaluation;
4. MD cost: NVT at 300 K of the cubic 4×4×4 (320 atoms) and 8×8×8 (2560 atoms) supercell at the
   reference a0, serial (1 MPI rank, 1 OpenMP / torch thread), LAMMPS's loop time after a
   warm-up run, median of repeated runs (models interleaved, one process per run), in µs per
   atom-step and as a ratio to the smaller POD; also the loop's CPU time (wall × LAMMPS's
   "% CPU use"), the fairer number when the machine is shared.

    python benchmarks/bench_vs_pod.py [--epochs 60] [-o benchmarks/out/bench_vs_pod.json]
                                      [--workdir DIR]   # keep the fitted files

Takes about 12 min on one free core, about 20 on a loaded 2-core machine (the cluster-nn epochs,
about 3-8 s each, and the larger POD fit dominate).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from pyexport.contract import export_model
from pyexport.fit import FitConfig, run_fit
from pyexport.training.checkpoints import model_from_checkpoint, potential_from_checkpoint, provenance
from pyexport.training.data import elements_of, prepare, read_structures
from pyexport.training.metrics import error_metrics, predict
from pyexport.training.nn import NNTraining
from pyexport.units import GPA_PER_EV_A3
from pyexport.lammps.data_file import write_lammps_data
from pyexport.units import LAMMPS_BAR_PER_EV_A3

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "examples" / "cspbbr3" / "reference" / "cspbbr3_7net0.extxyz.xz"
SUMMARY = ROOT / "examples" / "cspbbr3" / "reference" / "generation_summary.json"
LMP = Path(sys.prefix) / "bin" / "lmp"
CUTOFF_A = 6.5
#: Ridge grid of our linear fits (log10 spaced), wider than the quick demo's 1e-8:1e-2 so that
#: the chosen λ is not at the grid's edge.
LAMBDAS = tuple(10.0 ** k for k in range(-12, -1))

#: POD sizes: radial functions / angular degree per body order (fitpod's parameter-file keys).
#: Both have 3 species, rin 1 Å, rcut 6.5 Å, Bessel degree 4, inverse degree 8, one-body on.
POD_SIZES = {
    "pod-s": {"twobody_number_radial_basis_functions": 6,
              "threebody_number_radial_basis_functions": 5, "threebody_angular_degree": 4,
              "fourbody_number_radial_basis_functions": 4, "fourbody_angular_degree": 2},
    "pod-l": {"twobody_number_radial_basis_functions": 8,
              "threebody_number_radial_basis_functions": 6, "threebody_angular_degree": 5,
              "fourbody_number_radial_basis_functions": 4, "fourbody_angular_degree": 3},
}


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def serial_env():
    """Environment of every LAMMPS process: one OpenMP thread, no stray plugin path."""
    env = {k: v for k, v in os.environ.items() if k != "LAMMPS_PLUGIN_PATH"}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def run_lmp(script, workdir, name):
    """Run ``script`` with the environment's ``lmp`` in ``workdir``; the screen output, or a
    RuntimeError with its tail naming the input file."""
    workdir = Path(workdir)
    (workdir / name).write_text(script)
    proc = subprocess.run([str(LMP), "-in", name, "-log", "none", "-nocite"], cwd=workdir,
                          capture_output=True, text=True, env=serial_env())
    (workdir / (name + ".screen")).write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"LAMMPS failed on {workdir / name} (rc {proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return proc.stdout


# --------------------------------------------------------------------------------------------
# 1. one split, one file per half
# --------------------------------------------------------------------------------------------
def held_out_split(n, fraction, seed):
    """(train, held_out) sorted index arrays: ``round(fraction · n)`` structures held out."""
    order = np.random.default_rng(seed).permutation(n)
    n_out = int(round(fraction * n))
    if not 1 <= n_out < n:
        raise ValueError(f"--held-out {fraction} leaves no held-out or no training structure of {n}")
    return np.sort(order[n_out:]), np.sort(order[:n_out])


def voigt_to_3x3(s):
    """(6,) ASE order xx yy zz yz xz xy -> (3, 3)."""
    xx, yy, zz, yz, xz, xy = s
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])


def write_pod_extxyz(path, structures):
    """Extended XYZ that fitpod's reader parses (it finds the words containing "attice",
    "nergy" and "tress" on the comment line and reads ``species x y z fx fy fz`` per atom, so
    the line carries nothing else that could match) and ASE reads as energy, forces and stress
    (eV/Å³, ASE sign). Numbers at full float64 precision."""
    lines = []
    for st in structures:
        if st.stress is None:
            raise ValueError(f"{st.source}: POD's reader needs a stress on every structure")
        cell = " ".join(f"{v:.17g}" for v in st.atoms.cell.array.reshape(-1))
        stress = " ".join(f"{v:.17g}" for v in voigt_to_3x3(st.stress).reshape(-1))
        lines += [str(st.n_atoms), f'Lattice="{cell}" Properties=species:S:1:pos:R:3:forces:R:3 '
                  f'energy={st.energy:.17g} stress="{stress}" pbc="T T T"']
        for symbol, r, f in zip(st.atoms.get_chemical_symbols(), st.atoms.positions, st.forces):
            lines.append(f"{symbol} {r[0]:.17g} {r[1]:.17g} {r[2]:.17g} {f[0]:.17g} {f[1]:.17g} {f[2]:.17g}")
    Path(path).write_text("\n".join(lines) + "\n")


def check_same_labels(written, read_back, path):
    """The file holds exactly the structures it was written from (no silent change)."""
    if len(written) != len(read_back):
        raise RuntimeError(f"{path}: wrote {len(written)} structures, read back {len(read_back)}")
    for a, b in zip(written, read_back):
        if (a.atoms.get_chemical_symbols() != b.atoms.get_chemical_symbols() or a.energy != b.energy
                or not np.array_equal(a.forces, b.forces) or not np.allclose(a.stress, b.stress, rtol=0, atol=1e-15)
                or not np.array_equal(a.atoms.positions, b.atoms.positions)):
            raise RuntimeError(f"{path}: {b.source} differs from {a.source} it was written from")


# --------------------------------------------------------------------------------------------
# 2. fits
# --------------------------------------------------------------------------------------------
def pod_param_text(elements, size):
    keys = {"species": " ".join(elements), "pbc": "1 1 1", "rin": 1.0, "rcut": CUTOFF_A,
            "number_of_environment_clusters": 1, "number_of_principal_components": 2,
            "bessel_polynomial_degree": 4, "inverse_polynomial_degree": 8, "onebody": 1,
            **POD_SIZES[size]}
    for order in ("five", "six", "seven"):
        keys[f"{order}body_number_radial_basis_functions"] = 0
        keys[f"{order}body_angular_degree"] = 0
    return "".join(f"{k} {v}\n" for k, v in keys.items())


def fit_pod(workdir, size, elements, train_dir, test_dir, energy_weight):
    """fitpod in ``workdir``; returns the pair_style lines, fit wall time and fitpod's summary."""
    workdir = Path(workdir)
    workdir.mkdir()
    (workdir / "param.pod").write_text(pod_param_text(elements, size))
    (workdir / "data.pod").write_text(
        "file_format extxyz\nfile_extension xyz\n"
        f'path_to_training_data_set "{train_dir}"\npath_to_test_data_set "{test_dir}"\n'
        f"fitting_weight_energy {energy_weight}\nfitting_weight_force 1.0\n"
        "fitting_regularization_parameter 1e-10\n"
        "error_analysis_for_training_data_set 1\nerror_analysis_for_test_data_set 1\n"
        "basename_for_output_files pod\nprecision_for_pod_coefficients 16\n")
    t0 = time.perf_counter()
    screen = run_lmp("fitpod param.pod data.pod\n", workdir, "in.fitpod")
    wall = time.perf_counter() - t0
    n_desc = int(re.search(r"number of global descriptors: (\d+)", screen).group(1))
    return {"pair": f"pair_style pod\npair_coeff * * {workdir / 'param.pod'} {workdir / 'pod_coefficients.pod'} "
                    + " ".join(elements),
            "fit_s": wall, "n_coefficients": n_desc,
            "fitpod_summary": {"train": fitpod_summary(workdir / "pod_training_errors.pod"),
                               "test": fitpod_summary(workdir / "pod_test_errors.pod")}}


def fitpod_summary(path):
    """The "All files" row of a fitpod error file: MAE/RMSE energy (eV/atom), force (eV/Å)."""
    for line in Path(path).read_text().splitlines():
        if line.startswith("All files"):
            v = [float(x) for x in line.split()[2:]]
            return {"n_structures": int(v[0]), "energy_mae_meV_per_atom": 1e3 * v[2],
                    "energy_rmse_meV_per_atom": 1e3 * v[3], "forces_mae_meV_per_A": 1e3 * v[4],
                    "forces_rmse_meV_per_A": 1e3 * v[5]}
    raise RuntimeError(f"{path}: no 'All files' row")


def fit_ours(workdir, model, train_path, train, args):
    """run_fit on the training file only (λ and early stopping on its validation part); exports
    the TorchScript model. Returns pair_style lines, fit wall time, the checkpoint."""
    config = FitConfig(data=[str(train_path)], model=model, basis=args.basis, cutoff=CUTOFF_A,
                       lambdas=LAMBDAS, split=(1.0 - args.validation, args.validation, 0.0), seed=args.seed,
                       nn=NNTraining(epochs=args.epochs), progress=False)
    t0 = time.perf_counter()
    ckpt, metrics = run_fit(config, structures=train)
    wall = time.perf_counter() - t0
    path = Path(workdir) / f"{model}.pt"
    export_model(potential_from_checkpoint(ckpt), path, provenance(ckpt))
    return {"pair": f"pair_style mlff threads 1\npair_coeff * * {path} " + " ".join(ckpt["elements"]),
            "fit_s": wall, "n_coefficients": metrics["n_parameters"], "lambda": metrics["lambda"],
            "lambda_at_grid_edge": ckpt["fit"]["lambda_at_grid_edge"],
            "epochs_run": ckpt["fit"].get("nn", {}).get("epochs_run"),
            "python_val": metrics["val"], "checkpoint": ckpt}


# --------------------------------------------------------------------------------------------
# 3. held-out errors through LAMMPS
# --------------------------------------------------------------------------------------------
def lammps_predictions(pair, structures, elements, workdir):
    """Energy (eV), forces (N, 3) eV/Å and stress (6,) GPa (ASE sign and Voigt order) of every
    structure from ``run 0`` in one LAMMPS process, rotated back to the structure's frame."""
    workdir = Path(workdir)
    workdir.mkdir()
    rotations, blocks = [], []
    for k, st in enumerate(structures):
        rotations.append(write_lammps_data(workdir / f"s{k}.data", st.atoms, elements))
        blocks.append(f"""clear
units metal
atom_style atomic
boundary p p p
read_data s{k}.data
{pair}
thermo_style custom step pe pxx pyy pzz pyz pxz pxy
run 0
print "{k} $(pe:%.17g) $(pxx:%.17g) $(pyy:%.17g) $(pzz:%.17g) $(pyz:%.17g) $(pxz:%.17g) $(pxy:%.17g)" append values.txt screen no
write_dump all custom f{k}.dump id fx fy fz modify format float %.17g sort id
""")
    run_lmp("".join(blocks), workdir, "in.eval")
    values = {int(row[0]): row[1:] for row in np.loadtxt(workdir / "values.txt", ndmin=2)}
    energy, forces, stress = [], [], []
    for k, rotation in enumerate(rotations):
        pe, pxx, pyy, pzz, pyz, pxz, pxy = values[k]
        dump = np.loadtxt(workdir / f"f{k}.dump", skiprows=9, ndmin=2)
        energy.append(pe)
        forces.append(torch.from_numpy(dump[:, 1:4] @ rotation))  # v_ase = v_lammps @ rotation
        s_lmp = -voigt_to_3x3([pxx, pyy, pzz, pyz, pxz, pxy]) / LAMMPS_BAR_PER_EV_A3   # eV/Å³
        s = rotation.T @ s_lmp @ rotation
        stress.append(torch.tensor([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]]) * GPA_PER_EV_A3)
    return {"energy": torch.tensor(energy, dtype=torch.float64), "forces": forces,
            "stress": torch.stack(stress).to(torch.float64)}


def python_vs_lammps(ckpt, items, lammps_pred):
    """Largest |E| (eV) and |F| (eV/Å) difference between LAMMPS and the Python evaluation of
    the same checkpoint on the held-out structures (the evaluation path's own check)."""
    pred = predict(model_from_checkpoint(ckpt), items)
    d_e = float((pred["energy"] - lammps_pred["energy"]).abs().max())
    d_f = max(float((a - b).abs().max()) for a, b in zip(pred["forces"], lammps_pred["forces"]))
    return {"max_energy_diff_eV": d_e, "max_force_diff_eV_per_A": d_f}


# --------------------------------------------------------------------------------------------
# 4. MD cost
# --------------------------------------------------------------------------------------------
def cubic_supercell(a0, n):
    unit = Atoms("CsPbBr3", scaled_positions=[[.5, .5, .5], [0, 0, 0], [.5, 0, 0], [0, .5, 0], [0, 0, .5]],
                 cell=np.eye(3) * a0, pbc=True)
    return unit.repeat((n, n, n))


def md_loop_time(pair, data, steps, seed, workdir, name):
    """One LAMMPS process: NVT 300 K, ``steps`` warm-up steps (neighbour lists, TorchScript
    optimisation), then ``steps`` timed steps. Returns (loop time s, final T K, CPU use %)."""
    out = run_lmp(f"""units metal
atom_style atomic
read_data {data}
{pair}
neighbor 1.0 bin
neigh_modify every 1 delay 0 check yes
velocity all create 600 {seed} loop geom
fix nvt all nvt temp 300 300 0.1
timestep 0.002
thermo_style custom step temp pe
thermo {steps}
run {steps}
run {steps}
""", workdir, name)
    loops = re.findall(r"Loop time of ([0-9.eE+-]+) on 1 procs for (\d+) steps", out)
    cpu = re.findall(r"([0-9.]+)% CPU use", out)
    temps = re.findall(rf"^\s+{2 * steps}\s+([0-9.eE+-]+)\s", out, flags=re.M)
    return float(loops[-1][0]), float(temps[-1]), float(cpu[-1])


def md_costs(models, sizes, a0, args, workdir, elements):
    """µs per atom-step, median over ``args.repeats`` runs; the models take turns in every
    repeat so that a change of machine load hits all of them alike."""
    out = {}
    for n in sizes:
        atoms = cubic_supercell(a0, n)
        data = Path(workdir) / f"supercell_{n}.data"
        write_lammps_data(data, atoms, elements)
        steps = max(20, int(round(args.md_steps * 320 / len(atoms))))
        runs = {name: [] for name in models}
        for rep in range(args.repeats):
            for name, fit in models.items():
                loop, temp, cpu = md_loop_time(fit["pair"], data, steps, 4928 + rep, workdir, f"in.md_{name}_{n}_{rep}")
                runs[name].append({"loop_s": loop, "final_T_K": temp, "cpu_percent": cpu})
        for name, r in runs.items():
            per = [x["loop_s"] / (steps * len(atoms)) * 1e6 for x in r]
            # CPU time of the loop (wall × LAMMPS's "% CPU use"): what a serial run costs when
            # the machine is shared and the process waits for a core part of the time
            cpu = [x["loop_s"] * x["cpu_percent"] / 100 / (steps * len(atoms)) * 1e6 for x in r]
            out.setdefault(name, {})[str(len(atoms))] = {
                "supercell": f"{n}x{n}x{n}", "atoms": len(atoms), "steps_timed": steps,
                "us_per_atom_step": statistics.median(per), "us_per_atom_step_runs": per,
                "cpu_us_per_atom_step": statistics.median(cpu), "runs": r}
        log(f"MD {n}x{n}x{n} ({len(atoms)} atoms, {steps} timed steps): " + ", ".join(
            f"{name} {out[name][str(len(atoms))]['us_per_atom_step']:.1f} µs" for name in models))
    return out


# --------------------------------------------------------------------------------------------
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held-out", type=float, default=0.1, help="fraction of structures held out (0.1)")
    parser.add_argument("--validation", type=float, default=0.1,
                        help="fraction of the training file our fits use to choose λ / stop early (0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of both splits and the NN initialisation (0)")
    parser.add_argument("--basis", default="small", choices=("tiny", "small", "medium", "large"),
                        help="cluster basis preset of both our models (small, as the quick demo)")
    parser.add_argument("--epochs", type=int, default=60, help="cluster-nn: maximum Adam epochs (60)")
    parser.add_argument("--pod", nargs="+", default=list(POD_SIZES), choices=list(POD_SIZES), help="POD sizes")
    parser.add_argument("--pod-energy-weight", type=float, default=100.0,
                        help="fitpod fitting_weight_energy (100, its default; force weight 1)")
    parser.add_argument("--supercells", type=int, nargs="+", default=[4, 8], help="MD supercells n×n×n (4 8)")
    parser.add_argument("--md-steps", type=int, default=100,
                        help="timed (and warm-up) MD steps at 320 atoms, scaled by 320/N, at least 20 (100)")
    parser.add_argument("--repeats", type=int, default=3, help="MD runs per model and size (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of our fits (1: serial like fitpod)")
    parser.add_argument("-o", "--output", default=str(ROOT / "benchmarks" / "out" / "bench_vs_pod.json"))
    parser.add_argument("--workdir", help="keep split files, fitted models and LAMMPS inputs here (default: temporary)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp).resolve()
        work.mkdir(parents=True, exist_ok=True)
        t_start = time.perf_counter()

        structures = read_structures([str(REFERENCE)])
        elements = elements_of(structures)
        train_idx, test_idx = held_out_split(len(structures), args.held_out, args.seed)
        for name, idx in (("train", train_idx), ("test", test_idx)):
            (work / name).mkdir(exist_ok=True)
            write_pod_extxyz(work / name / f"{name}.xyz", [structures[i] for i in idx])
        train = read_structures([str(work / "train" / "train.xyz")])
        test = read_structures([str(work / "test" / "test.xyz")])
        check_same_labels([structures[i] for i in train_idx], train, work / "train" / "train.xyz")
        check_same_labels([structures[i] for i in test_idx], test, work / "test" / "test.xyz")
        log(f"split: {len(train)} training, {len(test)} held-out structures ({sum(s.n_atoms for s in test)} atoms); "
            f"elements {elements}")

        fits = {}
        for size in args.pod:
            log(f"fitpod {size} ...")
            fits[size] = fit_pod(work / size, size, elements, work / "train", work / "test", args.pod_energy_weight)
            log(f"fitpod {size}: {fits[size]['n_coefficients']} coefficients, {fits[size]['fit_s']:.0f} s")
        for model in ("cluster", "cluster-nn"):
            log(f"fit {model} ...")
            fits[model] = fit_ours(work, model, work / "train" / "train.xyz", train, args)
            log(f"fit {model}: {fits[model]['n_coefficients']} parameters, λ {fits[model]['lambda']:g}, "
                f"{fits[model]['fit_s']:.0f} s")

        items = prepare(test, elements, CUTOFF_A)
        errors, checks = {}, {}
        for name, fit in fits.items():
            pred = lammps_predictions(fit["pair"], test, elements, work / f"eval_{name}")
            errors[name] = error_metrics(items, pred)
            if "checkpoint" in fit:
                checks[name] = python_vs_lammps(fit["checkpoint"], items, pred)
        log("held-out errors done")

        a0 = float(json.loads(SUMMARY.read_text())["a0_A"])
        md = md_costs(fits, args.supercells, a0, args, work, elements)
        total = time.perf_counter() - t_start

    baseline = args.pod[0]
    sizes = [str(5 * n ** 3) for n in args.supercells]
    rows = []
    for name, fit in fits.items():
        e = errors[name]
        row = {"model": name, "n_coefficients": fit["n_coefficients"], "fit_s": fit["fit_s"],
               "energy_rmse_meV_per_atom": e["energy_rmse_meV_per_atom"], "forces_rmse_meV_per_A": e["forces_rmse_meV_per_A"],
               "stress_rmse_GPa": e.get("stress_rmse_GPa"), "held_out": e}
        for n in sizes:
            for key in ("us_per_atom_step", "cpu_us_per_atom_step"):
                row[f"{key}_{n}"] = md[name][n][key]
                row[f"{key}_ratio_vs_{baseline}_{n}"] = md[name][n][key] / md[baseline][n][key]
        rows.append(row)

    print(f"\nCsPbBr3 (SevenNet-0 labels): {len(train)} training / {len(test)} held-out structures, seed {args.seed}; "
          f"cutoff {CUTOFF_A} Å for all; our basis '{args.basis}', cluster-nn ≤ {args.epochs} epochs; "
          f"serial (1 rank, 1 thread); MD medians of {args.repeats}")
    head = "| model | coefficients | fit (s) | E RMSE (meV/atom) | F RMSE (meV/Å) | stress RMSE (GPa) | " + \
        " | ".join(f"µs/atom-step {n} at. | ×{baseline}" for n in sizes) + " | " + \
        " | ".join(f"CPU µs/atom-step {n} at. | ×{baseline}" for n in sizes) + " |"
    print(head)
    print("|---|" + "---:|" * (head.count("|") - 2))
    for r in rows:
        md_cells = " | ".join(f"{r[f'{key}_{n}']:.1f} | {r[f'{key}_ratio_vs_{baseline}_{n}']:.2f}"
                              for key in ("us_per_atom_step", "cpu_us_per_atom_step") for n in sizes)
        stress = "—" if r["stress_rmse_GPa"] is None else f"{r['stress_rmse_GPa']:.3f}"
        print(f"| {r['model']} | {r['n_coefficients']} | {r['fit_s']:.0f} | {r['energy_rmse_meV_per_atom']:.3f} | "
              f"{r['forces_rmse_meV_per_A']:.2f} | {stress} | {md_cells} |")
    print("\nfitpod's own held-out summary (its definitions), for cross-check:")
    for size in args.pod:
        s = fits[size]["fitpod_summary"]["test"]
        print(f"  {size}: E RMSE {s['energy_rmse_meV_per_atom']:.3f} meV/atom, F RMSE {s['forces_rmse_meV_per_A']:.2f} meV/Å "
              f"(here: {errors[size]['energy_rmse_meV_per_atom']:.3f}, {errors[size]['forces_rmse_meV_per_A']:.2f})")
    for name, c in checks.items():
        print(f"  {name}: LAMMPS vs Python on the held-out set, max |ΔE| {c['max_energy_diff_eV']:.1e} eV, "
              f"max |ΔF| {c['max_force_diff_eV_per_A']:.1e} eV/Å")
    print(f"total run time {total / 60:.1f} min")

    result = {"reference": str(REFERENCE.relative_to(ROOT)), "elements": elements, "cutoff_A": CUTOFF_A,
              "seed": args.seed, "held_out_fraction": args.held_out, "validation_fraction": args.validation,
              "n_train": len(train), "n_held_out": len(test),
              "held_out_reference_frames": [int(i) + 1 for i in test_idx],   # 1-based frames of the reference file
              "basis": args.basis, "epochs": args.epochs, "pod_sizes": {k: POD_SIZES[k] for k in args.pod},
              "pod_energy_weight": args.pod_energy_weight, "md_baseline": baseline, "rows": rows,
              "fitpod_summary": {k: fits[k]["fitpod_summary"] for k in args.pod},
              "ours": {k: {x: fits[k][x] for x in ("lambda", "lambda_at_grid_edge", "epochs_run", "python_val")}
                       for k in ("cluster", "cluster-nn")},
              "python_vs_lammps": checks, "md": md, "total_s": total}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
