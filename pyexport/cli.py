"""The ``pyexport`` command line.

Every subcommand registers itself through one ``add_*_parser(subparsers)`` function that sets
``func`` on its parser; adding a subcommand is one line in :data:`COMMANDS`.

Potential verbs (this module): ``fit``, ``committee fit``, ``export``, ``inspect``, ``eval``, ``scan``.
"""
import argparse
import json
import math
import os
import sys
from typing import List, Optional, Sequence

import numpy as np

from .outputs import refuse_overwriting_inputs


# --------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------
#: Defaults of ``pyexport fit``; config-file keys are these names (``-`` or ``_`` both accepted).
FIT_DEFAULTS = {
    "data": [], "model": "cluster", "basis": "medium", "cutoff": 6.0,
    "n_radial_2": None, "n_radial_3": None, "l_max_3": None, "n_radial_4": None, "l_max_4": None,
    "radial_scale": None, "pair_cutoff": None, "elements": None,
    "energy_weight": 1000.0, "force_weight": 1.0, "stress_weight": 0.1,
    "split": "0.8,0.1,0.1", "seed": 0, "dtype": "float64", "lambdas": "1e-15:1:16", "lambda_tolerance": 0.02,
    "hidden": "64,64", "epochs": 200, "learning_rate": 1e-3, "batch_atoms": 400, "patience": 20,
    "lbfgs_steps": 0, "train_linear": False, "core_repulsion": True, "core_strength": 100.0, "active_set": True,
    "output": "model.ckpt", "metrics": None, "threads": None, "progress": True,
}
_BASIS_KEYS = ("n_radial_2", "n_radial_3", "l_max_3", "n_radial_4", "l_max_4", "radial_scale")


def add_fit_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "fit", help="fit a cluster / cluster-nn potential to labelled structures",
        description="Fit a `cluster` (closed-form ridge) or `cluster-nn` (MLP on the same invariants) "
                    "potential. Options come from --config (JSON or TOML, keys = option names) and "
                    "flags; flags win. Writes a checkpoint (-o) and a metrics JSON.")
    _add_fit_arguments(p, neural=True)
    p.add_argument("-o", "--output", help="checkpoint path (model.ckpt)")
    p.set_defaults(func=run_fit_command)


def _add_fit_arguments(p, neural: bool) -> None:
    """The options of ``pyexport fit``; ``neural=False`` leaves out --model and the cluster-nn
    training options (for ``pyexport committee fit``, whose members are linear)."""
    p.add_argument("data", nargs="*", help="data files (vasprun.xml, OUTCAR, ML_AB, extxyz)")
    p.add_argument("--config", help="JSON or TOML file with any of the options below")
    if neural:
        p.add_argument("--model", choices=("cluster", "cluster-nn"), help="model type (cluster)")
    p.add_argument("--basis", choices=("tiny", "small", "medium", "large"), help="basis size preset (medium; features per species for 3 elements: tiny 103, small 404, medium 1369, large 2430)")
    p.add_argument("--cutoff", type=float, help="cutoff radius, Å (6.0)")
    for key in _BASIS_KEYS:
        p.add_argument("--" + key.replace("_", "-"), type=float if key == "radial_scale" else int,
                       help="override the preset's " + key)
    p.add_argument("--pair-cutoff", metavar="A-B=R,...",
                   help="per-species-pair cutoffs in Å, e.g. C-H=2.0,N-H=2.0,C-N=2.5 (order-insensitive, each "
                        "at most --cutoff); the radial functions of a pair span its own cutoff, other pairs "
                        "use --cutoff (none)")
    p.add_argument("--elements", help="comma-separated element order (default: by atomic number)")
    p.add_argument("--energy-weight", type=float, help="weight of the energy term, per (eV/atom)² (1000)")
    p.add_argument("--force-weight", type=float, help="weight of the force term, per (eV/Å)² (1)")
    p.add_argument("--stress-weight", type=float, help="weight of the stress term, per GPa² (0.1)")
    p.add_argument("--split", help="train,val,test fractions (0.8,0.1,0.1)")
    p.add_argument("--seed", type=int, help="seed of the split and the NN initialisation (0)")
    p.add_argument("--dtype", choices=("float64", "float32"), help="dtype of the exported model (float64)")
    p.add_argument("--lambdas", help="ridge grid: lo:hi:count (log10 spaced, 1e-15:1:16) or a comma list")
    p.add_argument("--lambda-tolerance", type=float,
                   help="take the largest lambda whose validation loss is within this fraction of the "
                        "lowest (0.02)")
    if neural:
        p.add_argument("--hidden", help="cluster-nn hidden layer widths (64,64)")
        p.add_argument("--epochs", type=int, help="cluster-nn: maximum Adam epochs (200)")
        p.add_argument("--learning-rate", type=float, help="cluster-nn: Adam learning rate (1e-3)")
        p.add_argument("--batch-atoms", type=int, help="cluster-nn: atoms per batch (400)")
        p.add_argument("--patience", type=int, help="cluster-nn: epochs without validation gain before stopping (20)")
        p.add_argument("--lbfgs-steps", type=int, help="cluster-nn: L-BFGS iterations after Adam (0)")
        core = p.add_mutually_exclusive_group()
        core.add_argument("--core-repulsion", dest="core_repulsion", action="store_const", const=True,
                          help="add a repulsive core below the shortest distance of every species pair in the "
                               "data (the default: zero on the data, so the fit and its metrics are unchanged; "
                               "keeps MD from collapsing where the polynomial extrapolates)")
        core.add_argument("--no-core-repulsion", dest="core_repulsion", action="store_const", const=False,
                          help="export the bare polynomial, with no core (it can dig deep holes at short range)")
        p.add_argument("--core-strength", type=float, help="core repulsion strength A, eV (100)")
        p.add_argument("--no-active-set", dest="active_set", action="store_const", const=False,
                       help="do not store the MaxVol active set of the training atoms (the model then has no "
                            "extrapolation grade; the default stores it)")
        p.add_argument("--train-linear", action="store_const", const=True,
                       help="cluster-nn: train the linear part too (default: kept at the ridge fit)")
    p.add_argument("--metrics", help="metrics JSON path (default: <output>.metrics.json)")
    p.add_argument("--threads", type=int, help="torch threads")
    p.add_argument("--no-progress", dest="progress", action="store_const", const=False, help="no progress bars")


def read_config(path: str, known: Optional[dict] = None) -> dict:
    """Options from a JSON or TOML file; keys outside ``known`` (default: those of ``pyexport
    fit``) are an error naming the file."""
    known = FIT_DEFAULTS if known is None else known
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: config file not found")
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        if path.endswith(".toml"):
            import tomllib

            values = tomllib.loads(raw.decode())
        else:
            values = json.loads(raw.decode())
    except Exception as exc:
        raise ValueError(f"{path}: cannot parse config ({exc})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: config must be a table/object of options")
    out = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ValueError(f"{path}: unknown option {key!r}; known: {sorted(known)}")
        out[name] = value
    if "data" in out:
        if isinstance(out["data"], str):
            out["data"] = [out["data"]]
        base = os.path.dirname(os.path.abspath(path))
        out["data"] = [d if os.path.isabs(d) else os.path.join(base, d) for d in out["data"]]
    return out


def resolve_fit_options(args: argparse.Namespace, defaults: Optional[dict] = None) -> dict:
    """Defaults (those of ``pyexport fit`` unless given) < config file < flags."""
    defaults = FIT_DEFAULTS if defaults is None else defaults
    options = dict(defaults)
    if args.config:
        options.update(read_config(args.config, defaults))
    for key in defaults:
        value = getattr(args, key, None)
        if key == "data":
            if value:
                options["data"] = list(value)
        elif value is not None:
            options[key] = value
    return options


def _number_list(text, name: str, kind=float) -> List:
    if isinstance(text, (list, tuple)):
        return [kind(v) for v in text]
    try:
        return [kind(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--{name.replace('_', '-')}: expected comma-separated numbers, got {text!r}") from None


def parse_lambdas(text) -> List[float]:
    """``lo:hi:count`` in log10 (e.g. 1e-12:1:13) or a comma list of values."""
    if isinstance(text, str) and ":" in text:
        try:
            lo, hi, count = text.split(":")
            values = np.logspace(math.log10(float(lo)), math.log10(float(hi)), int(count)).tolist()
        except ValueError:
            raise ValueError(f"--lambdas: expected lo:hi:count with positive lo, hi, got {text!r}") from None
    else:
        values = _number_list(text, "lambdas")
    if not values or min(values) <= 0:
        raise ValueError(f"--lambdas: need positive values, got {text!r}")
    return values


def parse_pair_cutoffs(value) -> dict:
    """``"C-H=2.0,N-H=2.0"`` (flag or config string) or a config table ``{"C-H": 2.0}`` as
    {pair: Å}; the keys and ranges are checked by :class:`pyexport.models.cluster.ClusterBasis`."""
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
    from .fit import FitConfig, LossWeights, NNTraining

    overrides = {k: options[k] for k in _BASIS_KEYS if options.get(k) is not None}
    elements = options["elements"]
    if isinstance(elements, str):
        elements = [e.strip() for e in elements.split(",") if e.strip()]
    return FitConfig(
        data=list(options["data"]), model=options["model"], basis=options["basis"],
        cutoff=float(options["cutoff"]), basis_overrides=overrides,
        pair_cutoffs=parse_pair_cutoffs(options["pair_cutoff"]), elements=elements,
        weights=LossWeights(options["energy_weight"], options["force_weight"], options["stress_weight"]),
        split=tuple(_number_list(options["split"], "split")), seed=int(options["seed"]), dtype=options["dtype"],
        lambdas=tuple(parse_lambdas(options["lambdas"])), lambda_tolerance=float(options["lambda_tolerance"]),
        nn=NNTraining(hidden=tuple(_number_list(options["hidden"], "hidden", int)), epochs=int(options["epochs"]),
                      learning_rate=float(options["learning_rate"]), batch_atoms=int(options["batch_atoms"]),
                      patience=int(options["patience"]), lbfgs_steps=int(options["lbfgs_steps"]),
                      train_linear=bool(options["train_linear"])),
        core_repulsion=bool(options["core_repulsion"]), core_strength=float(options["core_strength"]),
        active_set=bool(options["active_set"]),
        output=options["output"], metrics=options["metrics"], progress=bool(options["progress"]))


def run_fit_command(args) -> int:
    import torch

    from .fit import run_fit, write_checkpoint

    options = resolve_fit_options(args)
    if options["threads"]:
        torch.set_num_threads(int(options["threads"]))
    config = fit_config_from_options(options)
    if not config.data:
        raise ValueError("no data files: give them as arguments or as 'data' in --config")
    metrics_path = metrics_path_of(config)
    refuse_overwriting_inputs([config.data, args.config], [config.output, metrics_path])
    ckpt, metrics = run_fit(config)
    write_checkpoint(ckpt, config.output)
    with open(metrics_path, "w") as fh:
        json.dump({**metrics, "fit": {k: v for k, v in ckpt["fit"].items() if k != "split_sources"}}, fh, indent=2)
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


def format_metrics(metrics: dict) -> str:
    rows = [f"{'set':6s} {'n':>5s} {'E RMSE':>9s} {'E MAE':>9s} {'F RMSE':>9s} {'F MAE':>9s} {'S RMSE':>8s} {'S MAE':>8s}",
            f"{'':6s} {'':>5s} {'meV/atom':>9s} {'meV/atom':>9s} {'meV/Å':>9s} {'meV/Å':>9s} {'GPa':>8s} {'GPa':>8s}"]
    for name in ("train", "val", "test"):
        m = metrics.get(name)
        if not m or not m.get("n_structures"):
            continue
        rows.append(f"{name:6s} {m['n_structures']:5d} {m['energy_rmse_meV_per_atom']:9.3f} "
                    f"{m['energy_mae_meV_per_atom']:9.3f} {m['forces_rmse_meV_per_A']:9.2f} "
                    f"{m['forces_mae_meV_per_A']:9.2f} {m.get('stress_rmse_GPa', float('nan')):8.4f} "
                    f"{m.get('stress_mae_GPa', float('nan')):8.4f}")
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------
# committee fit
# --------------------------------------------------------------------------------------------
#: Defaults of ``pyexport committee fit``: those of ``fit`` (config files are shared; the
#: cluster-nn keys are accepted and not used), K members, an exported model as output.
COMMITTEE_DEFAULTS = {**FIT_DEFAULTS, "members": 4, "output": "committee.pt", "core_repulsion": False,
                      "active_set": False}


def add_committee_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "committee", help="committees of cluster potentials (force uncertainty for MD)",
        description="A committee of `cluster` potentials fitted to bootstrap resamples of the training "
                    "structures, exported as one model whose outputs carry every member's forces: "
                    "pair_style mlff + compute mlff/uncertainty, the ASE calculator and `pyexport select "
                    "--committee` turn them into a per-atom force uncertainty (eV/Å).")
    actions = p.add_subparsers(dest="committee_action", metavar="ACTION", required=True)
    f = actions.add_parser(
        "fit", help="fit K bootstrap cluster models and export them as one committee model",
        description="Fit --members K `cluster` models, each to a bootstrap resample (with replacement) of "
                    "the training structures, at the ridge lambda chosen by the fit on the whole training "
                    "split, and write them as one exported model (-o, the committee mean's energy/forces "
                    "plus every member's forces) and a metrics JSON. Options as for `pyexport fit`.")
    _add_fit_arguments(f, neural=False)
    f.add_argument("--members", type=int, help="committee size K, at least 2 (4)")
    f.add_argument("-o", "--output", help="exported committee model (committee.pt)")
    f.set_defaults(func=run_committee_fit_command)


def run_committee_fit_command(args) -> int:
    import torch

    from .committee import committee_provenance, fit_committee, format_uncertainty, write_committee

    options = resolve_fit_options(args, COMMITTEE_DEFAULTS)
    if options["core_repulsion"]:
        raise ValueError("core_repulsion: not available for committees (fit single models with pyexport fit)")
    members = options["members"]
    if not isinstance(members, int) or members < 2:
        raise ValueError(f"--members must be an integer of at least 2 (a committee of one model has no "
                         f"disagreement), got {members}")
    if options["threads"]:
        torch.set_num_threads(int(options["threads"]))
    config = fit_config_from_options(options)
    if not config.data:
        raise ValueError("no data files: give them as arguments or as 'data' in --config")
    metrics_path = metrics_path_of(config)
    refuse_overwriting_inputs([config.data, args.config], [config.output, metrics_path])
    committee, report, metrics = fit_committee(config, members)
    meta = write_committee(committee, metrics["elements"], config.output, config.dtype,
                           committee_provenance(committee, report, metrics, config.data))
    with open(metrics_path, "w") as fh:
        json.dump({**metrics, "fit": {k: v for k, v in report.items() if k != "split_sources"}}, fh, indent=2)
    print(f"committee of {meta['committee_size']} cluster models; errors of the committee mean:")
    print(format_metrics(metrics))
    print("force uncertainty σ (spread of the members) against the mean's error |ΔF| per atom:")
    print(format_uncertainty(metrics))
    print(f"chosen lambda {metrics['lambda']:.1e}; model {config.output}; metrics {metrics_path}")
    return 0


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------
def export_potential_checkpoint(ckpt: dict, output: str, dtype: Optional[str]) -> dict:
    """Script and write a potential checkpoint; returns the archive's metadata. The written file
    is read back and compared with the in-memory model on a small test structure."""
    from .contract import export_model, load_model
    from .fit import potential_from_checkpoint, provenance

    module = potential_from_checkpoint(ckpt, dtype)
    export_model(module, output, provenance=provenance(ckpt))
    loaded, meta = load_model(output, kind="potential")
    meta["export_check_max_force_difference"] = _compare_on_test_structure(module, loaded, ckpt)
    return meta


def _compare_on_test_structure(eager, loaded, ckpt) -> float:
    """Max |ΔF| (eV/Å) between the in-memory and the reloaded model on a jittered simple-cubic
    structure of all the model's elements."""
    from ase import Atoms

    from .contract import build_inputs

    elements = ckpt["elements"]
    spacing = 2.6
    grid = np.array([(i, j, k) for i in range(3) for j in range(3) for k in range(3)], dtype=float)
    rng = np.random.default_rng(0)
    atoms = Atoms([elements[n % len(elements)] for n in range(len(grid))],
                  positions=(grid + rng.uniform(-0.1, 0.1, grid.shape)) * spacing,
                  cell=np.eye(3) * 3 * spacing, pbc=True)
    inputs = build_inputs(atoms, ckpt["cutoff"], elements)
    a = eager(*inputs.as_args())
    b = loaded(*inputs.as_args())
    return float((a["forces"] - b["forces"]).abs().max())


def export_efg_checkpoint(ckpt: dict, output: str, dtype: Optional[str]) -> dict:
    """Export a ``pyexport fit-efg`` checkpoint as a contract ``efg`` model."""
    from .contract import export_model, module_metadata
    from .fit_efg import build_efg_module_from_checkpoint, efg_provenance

    scripted = export_model(build_efg_module_from_checkpoint(ckpt, dtype), output,
                            provenance=efg_provenance(ckpt))
    return module_metadata(scripted)


#: Checkpoint formats ``pyexport export`` knows, mapped to their exporter (others add theirs).
EXPORTERS = {"pyexport-potential-checkpoint": export_potential_checkpoint,
             "pyexport-efg-checkpoint": export_efg_checkpoint}


def add_export_parser(subparsers) -> None:
    p = subparsers.add_parser("export", help="write a TorchScript model (the model contract) from a checkpoint",
                              description="Script a checkpoint into the .pt file that pair_style mlff, "
                                          "the ASE calculator and the efg tools load.")
    p.add_argument("checkpoint")
    p.add_argument("-o", "--output", required=True, help="model file to write (e.g. model.pt)")
    p.add_argument("--dtype", choices=("float64", "float32"), help="override the checkpoint's dtype")
    p.set_defaults(func=run_export_command)


def run_export_command(args) -> int:
    from .fit import read_checkpoint_file

    refuse_overwriting_inputs([args.checkpoint], [args.output])
    ckpt = read_checkpoint_file(args.checkpoint)
    fmt = ckpt.get("format") if isinstance(ckpt, dict) else None
    if fmt is None and isinstance(ckpt, dict) and ckpt.get("model") == "efg":
        from .fit_efg import load_efg_checkpoint

        fmt, ckpt = "pyexport-efg-checkpoint", load_efg_checkpoint(args.checkpoint)
    if fmt not in EXPORTERS:
        raise ValueError(f"{args.checkpoint}: unknown checkpoint format {fmt!r} (known: {sorted(EXPORTERS)})")
    if fmt == "pyexport-potential-checkpoint":
        from .fit import load_checkpoint

        ckpt = load_checkpoint(args.checkpoint)
    meta = EXPORTERS[fmt](ckpt, args.output, args.dtype)
    print(f"wrote {args.output}: {meta['kind']} {meta.get('model_type', '')} elements={meta['elements']} "
          f"cutoff={meta['cutoff']} Å dtype={meta['dtype']}")
    if "export_check_max_force_difference" in meta:
        print(f"reloaded file vs in-memory model: max |ΔF| = {meta['export_check_max_force_difference']:.2e} eV/Å")
    return 0


# --------------------------------------------------------------------------------------------
# inspect
# --------------------------------------------------------------------------------------------
def add_inspect_parser(subparsers) -> None:
    p = subparsers.add_parser("inspect", help="print the contract attributes and metadata of a model or checkpoint")
    p.add_argument("path", help="exported model (.pt) or checkpoint")
    p.add_argument("--json", action="store_true", help="print everything as JSON")
    p.set_defaults(func=run_inspect_command)


def describe(path: str) -> dict:
    """Contract attributes + metadata.json of an exported model, or the summary of a checkpoint."""
    from .contract import ContractError, METADATA_KEYS, OPTIONAL_METADATA_KEYS, load_model

    try:
        module, meta = load_model(path)
        keys = METADATA_KEYS + tuple(k for k in OPTIONAL_METADATA_KEYS if hasattr(module, k))
        attributes = {k: getattr(module, k) for k in keys}
        attributes["elements"] = list(attributes["elements"])
        return {"file": path, "type": "exported model", "attributes": attributes,
                "metadata": {k: v for k, v in meta.items() if k not in keys}}
    except ContractError as exc:
        model_error = str(exc)
    from .fit import UnsafeCheckpointError, load_checkpoint

    try:
        ckpt = load_checkpoint(path)
    except UnsafeCheckpointError:
        raise
    except (ValueError, FileNotFoundError) as exc:
        raise ValueError(f"{model_error}; and not a pyexport checkpoint either ({exc})") from None
    return {"file": path, "type": "checkpoint",
            "summary": {k: ckpt[k] for k in ("model_type", "elements", "cutoff", "dtype", "hyperparameters",
                                              "data_hash", "data_files", "pyexport_version")},
            "fit": {k: v for k, v in ckpt["fit"].items() if k not in ("split_sources", "nn")},
            "metrics": ckpt["metrics"]}


def run_inspect_command(args) -> int:
    info = describe(args.path)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"{info['file']}: {info['type']}")
    if info["type"] == "exported model":
        for k, v in info["attributes"].items():
            print(f"  {k:18s} {v}")
        meta = info["metadata"]
        for k in ("model_type", "package_version", "data_hash"):
            if k in meta:
                print(f"  {k:18s} {meta[k]}")
        if "hyperparameters" in meta:
            print(f"  {'hyperparameters':18s} {json.dumps(meta['hyperparameters'])}")
        if "metrics" in meta and info["attributes"].get("kind") == "efg":
            from .fit_efg import format_summary
            print(format_summary(meta["metrics"], args.path))
        elif "metrics" in meta:
            print(format_metrics(meta["metrics"]))
            if "force_uncertainty" in meta["metrics"]:
                from .committee import format_uncertainty
                print(format_uncertainty(meta["metrics"]))
        other = sorted(set(meta) - {"model_type", "package_version", "data_hash", "hyperparameters", "metrics"})
        if other:
            print(f"  other metadata: {', '.join(other)} (--json prints them)")
    else:
        for k, v in info["summary"].items():
            print(f"  {k:18s} {json.dumps(v) if isinstance(v, (dict, list)) else v}")
        print(f"  {'lambda':18s} {info['fit'].get('lambda')}")
        print(format_metrics(info["metrics"]))
    return 0


# --------------------------------------------------------------------------------------------
# eval
# --------------------------------------------------------------------------------------------
def add_eval_parser(subparsers) -> None:
    p = subparsers.add_parser("eval", help="errors of an exported potential on labelled data (+ parity plot)")
    p.add_argument("model")
    p.add_argument("data", nargs="+")
    p.add_argument("-o", "--output", help="metrics JSON (default: print only)")
    p.add_argument("--plot", help="parity plot PNG")
    p.set_defaults(func=run_eval_command)


def evaluate_file_model(model_path: str, structures) -> dict:
    """Per-structure predictions of an exported model (through the ASE calculator, i.e. the
    file itself) and the RMSE/MAE metrics."""
    from .calculator import MLFFCalculator

    calc = MLFFCalculator(model_path)
    e_ref, e_pred, n_atoms, f_ref, f_pred, s_ref, s_pred, grade = [], [], [], [], [], [], [], []
    for st in structures:
        atoms = st.atoms.copy()
        atoms.calc = calc
        if calc.has_grade:
            grade.append(float(calc.get_property("extrapolation_grade", atoms).max()))
        e_pred.append(atoms.get_potential_energy())
        f_pred.append(atoms.get_forces())
        e_ref.append(st.energy)
        n_atoms.append(len(atoms))
        f_ref.append(st.forces)
        if st.stress is not None:
            s_ref.append(st.stress)
            s_pred.append(atoms.get_stress())
    from .fit import GPA_PER_EV_A3

    n = np.array(n_atoms, dtype=float)
    de = (np.array(e_pred) - np.array(e_ref)) / n * 1000.0
    df = (np.concatenate(f_pred) - np.concatenate(f_ref)).ravel() * 1000.0
    metrics = {"n_structures": len(structures), "n_atoms": int(n.sum()), "n_stress": len(s_ref),
               "energy_rmse_meV_per_atom": float(np.sqrt(np.mean(de ** 2))),
               "energy_mae_meV_per_atom": float(np.mean(np.abs(de))),
               "forces_rmse_meV_per_A": float(np.sqrt(np.mean(df ** 2))),
               "forces_mae_meV_per_A": float(np.mean(np.abs(df)))}
    if grade:
        metrics["extrapolation_grade"] = {
            "max": max(grade), "median_of_structure_max": float(np.median(grade)),
            "structures_above_1": int(sum(g > 1.0 for g in grade)),
            "structures_above_2": int(sum(g > 2.0 for g in grade)),
            "per_structure_max": grade}
    parity = {"energy_per_atom_eV": (np.array(e_ref) / n, np.array(e_pred) / n),
              "forces_eV_per_A": (np.concatenate(f_ref).ravel(), np.concatenate(f_pred).ravel())}
    if s_ref:
        ds = (np.array(s_pred) - np.array(s_ref)).ravel() * GPA_PER_EV_A3
        metrics.update(stress_rmse_GPa=float(np.sqrt(np.mean(ds ** 2))), stress_mae_GPa=float(np.mean(np.abs(ds))))
        parity["stress_GPa"] = (np.array(s_ref).ravel() * GPA_PER_EV_A3, np.array(s_pred).ravel() * GPA_PER_EV_A3)
    return {"metrics": metrics, "parity": parity}


def plot_parity(parity: dict, metrics: dict, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("energy_per_atom_eV", "E (eV/atom)", "energy_rmse_meV_per_atom", "meV/atom"),
              ("forces_eV_per_A", "F (eV/Å)", "forces_rmse_meV_per_A", "meV/Å"),
              ("stress_GPa", "S (GPa)", "stress_rmse_GPa", "GPa")]
    panels = [p for p in panels if p[0] in parity]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4))
    for ax, (key, label, rmse_key, unit) in zip(np.atleast_1d(axes), panels):
        ref, pred = parity[key]
        lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=0.8)
        ax.plot(ref, pred, ".", ms=2 if key == "forces_eV_per_A" else 4, alpha=0.6)
        ax.set_xlabel(f"reference {label}")
        ax.set_ylabel(f"model {label}")
        ax.set_title(f"RMSE {metrics[rmse_key]:.3g} {unit}")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def run_eval_command(args) -> int:
    from .fit import read_structures

    refuse_overwriting_inputs([args.model, args.data], [args.output, args.plot])
    structures = read_structures(args.data)
    result = evaluate_file_model(args.model, structures)
    metrics = {"model": args.model, "data": args.data, **result["metrics"]}
    print(format_metrics({"test": result["metrics"]}).replace("test  ", "data  "))
    grade = result["metrics"].get("extrapolation_grade")
    if grade:
        print(f"extrapolation grade (max over atoms per structure): largest {grade['max']:.3g}, median "
              f"{grade['median_of_structure_max']:.3g}; {grade['structures_above_1']} of {len(structures)} "
              f"structures above 1, {grade['structures_above_2']} above 2")
    if args.output:
        with open(args.output, "w") as fh:
            json.dump(metrics, fh, indent=2)
    if args.plot:
        plot_parity(result["parity"], result["metrics"], args.plot, f"{os.path.basename(args.model)} on {len(structures)} structures")
    return 0


# --------------------------------------------------------------------------------------------
# scan
# --------------------------------------------------------------------------------------------
def add_scan_parser(subparsers) -> None:
    p = subparsers.add_parser("scan", help="energy of a potential along a displacement pattern (e.g. R-point tilt)",
                              description="Energy along structure + A·pattern; built-in perovskite patterns or an "
                                          "(N, 3) .npy pattern. The amplitude A is the largest atomic displacement "
                                          "(Å). See pyexport.structures for the conventions.")
    p.add_argument("model")
    p.add_argument("--structure", required=True, help="reference structure (POSCAR or anything ase.io.read reads)")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--mode", help="R-tilt (a0a0c-), R-tilt-111 (a-a-a-), M-tilt (a0a0c+), polar")
    mode.add_argument("--mode-file", help=".npy (N, 3) displacement pattern")
    p.add_argument("--axis", default="z", choices=("x", "y", "z"), help="tilt / polarisation axis (z)")
    p.add_argument("--amplitudes", default="-0.6:0.6:25", help="start:stop:count or comma list, Å (-0.6:0.6:25); write "
                        "--amplitudes=-0.4:0.4:9 when the first value is negative")
    p.add_argument("--reference", help="reference: another exported model (.pt) or a data file of structures on the mode")
    p.add_argument("-o", "--output", default="scan.json", help="result JSON (scan.json)")
    p.add_argument("--plot", help="PNG (default: next to the JSON)")
    p.add_argument("--write-structures", help="also write the displaced structures as POSCARs into this folder")
    p.set_defaults(func=run_scan_command)


def run_scan_command(args) -> int:
    import ase.io

    from .scan import load_pattern, parse_amplitudes, run_scan, write_scan, write_structures
    from .structures import mode_pattern

    if not os.path.isfile(args.structure):
        raise FileNotFoundError(f"{args.structure}: structure file not found")
    refuse_overwriting_inputs([args.model, args.structure, args.reference, args.mode_file],
                              [args.output, args.plot or os.path.splitext(args.output)[0] + ".png"])
    atoms = ase.io.read(args.structure)
    amplitudes = parse_amplitudes(args.amplitudes)
    if args.mode_file:
        pattern, name = load_pattern(args.mode_file, len(atoms)), os.path.basename(args.mode_file)
    else:
        pattern, name = mode_pattern(atoms, args.mode, args.axis), f"{args.mode} ({args.axis})"
    if args.write_structures:
        write_structures(atoms, pattern, amplitudes, args.write_structures)
    result = run_scan(args.model, atoms, pattern, amplitudes, name, args.reference)
    png = args.plot or os.path.splitext(args.output)[0] + ".png"
    write_scan(result, args.output, png)
    m = result["model"]
    print(f"{name}: minimum at A = {m['minimum_amplitude_A']:+.3f} Å, well depth {m['well_depth_meV_per_fu']:.2f} "
          f"meV/f.u. ({'double well' if m['double_well'] else 'single well'})")
    if "reference" in result:
        r = result["reference"]
        print(f"reference: minimum at A = {r['minimum_amplitude_A']:+.3f} Å, well depth "
              f"{r['well_depth_meV_per_fu']:.2f} meV/f.u.; rms difference {result['rms_difference_meV_per_fu']:.2f} meV/f.u.")
    print(f"wrote {args.output} and {png}")
    return 0


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------
#: Subcommand registrations, in help order. Adding a subcommand is one line here.
def _external(module: str, name: str):
    """Registration function ``name`` of ``pyexport.<module>``, imported when the parser is built."""
    def register(subparsers):
        import importlib
        return getattr(importlib.import_module(f"pyexport.{module}"), name)(subparsers)
    return register


COMMANDS = [add_fit_parser, add_committee_parser, _external("fit_efg", "add_fit_efg_parser"), add_export_parser,
            add_inspect_parser, add_eval_parser, add_scan_parser, _external("select", "add_select_parser"),
            _external("vasp_inputs", "add_vasp_inputs_parser")]


def add_read_arguments(p) -> None:
    """``--incomplete`` / ``--unconverged``: how a command reads partly printed and SCF-unconverged
    VASP steps (:func:`pyexport.data.read_options`)."""
    from .data import INCOMPLETE_CHOICES, UNCONVERGED_CHOICES

    group = p.add_argument_group("reading VASP data")
    group.add_argument("--incomplete", choices=INCOMPLETE_CHOICES,
                       help="steps VASP printed only partly (NWRITE < 2, a run killed mid-step): 'error' "
                            "(default) refuses the file, 'warn' reads its complete steps and says which were left out")
    group.add_argument("--unconverged", choices=UNCONVERGED_CHOICES,
                       help="SCF-unconverged steps (the electronic loop ran all NELM steps): 'warn' (default) "
                            "keeps them and says how many, 'drop' leaves them out")


def _add_read_arguments_where_data_is_read(subparsers) -> None:
    """``add_read_arguments`` on every (sub)command with DFT data files (``data`` positionals or a
    ``--reference`` data file), nested ones (``committee fit``) included."""
    for p in subparsers.choices.values():
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_read_arguments_where_data_is_read(action)
        if any(action.dest in ("data", "reference") for action in p._actions):
            add_read_arguments(p)


def _show_data_warning(command: str):
    """``warnings.showwarning`` that prints the warnings of :mod:`pyexport.data` (steps left out or
    SCF-unconverged; the message names the file and steps) as ``pyexport <command>: warning: ...``,
    without the reader's source line; other warnings as before."""
    import warnings

    from .data import IncompleteDataWarning, UnconvergedSCFWarning

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, (IncompleteDataWarning, UnconvergedSCFWarning)):
            print(f"pyexport {command}: warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)
    return show


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="pyexport", description="DFT data in, efgmd potential / EFG models out.")
    parser.add_argument("--version", action="version", version=f"pyexport {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show the Python traceback on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in COMMANDS:
        register(subparsers)
    _add_read_arguments_where_data_is_read(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    import warnings

    from .data import read_options

    try:
        with warnings.catch_warnings(), \
                read_options(getattr(args, "incomplete", None), getattr(args, "unconverged", None)):
            warnings.showwarning = _show_data_warning(args.command)
            return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, OSError) as exc:
        if args.traceback:
            raise
        print(f"pyexport {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
