"""``pyexport fit``: fit a cluster / cluster-nn potential (:func:`pyexport.fit.run_fit`), write
its checkpoint and metrics JSON, print the error table. The options of ``fit`` are shared with
``committee fit`` (:mod:`pyexport.cli.committee`)."""
import argparse
import math
import os
from typing import List

import numpy as np

from ..outputs import refuse_overwriting_inputs, write_json
from ..training.config import FitConfig, LossWeights, NNTraining
from .options import MAX_ATOMS_HELP, add_config_argument, number_list, resolve_options, show_defaults
from .reports import format_metrics

BASIS_KEYS = ("n_radial_2", "n_radial_3", "l_max_3", "n_radial_4", "l_max_4", "radial_scale")


def _fit_defaults() -> dict:
    """The options of ``pyexport fit`` at the defaults of :class:`pyexport.training.config.FitConfig`
    (the one place they are written), spelled as on the command line."""
    c = FitConfig()
    lambdas = sorted(c.lambdas)
    return {
        "data": [], "model": c.model, "basis": c.basis, "cutoff": c.cutoff, **{k: None for k in BASIS_KEYS},
        "pair_cutoff": None, "elements": c.elements, "max_atoms": c.max_atoms,
        "energy_weight": c.weights.energy, "force_weight": c.weights.forces, "stress_weight": c.weights.stress,
        "split": ",".join(f"{f:g}" for f in c.split), "seed": c.seed, "dtype": c.dtype,
        "lambdas": f"{lambdas[0]:g}:{lambdas[-1]:g}:{len(lambdas)}", "lambda_tolerance": c.lambda_tolerance,
        "hidden": ",".join(str(h) for h in c.nn.hidden), "epochs": c.nn.epochs, "learning_rate": c.nn.learning_rate,
        "batch_atoms": c.nn.batch_atoms, "patience": c.nn.patience, "lbfgs_steps": c.nn.lbfgs_steps,
        "train_linear": c.nn.train_linear, "core_repulsion": c.core_repulsion, "core_strength": c.core_strength,
        "active_set": c.active_set, "active_set_rtol": c.active_set_rtol, "output": c.output, "metrics": c.metrics, "threads": None, "progress": c.progress,
    }


#: Defaults of ``pyexport fit``; config-file keys are these names (``-`` or ``_`` both accepted).
FIT_DEFAULTS = _fit_defaults()


def add_fit_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "fit", help="fit a cluster / cluster-nn potential to labelled structures",
        description="Fit a `cluster` (closed-form ridge) or `cluster-nn` (MLP on the same invariants) "
                    "potential. Options come from --config (JSON or TOML, keys = option names) and "
                    "flags; flags win. Writes a checkpoint (-o) and a metrics JSON.")
    add_fit_arguments(p, neural=True)
    p.add_argument("-o", "--output", help="checkpoint path")
    show_defaults(p, FIT_DEFAULTS)
    p.set_defaults(func=run_fit_command)


def add_fit_arguments(p, neural: bool) -> None:
    """The options of ``pyexport fit``; ``neural=False`` leaves out --model and the cluster-nn
    training options (for ``pyexport committee fit``, whose members are linear). Defaults are
    None here: they come from the command's table (:mod:`pyexport.cli.options`)."""
    p.add_argument("data", nargs="*", help="data files (vasprun.xml, OUTCAR, ML_AB, extxyz)")
    add_config_argument(p)
    if neural:
        p.add_argument("--model", choices=("cluster", "cluster-nn"), help="model type")
    p.add_argument("--basis", choices=("tiny", "small", "medium", "large"),
                   help="basis size preset (features per species for 3 elements: tiny 103, small 404, "
                        "medium 1369, large 2430)")
    p.add_argument("--cutoff", type=float, help="cutoff radius, Å")
    for key in BASIS_KEYS:
        p.add_argument("--" + key.replace("_", "-"), type=float if key == "radial_scale" else int,
                       help="override the preset's " + key)
    p.add_argument("--pair-cutoff", metavar="A-B=R,...",
                   help="per-species-pair cutoffs in Å, e.g. C-H=2.0,N-H=2.0,C-N=2.5 (order-insensitive, each "
                        "at most --cutoff); the radial functions of a pair span its own cutoff, other pairs "
                        "use --cutoff")
    p.add_argument("--elements", help="comma-separated element order (default: by atomic number)")
    p.add_argument("--max-atoms", type=int, help=MAX_ATOMS_HELP)
    p.add_argument("--energy-weight", type=float, help="weight of the energy term, per (eV/atom)²")
    p.add_argument("--force-weight", type=float, help="weight of the force term, per (eV/Å)²")
    p.add_argument("--stress-weight", type=float, help="weight of the stress term, per GPa²")
    p.add_argument("--split", help="train,val,test fractions")
    p.add_argument("--seed", type=int, help="seed of the split and the NN initialisation")
    p.add_argument("--dtype", choices=("float64", "float32"), help="dtype of the exported model")
    p.add_argument("--lambdas", help="ridge grid: lo:hi:count (log10 spaced) or a comma list")
    p.add_argument("--lambda-tolerance", type=float,
                   help="take the largest lambda whose validation loss is within this fraction of the lowest")
    if neural:
        p.add_argument("--hidden", help="cluster-nn hidden layer widths")
        p.add_argument("--epochs", type=int, help="cluster-nn: maximum Adam epochs")
        p.add_argument("--learning-rate", type=float, help="cluster-nn: Adam learning rate")
        p.add_argument("--batch-atoms", type=int, help="cluster-nn: atoms per batch")
        p.add_argument("--patience", type=int, help="cluster-nn: epochs without validation gain before stopping")
        p.add_argument("--lbfgs-steps", type=int, help="cluster-nn: L-BFGS iterations after Adam")
        core = p.add_mutually_exclusive_group()
        core.add_argument("--core-repulsion", dest="core_repulsion", action="store_const", const=True,
                          help="add a repulsive core below the shortest distance of every species pair in the "
                               "data, at most the pair's cutoff (the default: zero on the data, so the fit and its "
                               "metrics are unchanged; keeps MD from collapsing where the polynomial extrapolates)")
        core.add_argument("--no-core-repulsion", dest="core_repulsion", action="store_const", const=False,
                          help="export the bare polynomial, with no core (it can dig deep holes at short range)")
        p.add_argument("--core-strength", type=float, help="core repulsion strength A, eV")
        p.add_argument("--no-active-set", dest="active_set", action="store_const", const=False,
                       help="do not store the MaxVol active set of the training atoms (the model then has no "
                            "extrapolation grade; the default stores it)")
        p.add_argument("--active-set-rtol", type=float,
                       help="the grade's feature subspace: principal directions of the training atoms' scaled "
                            "invariants with singular value above this times the largest (smaller: more "
                            "directions, a grade that reacts to changes the fitted energy hardly feels)")
        p.add_argument("--train-linear", action="store_const", const=True,
                       help="cluster-nn: train the linear part too (default: kept at the ridge fit)")
    p.add_argument("--metrics", help="metrics JSON path (default: <output>.metrics.json)")
    p.add_argument("--threads", type=int, help="torch threads")
    p.add_argument("--no-progress", dest="progress", action="store_const", const=False, help="no progress bars")


def resolve_fit_options(args: argparse.Namespace) -> dict:
    """The options of ``pyexport fit``: :data:`FIT_DEFAULTS` < --config < flags."""
    return resolve_options(args, FIT_DEFAULTS)


def parse_lambdas(text) -> List[float]:
    """``lo:hi:count`` in log10 (e.g. 1e-12:1:13) or a comma list of values."""
    if isinstance(text, str) and ":" in text:
        try:
            lo, hi, count = text.split(":")
            values = np.logspace(math.log10(float(lo)), math.log10(float(hi)), int(count)).tolist()
        except ValueError:
            raise ValueError(f"--lambdas: expected lo:hi:count with positive lo, hi, got {text!r}") from None
    else:
        values = number_list(text, "lambdas")
    if not values or min(values) <= 0:
        raise ValueError(f"--lambdas: need positive values, got {text!r}")
    return values


def parse_pair_cutoffs(value) -> dict:
    """``"C-H=2.0,N-H=2.0"`` (flag or config string) or a config table ``{"C-H": 2.0}`` as
    {pair: Å}; the keys and ranges are checked by :class:`pyexport.models.cluster_basis.ClusterBasis`."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)
    out = {}
    for item in str(value).split(","):
        if not item.strip():
            continue
        key, sep, number = item.partition("=")
        key = key.strip()
        try:
            if not sep or not key:
                raise ValueError
            r = float(number)
        except ValueError:
            raise ValueError(f"--pair-cutoff: expected A-B=R items (Å) separated by commas, got {item.strip()!r} "
                             f"in {value!r}") from None
        if key in out:
            raise ValueError(f"--pair-cutoff: pair {key!r} is given twice in {value!r}")
        out[key] = r
    return out


def fit_config_from_options(options: dict):
    """A :class:`pyexport.fit.FitConfig` from resolved options (flags, config file, defaults)."""
    overrides = {k: options[k] for k in BASIS_KEYS if options.get(k) is not None}
    elements = options["elements"]
    if isinstance(elements, str):
        elements = [e.strip() for e in elements.split(",") if e.strip()]
    return FitConfig(
        data=list(options["data"]), model=options["model"], basis=options["basis"],
        cutoff=float(options["cutoff"]), basis_overrides=overrides,
        pair_cutoffs=parse_pair_cutoffs(options["pair_cutoff"]), elements=elements,
        max_atoms=None if options["max_atoms"] is None else int(options["max_atoms"]),
        weights=LossWeights(options["energy_weight"], options["force_weight"], options["stress_weight"]),
        split=tuple(number_list(options["split"], "split")), seed=int(options["seed"]), dtype=options["dtype"],
        lambdas=tuple(parse_lambdas(options["lambdas"])), lambda_tolerance=float(options["lambda_tolerance"]),
        nn=NNTraining(hidden=tuple(number_list(options["hidden"], "hidden", int)), epochs=int(options["epochs"]),
                      learning_rate=float(options["learning_rate"]), batch_atoms=int(options["batch_atoms"]),
                      patience=int(options["patience"]), lbfgs_steps=int(options["lbfgs_steps"]),
                      train_linear=bool(options["train_linear"])),
        core_repulsion=bool(options["core_repulsion"]), core_strength=float(options["core_strength"]),
        active_set=bool(options["active_set"]), active_set_rtol=float(options["active_set_rtol"]),
        output=options["output"], metrics=options["metrics"], progress=bool(options["progress"]))


def prepare_fit(args, options: dict):
    """Threads, the FitConfig and the metrics path of ``fit`` / ``committee fit``; refuses to
    write over an input."""
    if options["threads"]:
        import torch

        torch.set_num_threads(int(options["threads"]))
    config = fit_config_from_options(options)
    if not config.data:
        raise ValueError("no data files: give them as arguments or as 'data' in --config")
    metrics_path = metrics_path_of(config)
    refuse_overwriting_inputs([config.data, args.config], [config.output, metrics_path])
    return config, metrics_path


def write_metrics(metrics: dict, report: dict, path: str) -> None:
    """The metrics JSON of a fit: the errors plus the fit report (without the split's sources)."""
    write_json(path, {**metrics, "fit": {k: v for k, v in report.items() if k != "split_sources"}}, indent=2)


def run_fit_command(args) -> int:
    from ..fit import run_fit
    from ..training.checkpoints import write_checkpoint

    config, metrics_path = prepare_fit(args, resolve_fit_options(args))
    ckpt, metrics = run_fit(config)
    write_checkpoint(ckpt, config.output)
    write_metrics(metrics, ckpt["fit"], metrics_path)
    if "linear_start" in metrics:
        print("linear start (the cluster fit the network starts from):")
        print(format_metrics(metrics["linear_start"]))
        print(f"cluster-nn after {ckpt['fit']['nn']['epochs_run']} epochs:")
    print(format_metrics(metrics))
    print(f"chosen lambda {metrics['lambda']:.1e}; checkpoint {config.output}; metrics {metrics_path}")
    if ckpt["fit"].get("lambda_at_grid_edge"):
        print("note: the lowest validation loss is at the edge of the lambda grid; consider widening --lambdas")
    return 0


def metrics_path_of(config) -> str:
    """The metrics JSON of a fit: --metrics, else <output without extension>.metrics.json."""
    return config.metrics or os.path.splitext(config.output)[0] + ".metrics.json"
