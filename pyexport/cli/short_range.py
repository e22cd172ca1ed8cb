"""``pyexport short-range``: does a potential stay repulsive at short range? Every species pair's
approach scan in a crystal (:func:`pyexport.short_range.short_range_scans`), a table, a JSON and
a plot; exit status 1 when a pair fails the criterion."""
import os

from ..outputs import refuse_overwriting_inputs, write_json
from .options import add_config_argument, require, resolve_options, show_defaults

#: Defaults of ``pyexport short-range``; config-file keys are these names.
SHORT_RANGE_DEFAULTS = {"model": None, "structure": None, "index": 0, "pairs": None, "inner": 1.5,
                        "closest": 0.4, "barrier": 10.0, "step": 0.05, "output": None, "plot": None,
                        "progress": True}


def add_short_range_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "short-range", help="check that a potential stays repulsive at short range (every species pair)",
        description="Push one atom of species A towards its nearest B inside the crystal, every other atom "
                    "fixed, for every ordered pair (A, B) of the potential's species, and report the energy "
                    "relative to the crystal. A pair passes when the energy stays above the start at every "
                    "separation below --inner and is at least --barrier above it at --closest. Run it on the "
                    "relaxed crystal whenever a potential or its fit changes.")
    p.add_argument("model", nargs="?", help="exported potential (.pt)")
    p.add_argument("structure", nargs="?", help="relaxed crystal (anything ase.io.read reads, .xz/.gz ok)")
    p.add_argument("--index", type=int, help="which frame of a multi-frame structure file (0: the first)")
    p.add_argument("--pairs", help="comma list of A-B pairs (default: every ordered pair of the model's species)")
    p.add_argument("--inner", type=float, help="Å: below this the energy must stay above the start")
    p.add_argument("--closest", type=float, help="Å: the closest separation scanned")
    p.add_argument("--barrier", type=float, help="eV: least energy above the start at --closest")
    p.add_argument("--step", type=float, help="Å between separations")
    p.add_argument("-o", "--output", help="scans JSON (energies per separation)")
    p.add_argument("--plot", help="PNG of every scan")
    p.add_argument("--no-progress", dest="progress", action="store_const", const=False, help="no progress bar")
    add_config_argument(p)
    show_defaults(p, SHORT_RANGE_DEFAULTS)
    p.set_defaults(func=run_short_range_command)


def run_short_range_command(args) -> int:
    import ase.io

    from ..calculator import MLFFCalculator
    from ..short_range import plot_scans, short_range_scans

    o = resolve_options(args, SHORT_RANGE_DEFAULTS)
    require(o, "model", "structure")
    if not os.path.isfile(o["structure"]):
        raise FileNotFoundError(f"{o['structure']}: structure file not found")
    if not (o["step"] > 0 and 0 < o["closest"] < o["inner"]):
        raise ValueError("--step and --closest must be positive and --closest below --inner")
    refuse_overwriting_inputs([o["model"], o["structure"], args.config], [o["output"], o["plot"]])
    atoms = ase.io.read(o["structure"], index=o["index"])
    calc = MLFFCalculator(o["model"])
    pairs = [p.strip() for p in o["pairs"].split(",")] if o["pairs"] else None
    scans = short_range_scans(calc, atoms, calc.elements, o["inner"], o["closest"], o["barrier"], o["step"],
                              pairs=pairs, progress=bool(o["progress"]))
    closest_column = f"E at {o['closest']:g} Å (eV)"
    print(f"{'pair':8s} {'start (Å)':>9s} {'min E < inner (eV)':>19s} {closest_column:>16s}  ok")
    for name, scan in scans.items():
        inside = scan.energies[scan.separations < scan.inner]
        at_closest = scan.energies[abs(scan.separations - scan.closest).argmin()]
        print(f"{name:8s} {scan.start_separation:9.3f} {inside.min() if len(inside) else float('nan'):19.3g} "
              f"{at_closest:16.4g}  {'yes' if scan.ok else 'NO'}")
    failures = [f for scan in scans.values() for f in scan.failures]
    for failure in failures:
        print(f"fails: {failure}")
    if o["output"]:
        write_json(o["output"], {"model": o["model"], "structure": o["structure"], "index": o["index"],
                                 "inner_A": o["inner"], "closest_A": o["closest"], "barrier_eV": o["barrier"],
                                 "ok": not failures, "scans": [s.as_dict() for s in scans.values()]}, indent=1)
    if o["plot"]:
        plot_scans(scans, o["plot"])
    print(f"{len(scans) - len({f.split(':')[0] for f in failures})} of {len(scans)} pairs repulsive at short range"
          + "".join(f"; wrote {p}" for p in (o["output"], o["plot"]) if p))
    return 1 if failures else 0
