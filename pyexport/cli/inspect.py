"""``pyexport inspect``: the contract attributes and metadata of a model file, or the summary
of a checkpoint (:func:`pyexport.export.describe`)."""
import json

from .reports import format_efg_summary, format_metrics, format_uncertainty


def add_inspect_parser(subparsers) -> None:
    p = subparsers.add_parser("inspect", help="print the contract attributes and metadata of a model or checkpoint")
    p.add_argument("path", help="exported model (.pt) or checkpoint")
    p.add_argument("--json", action="store_true", help="print everything as JSON")
    p.set_defaults(func=run_inspect_command)


def run_inspect_command(args) -> int:
    from ..export import describe

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
            print(format_efg_summary(meta["metrics"]))
        elif "metrics" in meta:
            print(format_metrics(meta["metrics"]))
            if "force_uncertainty" in meta["metrics"]:
                print(format_uncertainty(meta["metrics"]))
        other = sorted(set(meta) - {"model_type", "package_version", "data_hash", "hyperparameters", "metrics"})
        if other:
            print(f"  other metadata: {', '.join(other)} (--json prints them)")
    else:
        for k, v in info["summary"].items():
            print(f"  {k:18s} {json.dumps(v) if isinstance(v, (dict, list)) else v}")
        if info["kind"] == "efg":
            print(format_efg_summary(info["metrics"]))
        else:
            print(f"  {'lambda':18s} {info['fit'].get('lambda')}")
            print(format_metrics(info["metrics"]))
    return 0
