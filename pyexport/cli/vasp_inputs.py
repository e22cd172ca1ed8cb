"""``pyexport vasp-inputs``: one VASP single-point job folder per frame
(:func:`pyexport.vasp_inputs.write_vasp_inputs`)."""
import json
import os
import re
from typing import Dict, Sequence

from ..vasp_inputs import (DEFAULT_KSPACING, JOB_RECORD, parse_tag_assignments, read_incar, read_structures,
                           write_vasp_inputs)


def add_vasp_inputs_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "vasp-inputs", help="write one VASP single-point job folder per frame (POSCAR INCAR KPOINTS POTCAR)",
        description="Write OUTPUT/frame_<k>/{POSCAR,INCAR,KPOINTS,POTCAR,efgmd_job.json} for each frame of a "
                    "`pyexport select` folder, an extxyz file or a LAMMPS dump. INCAR = built-in labelling "
                    "settings, overridden by --incar and --set. POTCARs come from $VASP_PP_PATH as for ASE. "
                    "See pyexport.vasp_inputs.")
    p.add_argument("source", help="select output folder, .extxyz file or LAMMPS dump")
    p.add_argument("-o", "--output", help="where the job folders go (default: SOURCE/vasp for a folder, "
                                          "else vasp_jobs)")
    p.add_argument("--types", help="LAMMPS dump only: element of each atom type (Cs,Pb,Br)")
    p.add_argument("--efg", action="store_true", help="also compute EFGs: LEFG = .TRUE. and QUAD_EFG")
    p.add_argument("--isotope", action="append", default=[], metavar="El=ISOTOPE",
                   help="isotope for QUAD_EFG, e.g. Br=81Br (default: pyexport.nmr.default_isotope)")
    p.add_argument("--quad", action="append", default=[], metavar="El=Q",
                   help="quadrupole moment for QUAD_EFG in mb, e.g. Pb=0")
    p.add_argument("--incar", help="INCAR template; its tags override the built-in ones")
    p.add_argument("--set", action="append", default=[], metavar="TAG=VALUE", help="INCAR tag (wins over --incar)")
    kp = p.add_mutually_exclusive_group()
    kp.add_argument("--kspacing", type=float, default=DEFAULT_KSPACING,
                    help="k-point spacing, 1/Å with 2π as VASP's KSPACING (default: %(default)s)")
    kp.add_argument("--kpts", help="fixed Γ-centred mesh, e.g. 2,2,2")
    p.add_argument("--species", help="POTCAR/POSCAR species order, e.g. Cs,Pb,Br (default: first appearance)")
    p.add_argument("--pp", default="PBE", help="POTCAR family: PBE (potpaw_PBE), LDA (potpaw) or a folder "
                                               "name under $VASP_PP_PATH (default: %(default)s)")
    p.add_argument("--setups", default="recommended",
                   help="ASE setups table for POTCAR suffixes: recommended, minimal, gw, materialsproject "
                        "(default: %(default)s)")
    p.add_argument("--potcar", action="append", default=[], metavar="El=NAME", help="POTCAR name, e.g. Pb=Pb_d")
    p.add_argument("--no-potcar", action="store_true", help="write no POTCAR (species order is in efgmd_job.json)")
    p.set_defaults(func=run_vasp_inputs_command)


def element_map(items: Sequence[str], what: str, convert=str) -> Dict[str, object]:
    """Repeated ``El=value`` options as {element: value}; errors name the option."""
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not re.fullmatch(r"[A-Z][a-z]?", key) or not value:
            raise ValueError(f"{what}: expected Element=value, got {item!r}")
        try:
            out[key] = convert(value)
        except ValueError:
            raise ValueError(f"{what}: {item!r}: {value!r} is not valid") from None
    return out


def run_vasp_inputs_command(args) -> int:
    from ..nmr import parse_isotope_options

    frames = read_structures(args.source, types=args.types)
    output = args.output or (os.path.join(args.source, "vasp") if os.path.isdir(args.source) else "vasp_jobs")
    kpts = None
    if args.kpts:
        try:
            kpts = [int(v) for v in args.kpts.replace(",", " ").split()]
        except ValueError:
            raise ValueError(f"--kpts: expected three integers such as 2,2,2, got {args.kpts!r}") from None
    folders = write_vasp_inputs(
        frames, output, efg=args.efg,
        template=read_incar(args.incar) if args.incar else None,
        overrides=parse_tag_assignments(args.set),
        kspacing=args.kspacing, kpts=kpts,
        species=[s for s in re.split(r"[,\s]+", args.species) if s] if args.species else None,
        isotopes=parse_isotope_options(args.isotope),
        quad_mb=element_map(args.quad, "--quad", float),
        pp=args.pp, setups=args.setups, potcar_overrides=element_map(args.potcar, "--potcar"),
        potcar=not args.no_potcar, source=os.path.basename(os.path.normpath(args.source)))
    print(f"{len(folders)} VASP job folder(s) in {output}")
    record = json.loads((folders[0] / JOB_RECORD).read_text())
    print(f"species (POTCAR order): {' '.join(record['species'])}")
    if record["potcar"]:
        print("POTCAR: " + "; ".join(record["potcar"]))
    if record["quad_efg_mb"] is not None:
        print("QUAD_EFG (mb): " + " ".join(f"{s}={q:g} ({src})" for s, q, src in
                                          zip(record["species"], record["quad_efg_mb"], record["quad_efg_source"])))
    return 0
