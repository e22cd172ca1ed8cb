"""``pyexport label``: energies, forces, stresses and (``--efg``) PAW EFG tensors of structures
from GPAW, written as extended XYZ training data (:func:`pyexport.dft.label.label_file`)."""
import re
import sys

from ..dft.label import DEFAULT_CONVERGENCE, LabelSettings, MissingDependencyError
from ..outputs import refuse_overwriting_inputs


def add_label_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "label", help="label structures with GPAW (PAW, plane waves): energy, forces, stress, EFG",
        description="Compute energy, forces, stress and, with --efg, the PAW electric field gradient of every "
                    "atom (V/Å², the method of Petrilli et al. 1998 as VASP's LEFG) for each frame of INPUT "
                    "with GPAW, and append them to OUTPUT (extended XYZ, the keys `pyexport fit` and "
                    "`pyexport fit-efg` read). Frames already in OUTPUT are skipped, so an interrupted run "
                    "resumes. Needs GPAW: pip install 'efgmd[gpaw]' or make gpaw. See pyexport.dft.label.")
    p.add_argument("input", help="extxyz file, POSCAR/CONTCAR (*.vasp), LAMMPS dump or `pyexport select` folder")
    p.add_argument("-o", "--output", required=True, help="labelled frames, uncompressed .extxyz (appended to)")
    p.add_argument("--types", help="LAMMPS dump only: element of each atom type (Cs,Pb,Br)")
    p.add_argument("--efg", action="store_true", help="also compute the EFG tensor of every atom")
    p.add_argument("--ecut", type=float, default=500.0, help="plane-wave cutoff, eV (default: %(default)s)")
    kp = p.add_mutually_exclusive_group()
    kp.add_argument("--kspacing", type=float, default=0.25,
                    help="Γ-centred k-mesh with N_i = max(1, ceil(|b_i|/KSPACING)), 1/Å with 2π as VASP's "
                         "KSPACING (default: %(default)s)")
    kp.add_argument("--kpts", help="fixed mesh, e.g. 2,2,2 (Γ-centred unless --monkhorst-pack)")
    p.add_argument("--monkhorst-pack", action="store_true",
                   help="Monkhorst-Pack mesh instead of a Γ-centred one: even sizes avoid Γ, odd ones hold it, as "
                        "VASP's Monkhorst-Pack KPOINTS")
    p.add_argument("--maxiter", type=int, default=333,
                   help="SCF iterations after which a frame counts as not converged: it is reported and not "
                        "written (default: %(default)s, GPAW's)")
    p.add_argument("--reuse-wavefunctions", action="store_true",
                   help="start each frame from the converged state of the last frame of the same cell (skips "
                        "the LCAO start and most SCF iterations for MD frames; recorded as dft_start)")
    p.add_argument("--xc", default="PBE", help="exchange-correlation functional (default: %(default)s)")
    p.add_argument("--smearing", default="fermi-dirac",
                   help="GPAW occupation smearing: fermi-dirac, marzari-vanderbilt, ... (default: %(default)s)")
    p.add_argument("--width", type=float, default=0.05, help="smearing width, eV (default: %(default)s)")
    p.add_argument("--conv", action="append", default=[], metavar="KEY=VALUE",
                   help="GPAW SCF convergence, repeated: energy (eV/electron), density (electrons/electron), "
                        "eigenstates (eV²/electron); default "
                        + " ".join(f"{k}={v:g}" for k, v in DEFAULT_CONVERGENCE.items()))
    p.add_argument("--spinpol", action="store_true",
                   help="collinear spin-polarised DFT, starting from the frames' initial magnetic moments (else "
                        "1 μB per atom, VASP's MAGMOM default); records the converged total moment")
    p.add_argument("--setups", default="paw", help="GPAW setups (default: %(default)s, the gpaw-data PAW sets)")
    p.add_argument("--logs", help="folder for one GPAW text log per frame (default: none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_label_command)


def parse_convergence(items) -> dict:
    """Repeated ``KEY=VALUE`` options of ``--conv`` as GPAW's convergence dict (values floats)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in ("energy", "density", "eigenstates", "forces"):
            raise ValueError(f"--conv: expected energy=, density=, eigenstates= or forces= with a number, "
                             f"got {item!r}")
        try:
            out[key] = float(value)
        except ValueError:
            raise ValueError(f"--conv: {item!r}: {value!r} is not a number") from None
    return out


def parse_kpts(text):
    try:
        kpts = tuple(int(v) for v in re.split(r"[,\s]+", text.strip()))
    except ValueError:
        raise ValueError(f"--kpts: expected three integers such as 2,2,2, got {text!r}") from None
    if len(kpts) != 3:
        raise ValueError(f"--kpts: expected three integers such as 2,2,2, got {text!r}")
    return kpts


def run_label_command(args) -> int:
    from ..dft.label import import_gpaw, label_file, read_inputs

    refuse_overwriting_inputs([args.input, args.types], [args.output])
    settings = LabelSettings(ecut_eV=args.ecut, kspacing=args.kspacing,
                             kpts=parse_kpts(args.kpts) if args.kpts else None,
                             kpts_gamma=not args.monkhorst_pack, maxiter=args.maxiter, xc=args.xc,
                             smearing=args.smearing, smearing_eV=args.width,
                             convergence=parse_convergence(args.conv), setups=args.setups, efg=args.efg,
                             spinpol=args.spinpol)
    try:
        gpaw = import_gpaw()
    except MissingDependencyError as error:
        print(f"pyexport label: error: {error}", file=sys.stderr)
        return 1
    frames = read_inputs(args.input, types=args.types)
    print(f"{len(frames)} frame(s) from {args.input}; GPAW {gpaw.__version__}, {settings.xc}, "
          f"{settings.ecut_eV:g} eV, " + (f"k-mesh {settings.kpts}" if settings.kpts else
                                          f"kspacing {settings.kspacing:g} 1/Å")
          + ("" if settings.kpts_gamma else " (Monkhorst-Pack)") + (", EFG" if settings.efg else "")
          + (", each frame from the last of its cell" if args.reuse_wavefunctions else ""))
    result = label_file(frames, args.output, settings, logs=args.logs, progress=not args.no_progress,
                        reuse=args.reuse_wavefunctions)
    failed = result["unconverged"]
    print(f"labelled {len(result['labelled'])}, skipped {len(result['skipped'])} already in {args.output}"
          + (f", not converged {len(failed)} (frames {', '.join(map(str, failed))})" if failed else "")
          + f" ({result['seconds']:.1f} s)")
    return 1 if failed else 0
