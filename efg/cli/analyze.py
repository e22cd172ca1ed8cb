"""``efg analyze``: options, MPI ranks and the printed summary of :func:`efg.analyze.analyze`."""
import argparse
import math

from pyexport import nmr
from pyexport.cli.options import defaults_of, show_defaults, with_config

from efg import analyze as analysis
from efg.analyze import EFG_SOURCES, analyze
from efg.nqr import spin_text


def add_parser(subparsers) -> None:
    defaults = defaults_of(analyze)
    p = subparsers.add_parser("analyze", help="EFG/NMR parameters over a LAMMPS dump",
                              description=analysis.__doc__.split("\n\n")[0])
    p.add_argument("--dump", required=True, help="LAMMPS text dump (.gz/.bz2/.xz fine)")
    p.add_argument("--model", help="exported EFG model (pyexport export); not needed when the dump "
                                   "has compute efg/atom columns")
    p.add_argument("--types", help="type→element map: 'Cs,Pb,Br' (types 1, 2, 3) or a LAMMPS data/input "
                                   "file; not needed for dumps with an element column")
    p.add_argument("--isotope", dest="isotopes", action="append", default=[], metavar="EL=ISO",
                   help="isotope for C_Q, e.g. Br=81Br (repeatable); other elements get their "
                        "default isotope (pyexport.nmr.DEFAULT_ISOTOPES)")
    p.add_argument("--index", default=defaults["index"], help="frames start:stop:step (':' = all)")
    p.add_argument("--every", type=int, default=defaults["every"], help="use every N-th selected frame")
    p.add_argument("--efg-columns", dest="columns", help="stem of EFG dump columns, e.g. c_efg")
    p.add_argument("--efg-source", choices=EFG_SOURCES, default=defaults["efg_source"],
                   help="where the EFG tensors come from: the dump's EFG columns or --model; 'auto' "
                        "takes the only one there is and refuses when there are both")
    p.add_argument("--temperature", type=float, help="temperature of the run (K), recorded for efg scan")
    p.add_argument("--md-timestep", dest="md_timestep_ps", type=float,
                   help="MD time step (ps) of the run: with velocities in the dump, gives the vibrational DOS")
    p.add_argument("--molecule-axis", default=defaults["molecule_axis"],
                   help="molecular axis TAIL-HEAD whose reorientation is followed, e.g. C-N (methylammonium); "
                        "'auto': C-N when the dump has C and N; 'none': off")
    p.add_argument("--batch-atoms", type=int, default=defaults["batch_atoms"],
                   help="atoms per model call (several frames)")
    p.add_argument("--magres", metavar="PATH",
                   help="also write the time-averaged EFG tensor of every atom, on the average "
                        "structure, as a .magres file (EFG in atomic units; Soprano, MagresView, ASE)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("-o", "--output", required=True, help="run.json (run.npz and run_hist.png beside it)")
    p.set_defaults(func=with_config(run, p))
    show_defaults(p)


def print_molecules(molecules) -> None:
    if not molecules or "skipped" in molecules:
        return
    unit = molecules["time_unit"]
    for rank in ("1", "2"):
        tau = molecules[f"tau{rank}_{unit}"]
        text = (f"tau{rank} = {tau['value']:.4g} +- {tau['error'] or float('nan'):.2g} {unit}" if tau["decorrelated"]
                else f"tau{rank}: not decorrelated within the run (C{rank} plateau {tau['plateau']:.3f})")
        print(f"molecules ({molecules['n_molecules']} {molecules['axis']} axes): {text}")


def mpi_communicator():
    """MPI.COMM_WORLD under ``mpirun -np N`` (N > 1), else None (serial)."""
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI.COMM_WORLD if MPI.COMM_WORLD.Get_size() > 1 else None


def run(args: argparse.Namespace) -> int:
    isotopes = nmr.parse_isotope_options(args.isotopes)
    report = analyze(args.dump, model=args.model, types=args.types, isotopes=isotopes,
                     index=args.index, every=args.every, columns=args.columns,
                     batch_atoms=args.batch_atoms, temperature=args.temperature,
                     md_timestep_ps=args.md_timestep_ps, output=args.output,
                     progress=not args.no_progress, comm=mpi_communicator(),
                     molecule_axis=args.molecule_axis, efg_source=args.efg_source, magres=args.magres)
    if report is not None:
        for element, entry in report["species"].items():
            if entry["isotope"]:
                cq = entry["cq_of_mean_tensor_mhz"]
                print(f"{element} ({entry['isotope']}): C_Q(<V>) = {cq['value']:.4f} ± {cq['error']:.4f} MHz, "
                      f"<|C_Q|> = {entry['mean_abs_cq_mhz']['value']:.4f} MHz, "
                      f"eta(<V>) = {entry['eta_of_mean_tensor']['value']:.3f}")
        for element, entry in (report.get("nqr") or {}).items():
            print(nqr_summary(element, entry))
        print_molecules(report.get("molecules"))
        print(f"wrote {args.output}" + (f" and {report['magres_file']}" if report.get("magres_file") else ""))
    return 0


def plus_minus(value: float, error) -> str:
    """"value ± error" with the error to two significant digits and the value to match (no
    error: four significant digits)."""
    if error is None or not error > 0:
        return f"{value:.4g}"
    decimals = max(0, 1 - int(math.floor(math.log10(error))))
    return f"{value:.{decimals}f} ± {error:.{decimals}f}"


def nqr_summary(element: str, entry: dict) -> str:
    """One line per quadrupolar species: its NQR lines of <V> with errors and <nu> (MHz)."""
    of_mean, mean = entry["lines_of_mean_tensor_mhz"], entry["mean_lines_mhz"]
    lines = []
    for k, transition in enumerate(entry["transitions"]):
        error = of_mean["error"][k] if of_mean["error"] is not None else None
        lines.append(f"{transition}: {plus_minus(of_mean['value'][k], error)} MHz (<nu> {mean['value'][k]:.4g})")
    return (f"{element} ({entry['isotope']}, I = {spin_text(entry['spin'])}) NQR nu(<V>): " + "; ".join(lines))
