"""``pyexport scan``: energy of a potential along a displacement pattern
(:func:`pyexport.scan.run_scan`), a JSON, a plot and a one-line summary."""
import os

from ..outputs import refuse_overwriting_inputs
from .options import add_config_argument, require, resolve_options, show_defaults

#: Defaults of ``pyexport scan``; config-file keys are these names.
SCAN_DEFAULTS = {"model": None, "structure": None, "mode": None, "mode_file": None, "axis": "z",
                 "amplitudes": "-0.6:0.6:25", "reference": None, "output": "scan.json", "plot": None,
                 "write_structures": None}


def add_scan_parser(subparsers) -> None:
    p = subparsers.add_parser("scan", help="energy of a potential along a displacement pattern (e.g. R-point tilt)",
                              description="Energy along structure + A·pattern; built-in perovskite patterns or an "
                                          "(N, 3) .npy pattern. The amplitude A is the largest atomic displacement "
                                          "(Å). See pyexport.structures for the conventions.")
    p.add_argument("model", nargs="?", help="exported potential (.pt)")
    p.add_argument("--structure", help="reference structure (POSCAR or anything ase.io.read reads); required")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--mode", help="R-tilt (a0a0c-), R-tilt-111 (a-a-a-), M-tilt (a0a0c+), polar")
    mode.add_argument("--mode-file", help=".npy (N, 3) displacement pattern")
    p.add_argument("--axis", choices=("x", "y", "z"), help="tilt / polarisation axis")
    p.add_argument("--amplitudes", help="start:stop:count or comma list, Å; write "
                        "--amplitudes=-0.4:0.4:9 when the first value is negative")
    p.add_argument("--reference", help="reference: another exported model (.pt) or a data file of structures on the mode")
    p.add_argument("-o", "--output", help="result JSON")
    p.add_argument("--plot", help="PNG (default: next to the JSON)")
    p.add_argument("--write-structures", help="also write the displaced structures as POSCARs into this folder")
    add_config_argument(p)
    show_defaults(p, SCAN_DEFAULTS)
    p.set_defaults(func=run_scan_command)


def run_scan_command(args) -> int:
    import ase.io

    from ..scan import load_pattern, parse_amplitudes, run_scan, write_scan, write_structures
    from ..structures import mode_pattern

    o = resolve_options(args, SCAN_DEFAULTS)
    require(o, "model", "structure")
    if bool(o["mode"]) == bool(o["mode_file"]):
        raise ValueError("give one of --mode and --mode-file")
    if not os.path.isfile(o["structure"]):
        raise FileNotFoundError(f"{o['structure']}: structure file not found")
    png = o["plot"] or os.path.splitext(o["output"])[0] + ".png"
    refuse_overwriting_inputs([o["model"], o["structure"], o["reference"], o["mode_file"], args.config],
                              [o["output"], png])
    atoms = ase.io.read(o["structure"])
    amplitudes = parse_amplitudes(o["amplitudes"])
    if o["mode_file"]:
        pattern, name = load_pattern(o["mode_file"], len(atoms)), os.path.basename(o["mode_file"])
    else:
        pattern, name = mode_pattern(atoms, o["mode"], o["axis"]), f"{o['mode']} ({o['axis']})"
    if o["write_structures"]:
        write_structures(atoms, pattern, amplitudes, o["write_structures"])
    result = run_scan(o["model"], atoms, pattern, amplitudes, name, o["reference"])
    write_scan(result, o["output"], png)
    m = result["model"]
    print(f"{name}: minimum at A = {m['minimum_amplitude_A']:+.3f} Å, well depth {m['well_depth_meV_per_fu']:.2f} "
          f"meV/f.u. ({'double well' if m['double_well'] else 'single well'})")
    if "reference" in result:
        r = result["reference"]
        print(f"reference: minimum at A = {r['minimum_amplitude_A']:+.3f} Å, well depth "
              f"{r['well_depth_meV_per_fu']:.2f} meV/f.u.; rms difference {result['rms_difference_meV_per_fu']:.2f} meV/f.u.")
    print(f"wrote {o['output']} and {png}")
    return 0
