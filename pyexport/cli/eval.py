"""``pyexport eval``: errors of an exported potential on labelled data
(:func:`pyexport.evaluate.evaluate_file_model`), a metrics JSON and a parity plot."""
import os

from ..outputs import refuse_overwriting_inputs, write_json
from .options import add_config_argument, require, resolve_options, show_defaults
from .reports import format_metrics

#: Defaults of ``pyexport eval``; config-file keys are these names.
EVAL_DEFAULTS = {"model": None, "data": [], "output": None, "plot": None}


def add_eval_parser(subparsers) -> None:
    p = subparsers.add_parser("eval", help="errors of an exported potential on labelled data (+ parity plot)")
    p.add_argument("model", nargs="?", help="exported potential (.pt)")
    p.add_argument("data", nargs="*", help="labelled data files (vasprun.xml, OUTCAR, ML_AB, extxyz)")
    p.add_argument("-o", "--output", help="metrics JSON (default: print only)")
    p.add_argument("--plot", help="parity plot PNG")
    add_config_argument(p)
    show_defaults(p, EVAL_DEFAULTS)
    p.set_defaults(func=run_eval_command)


def run_eval_command(args) -> int:
    from ..evaluate import evaluate_file_model, plot_parity
    from ..training.data import read_structures

    o = resolve_options(args, EVAL_DEFAULTS)
    require(o, "model", "data")
    refuse_overwriting_inputs([o["model"], o["data"], args.config], [o["output"], o["plot"]])
    structures = read_structures(o["data"])
    result = evaluate_file_model(o["model"], structures)
    metrics = {"model": o["model"], "data": o["data"], **result["metrics"]}
    print(format_metrics({"test": result["metrics"]}).replace("test  ", "data  "))
    grade = result["metrics"].get("extrapolation_grade")
    if grade:
        print(f"extrapolation grade (max over atoms per structure): largest {grade['max']:.3g}, median "
              f"{grade['median_of_structure_max']:.3g}; {grade['structures_above_1']} of {len(structures)} "
              f"structures above 1, {grade['structures_above_2']} above 2")
    if o["output"]:
        write_json(o["output"], metrics, indent=2)
    if o["plot"]:
        plot_parity(result["parity"], result["metrics"], o["plot"],
                    f"{os.path.basename(o['model'])} on {len(structures)} structures")
    return 0
