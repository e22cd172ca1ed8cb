"""``pyexport committee fit``: K bootstrap cluster models exported as one committee model
(:func:`pyexport.committee.fit_committee`); options as for ``pyexport fit``."""
from .fit import FIT_DEFAULTS, add_fit_arguments, prepare_fit, write_metrics
from .options import resolve_options, show_defaults
from .reports import format_metrics, format_uncertainty

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
    add_fit_arguments(f, neural=False)
    f.add_argument("--members", type=int, help="committee size K, at least 2")
    f.add_argument("-o", "--output", help="exported committee model")
    show_defaults(f, COMMITTEE_DEFAULTS)
    f.set_defaults(func=run_committee_fit_command)


def run_committee_fit_command(args) -> int:
    from ..committee import committee_provenance, fit_committee, write_committee

    options = resolve_options(args, COMMITTEE_DEFAULTS)
    if options["core_repulsion"]:
        raise ValueError("core_repulsion: not available for committees (fit single models with pyexport fit)")
    members = options["members"]
    if not isinstance(members, int) or members < 2:
        raise ValueError(f"--members must be an integer of at least 2 (a committee of one model has no "
                         f"disagreement), got {members}")
    config, metrics_path = prepare_fit(args, options)
    committee, report, metrics = fit_committee(config, members)
    meta = write_committee(committee, metrics["elements"], config.output, config.dtype,
                           committee_provenance(committee, report, metrics, config.data))
    write_metrics(metrics, report, metrics_path)
    print(f"committee of {meta['committee_size']} cluster models; errors of the committee mean:")
    print(format_metrics(metrics))
    print("force uncertainty σ (spread of the members) against the mean's error |ΔF| per atom:")
    print(format_uncertainty(metrics))
    print(f"chosen lambda {metrics['lambda']:.1e}; model {config.output}; metrics {metrics_path}")
    return 0
