"""``efg scan``: options and printed summary of :func:`efg.temperature_scan.scan` (runs of efg
analyze at several temperatures -> curves vs T and transition temperatures)."""
import argparse

from pyexport.cli.options import show_defaults, with_config

from efg.temperature_scan import scan


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("scan", help="C_Q(T), eta(T), tilts and lattice vs T; transition temperature",
                              description="Observables of several efg analyze runs against temperature, and where "
                                          "they change.")
    p.add_argument("runs", nargs="+", help="run JSON files of efg analyze (each with --temperature)")
    p.add_argument("-o", "--output", required=True, help="scan.json (PNG plots beside it)")
    p.set_defaults(func=with_config(run, p))
    show_defaults(p)


def run(args: argparse.Namespace) -> int:
    report = scan(args.runs, args.output)
    tc = report["transition_temperature_K"]
    if tc["tc_K"] is None:
        print("no significant structural transition in this temperature range")
    else:
        print(f"structural transition: T_c = {tc['tc_K']:.1f} ± {tc['tc_error_K']:.1f} K (from {', '.join(tc['from'])})")
    for name, e in report["tilt_transitions_K"].items():
        if e["significant"]:
            print(f"{name}: vanishes at {e['tc_K']:.1f} ± {e['tc_error_K']:.1f} K")
    for s, e in report["cq_transition_K"].items():
        if e["significant"]:
            print(f"{s}: C_Q(<V>) changes at {e['tc_K']:.1f} ± {e['tc_error_K']:.1f} K")
    e = report.get("c_over_a_transition_K")
    if e and e["significant"]:
        print(f"c/a (c = {e['unique_axis']}) -> 1 at {e['tc_K']:.1f} ± {e['tc_error_K']:.1f} K")
    for name, fit in report.get("reorientation", {}).items():
        if name == "axis":
            continue
        if fit["fitted"]:
            print(f"{name.split('_')[0]} ({report['reorientation']['axis']}): Arrhenius E_a = "
                  f"{fit['activation_energy_meV']:.1f} ± {fit['activation_energy_error_meV']:.1f} meV")
        else:
            print(f"{name.split('_')[0]}: no Arrhenius fit ({fit['reason']})")
    print(f"wrote {args.output}")
    return 0
