"""VASP single-point jobs for labelling frames (``pyexport vasp-inputs``).

    pyexport vasp-inputs selected/ --efg            # one job folder per frame in selected/vasp/

Each job folder holds

- ``POSCAR``: the frame's cell and Cartesian positions (Å, written to 16 decimals, not wrapped
  into the cell), atoms grouped by species in POTCAR order (stable within a species);
- ``INCAR``: :data:`DEFAULT_INCAR` (energy, forces and stress of one structure), then the tags
  of an INCAR template (``--incar``), then ``--set TAG=VALUE``; each later source overrides
  the earlier. With ``--efg``: ``LEFG = .TRUE.`` and ``QUAD_EFG``, one nuclear quadrupole moment
  (mb) per species in POTCAR order, from :data:`pyexport.nmr.QUADRUPOLE_MOMENTS` (isotope
  :func:`pyexport.nmr.default_isotope` unless ``--isotope Br=81Br``; ``--quad El=Q`` gives Q in mb;
  0 for elements without a quadrupolar stable isotope, :data:`NO_QUADRUPOLAR_ISOTOPE`);
- ``KPOINTS``: a Γ-centred mesh, N_i = max(1, ⌈|b_i| / kspacing⌉) with |b_i| including 2π (the
  rule of VASP's KSPACING), or a fixed ``--kpts`` mesh;
- ``POTCAR``: concatenated from ``$VASP_PP_PATH/<pp folder>/<symbol><suffix>/POTCAR`` (or
  ``POTCAR.Z``) in species order, the layout ASE's VASP calculator uses, with ASE's setup
  tables (``--setups recommended`` by default: Cs_sv, Pb_d, ...). POTCARs are licensed to the
  user; efgmd ships none. Each POTCAR's ``TITEL`` is checked against its species.
- ``efgmd_job.json``: where the frame came from and ``poscar_to_frame``, the frame atom of every
  POSCAR ion, so that results read back (``pyexport.data.read_outcar``) map to the frame.

Per-ion INCAR tags from a template (MAGMOM, ...) are written as given: they must follow the
POSCAR order (species grouped in POTCAR order).
"""
import gzip
import json
import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = ["DEFAULT_INCAR", "NO_QUADRUPOLAR_ISOTOPE", "read_incar", "format_incar", "incar_tags",
           "species_order", "sort_by_species", "write_poscar", "kpoint_mesh", "write_kpoints",
           "quadrupole_moments", "potcar_paths", "read_potcars", "write_potcar", "write_vasp_inputs",
           "read_structures"]

#: INCAR of a labelling single point: converged energy, forces and stress of one structure.
#: ISYM = 0 (no symmetrisation: MD frames have none, and forces stay as computed), LASPH for
#: accurate PAW gradients, no WAVECAR/CHGCAR. ENCUT 520 eV is 1.3 × the largest ENMAX of the
#: recommended Cs/Pb/Br/I/C/N/H POTCARs (N, C: 400 eV).
DEFAULT_INCAR: "OrderedDict[str, str]" = OrderedDict([
    ("PREC", "Accurate"),
    ("ENCUT", "520"),
    ("EDIFF", "1E-6"),
    ("ALGO", "Normal"),
    ("NELM", "120"),
    ("ISMEAR", "0"),
    ("SIGMA", "0.05"),
    ("LREAL", ".FALSE."),
    ("LASPH", ".TRUE."),
    ("ISYM", "0"),
    ("IBRION", "-1"),
    ("NSW", "0"),
    ("ISIF", "2"),
    ("LWAVE", ".FALSE."),
    ("LCHARG", ".FALSE."),
])

#: Elements none of whose stable isotopes has spin > 1/2, hence no quadrupole moment: QUAD_EFG
#: gets 0 for them (VASP's QUAD_EFG page does the same for Si). Other elements missing from
#: :data:`pyexport.nmr.QUADRUPOLE_MOMENTS` are an error (give ``--quad El=Q``), never a silent 0.
NO_QUADRUPOLAR_ISOTOPE = frozenset({
    "C", "F", "Si", "P", "Fe", "Se", "Y", "Ag", "Cd", "Sn", "Te", "W", "Pt", "Tl", "Pb",
})

#: Default k-point spacing, Å⁻¹ (2π included, as VASP's KSPACING).
DEFAULT_KSPACING = 0.25

JOB_RECORD = "efgmd_job.json"

_TAG_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_/]*$")


class IncarError(ValueError):
    """An INCAR template or tag that cannot be used; the message names the file and line."""


# --------------------------------------------------------------------------------------------
# INCAR
# --------------------------------------------------------------------------------------------
def read_incar(path) -> "OrderedDict[str, str]":
    """Tags of an INCAR file as {TAG (upper case): value text}, in file order.

    Understands ``TAG = value`` lines, several assignments on one line separated by ``;``,
    and comments starting with ``#`` or ``!``. A tag given twice, a line without ``=`` or a
    line continuation (``\\``) is an :class:`IncarError` naming the file and line.
    """
    tags: "OrderedDict[str, str]" = OrderedDict()
    with open(path) as fh:
        for number, line in enumerate(fh, start=1):
            text = re.split(r"[#!]", line, maxsplit=1)[0].strip()
            if not text:
                continue
            if text.endswith("\\"):
                raise IncarError(f"{path}:{number}: line continuations are not supported; "
                                 f"write the tag on one line")
            for part in text.split(";"):
                part = part.strip()
                if not part:
                    continue
                if "=" not in part:
                    raise IncarError(f"{path}:{number}: expected TAG = value, got {part!r}")
                key, value = (s.strip() for s in part.split("=", 1))
                key = key.upper()
                if not _TAG_RE.match(key) or not value:
                    raise IncarError(f"{path}:{number}: expected TAG = value, got {part!r}")
                if key in tags:
                    raise IncarError(f"{path}:{number}: {key} is set twice")
                tags[key] = value
    return tags


def parse_tag_assignments(items: Sequence[str], where: str = "--set") -> "OrderedDict[str, str]":
    """{TAG: value} from ``["ENCUT=600", "ISPIN = 2"]`` (command-line ``--set``)."""
    tags: "OrderedDict[str, str]" = OrderedDict()
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip().upper(), value.strip()
        if not sep or not _TAG_RE.match(key) or not value:
            raise IncarError(f"{where}: expected TAG=VALUE, got {item!r}")
        tags[key] = value
    return tags


def incar_tags(template: Optional[Mapping[str, str]] = None, overrides: Optional[Mapping[str, str]] = None,
               quad_efg: Optional[Sequence[float]] = None) -> "OrderedDict[str, str]":
    """The INCAR of a job: :data:`DEFAULT_INCAR`, then ``template``, then ``overrides``;
    with ``quad_efg`` (mb per species, POTCAR order) also ``LEFG = .TRUE.`` and ``QUAD_EFG``.
    EFG tags already in ``template``/``overrides`` conflict with ``quad_efg`` and are an error."""
    tags: "OrderedDict[str, str]" = OrderedDict(DEFAULT_INCAR)
    for source in (template or {}), (overrides or {}):
        for key, value in source.items():
            tags[str(key).upper()] = str(value)
    if quad_efg is not None:
        for key in ("LEFG", "QUAD_EFG"):
            if key in tags:
                raise IncarError(f"{key} is set in the INCAR template or --set and by --efg; "
                                 f"remove it there (--efg writes QUAD_EFG in POTCAR order; "
                                 f"choose isotopes with --isotope or --quad)")
        tags["LEFG"] = ".TRUE."
        tags["QUAD_EFG"] = " ".join(repr(float(q)) for q in quad_efg)
    return tags


def format_incar(tags: Mapping[str, str], comment: str = "") -> str:
    """INCAR text: an optional ``#`` comment line, then one ``TAG = value`` per line."""
    lines = [f"# {comment}"] if comment else []
    lines += [f"{key} = {value}" for key, value in tags.items()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# POSCAR
# --------------------------------------------------------------------------------------------
def species_order(frames: Sequence, order: Optional[Sequence[str]] = None) -> List[str]:
    """Species (= POTCAR) order: ``order`` if given (it must cover every species of every frame;
    extra ones are dropped), else first appearance over the frames."""
    present: List[str] = []
    for atoms in frames:
        for symbol in atoms.get_chemical_symbols():
            if symbol not in present:
                present.append(symbol)
    if order is None:
        return present
    order = list(order)
    missing = [s for s in present if s not in order]
    if missing or len(set(order)) != len(order):
        raise ValueError(f"species order {order}: must list each of {present} once"
                         + (f" (missing {missing})" if missing else ""))
    return [s for s in order if s in present]


def sort_by_species(atoms, species: Sequence[str]) -> Tuple[object, np.ndarray]:
    """``(sorted atoms, permutation)``: atoms grouped by species in ``species`` order, stable
    within a species; ``sorted[k]`` is ``atoms[permutation[k]]``."""
    rank = {s: k for k, s in enumerate(species)}
    symbols = atoms.get_chemical_symbols()
    missing = sorted(set(symbols) - set(rank))
    if missing:
        raise ValueError(f"structure has element(s) {missing} not in the species order {list(species)}")
    keys = np.fromiter((rank[s] for s in symbols), dtype=np.int64, count=len(symbols))
    permutation = np.argsort(keys, kind="stable")
    return atoms[permutation], permutation


def poscar_text(atoms, species: Sequence[str], comment: str) -> str:
    """VASP 5 POSCAR of ``atoms`` already grouped by ``species``: scale 1, lattice rows (Å),
    species names and counts (species absent from the frame are left out), Cartesian
    positions (Å) to 16 decimals."""
    symbols = atoms.get_chemical_symbols()
    names, counts = [], []
    for s in species:
        c = symbols.count(s)
        if c:
            names.append(s)
            counts.append(c)
    expected = [s for s, c in zip(names, counts) for _ in range(c)]
    if expected != symbols:
        raise ValueError("poscar_text: atoms are not grouped by species; use sort_by_species first")
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    if abs(np.linalg.det(cell)) < 1e-9:
        raise ValueError("structure has no 3D cell (zero volume): VASP needs a periodic cell")
    lines = [comment.replace("\n", " "), "1.0"]
    lines += ["  " + " ".join(f"{x:22.16f}" for x in row) for row in cell]
    lines.append("  " + " ".join(f"{s:>4s}" for s in names))
    lines.append("  " + " ".join(f"{c:4d}" for c in counts))
    lines.append("Cartesian")
    lines += ["  " + " ".join(f"{x:22.16f}" for x in row) for row in atoms.positions]
    return "\n".join(lines) + "\n"


def write_poscar(path, atoms, species: Sequence[str], comment: str = "efgmd") -> np.ndarray:
    """Write ``atoms`` as POSCAR grouped by ``species``; returns the permutation (POSCAR ion k
    is ``atoms[permutation[k]]``)."""
    ordered, permutation = sort_by_species(atoms, species)
    Path(path).write_text(poscar_text(ordered, species, comment))
    return permutation


# --------------------------------------------------------------------------------------------
# KPOINTS
# --------------------------------------------------------------------------------------------
def kpoint_mesh(cell, kspacing: float = DEFAULT_KSPACING) -> np.ndarray:
    """(3,) Γ-centred mesh for ``cell`` (rows, Å): N_i = max(1, ⌈|b_i| / kspacing⌉), b_i the
    reciprocal vectors with the factor 2π (VASP's KSPACING rule), ``kspacing`` in Å⁻¹."""
    if not kspacing > 0:
        raise ValueError(f"kspacing must be positive (1/Å), got {kspacing}")
    reciprocal = 2.0 * np.pi * np.linalg.inv(np.asarray(cell, dtype=np.float64)).T
    lengths = np.linalg.norm(reciprocal, axis=1)
    # a tiny tolerance so that |b|/kspacing = 3.0000000001 from rounding stays 3
    return np.maximum(1, np.ceil(lengths / kspacing - 1e-9)).astype(int)


def kpoints_text(mesh: Sequence[int], comment: str) -> str:
    mesh = [int(m) for m in mesh]
    if len(mesh) != 3 or min(mesh) < 1:
        raise ValueError(f"k-point mesh must be three positive integers, got {mesh}")
    return f"{comment}\n0\nGamma\n  {mesh[0]} {mesh[1]} {mesh[2]}\n  0 0 0\n"


def write_kpoints(path, mesh: Sequence[int], comment: str = "Gamma-centred mesh (efgmd)") -> None:
    Path(path).write_text(kpoints_text(mesh, comment))


# --------------------------------------------------------------------------------------------
# QUAD_EFG
# --------------------------------------------------------------------------------------------
def quadrupole_moments(species: Sequence[str], isotopes: Optional[Mapping[str, str]] = None,
                       quad_mb: Optional[Mapping[str, float]] = None) -> Tuple[List[float], List[str]]:
    """``(Q in mb, source)`` per species, in ``species`` order (the QUAD_EFG values).

    For each element: ``quad_mb[element]`` if given; else the table value of
    ``isotopes[element]`` or of :func:`pyexport.nmr.default_isotope`; else 0 for elements in
    :data:`NO_QUADRUPOLAR_ISOTOPE`. ``source`` says which ("79Br", "given", "no quadrupolar
    isotope"). Anything else raises ``ValueError`` naming the element.
    """
    from .nmr import quadrupole_moment_mb, resolve_isotopes

    quad_mb = dict(quad_mb or {})
    extra = sorted(set(quad_mb) - set(species))
    if extra:
        raise ValueError(f"--quad: element(s) {extra} are not in the structures ({list(species)})")
    isotopes = resolve_isotopes(species, isotopes)
    values, sources = [], []
    for element in species:
        if element in quad_mb:
            values.append(float(quad_mb[element]))
            sources.append("given")
        elif element in isotopes:
            values.append(quadrupole_moment_mb(isotopes[element]))
            sources.append(isotopes[element])
        elif element in NO_QUADRUPOLAR_ISOTOPE:
            values.append(0.0)
            sources.append("no quadrupolar isotope")
        else:
            raise ValueError(f"no quadrupole moment for {element}: give the isotope "
                             f"(--isotope {element}=<A>{element}, if it is in pyexport.nmr's table) "
                             f"or Q itself (--quad {element}=<Q in mb>)")
    return values, sources


# --------------------------------------------------------------------------------------------
# POTCAR
# --------------------------------------------------------------------------------------------
_PP_ALIASES = {"PBE": "potpaw_PBE", "LDA": "potpaw"}


def potcar_paths(species: Sequence[str], pp: str = "PBE", setups="recommended",
                 overrides: Optional[Mapping[str, str]] = None, pp_path: Optional[str] = None
                 ) -> List[Path]:
    """POTCAR file of each species, found as ASE's VASP calculator finds them:
    ``<pp_path>/<folder>/<name>/POTCAR`` or ``POTCAR.Z``, ``pp_path`` defaulting to
    ``$VASP_PP_PATH``, ``folder`` = ``potpaw_PBE`` for ``pp="PBE"``, ``potpaw`` for ``"LDA"``,
    else ``pp`` itself (e.g. ``potpaw_PBE.64``); ``name`` = symbol + the suffix of ASE's
    ``setups`` table (``"recommended"``, ``"minimal"``, ``"gw"``, ``"materialsproject"``, or a
    dict), or ``overrides[symbol]`` (a full name such as ``"Pb_d"``)."""
    from ase.calculators.vasp.create_input import get_pp_setup

    if pp_path is None:
        pp_path = os.environ.get("VASP_PP_PATH")
        if not pp_path:
            raise FileNotFoundError("VASP_PP_PATH is not set: point it at the folder holding "
                                    "potpaw_PBE/ (as for ASE), or pass --no-potcar")
    if not os.path.isdir(pp_path):
        raise FileNotFoundError(f"VASP_PP_PATH={pp_path}: no such folder")
    folder = Path(pp_path) / _PP_ALIASES.get(pp.upper(), pp)
    suffixes, _ = get_pp_setup(setups)
    overrides = dict(overrides or {})
    extra = sorted(set(overrides) - set(species))
    if extra:
        raise ValueError(f"--potcar: element(s) {extra} are not in the structures ({list(species)})")
    paths = []
    for symbol in species:
        name = overrides.get(symbol, symbol + suffixes.get(symbol, ""))
        candidates = [folder / name / "POTCAR", folder / name / "POTCAR.Z"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise FileNotFoundError(f"no POTCAR for {symbol}: looked for {candidates[0]} and "
                                    f"{candidates[1].name} (setups={setups!r}; choose another with "
                                    f"--setups or --potcar {symbol}=<name>)")
        paths.append(found)
    return paths


def _read_potcar(path: Path) -> bytes:
    # ASE opens POTCAR.Z with gzip: VASP distributions compress them that way
    if path.name.endswith(".Z"):
        with gzip.open(path, "rb") as fh:
            return fh.read()
    return path.read_bytes()


def potcar_title(data: bytes, path) -> Tuple[str, str]:
    """``(TITEL text, element symbol)`` of one POTCAR (``TITEL  = PAW_PBE Pb_d 06Sep2000``)."""
    match = re.search(rb"TITEL\s*=\s*(.+)", data)
    if match is None:
        raise ValueError(f"{path}: no TITEL line; is this a POTCAR?")
    title = match.group(1).decode("ascii", "replace").strip()
    words = title.split()
    name = words[1] if len(words) > 1 and words[0].upper().startswith(("PAW", "US")) else words[0]
    element = re.match(r"[A-Z][a-z]?", name)
    if element is None:
        raise ValueError(f"{path}: cannot read the element from TITEL = {title}")
    return title, element.group(0)


def read_potcars(potcars: Sequence[Path], species: Sequence[str]) -> Tuple[bytes, List[str]]:
    """The concatenated POTCAR of ``potcars`` (one per species, in order) and their TITELs.
    A POTCAR whose TITEL names another element than its species is an error."""
    titles, parts = [], []
    for file, symbol in zip(potcars, species):
        data = _read_potcar(Path(file))
        title, element = potcar_title(data, file)
        if element != symbol:
            raise ValueError(f"{file}: TITEL = {title} is {element}, expected {symbol}")
        if not data.endswith(b"\n"):
            data += b"\n"
        titles.append(title)
        parts.append(data)
    return b"".join(parts), titles


def write_potcar(path, potcars: Sequence[Path], species: Sequence[str]) -> List[str]:
    """Write the POTCAR of ``species`` (see :func:`read_potcars`) to ``path``; returns the TITELs."""
    data, titles = read_potcars(potcars, species)
    Path(path).write_bytes(data)
    return titles


# --------------------------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------------------------
def write_vasp_inputs(frames: Sequence, output, *, efg: bool = False,
                      template: Optional[Mapping[str, str]] = None,
                      overrides: Optional[Mapping[str, str]] = None,
                      kspacing: float = DEFAULT_KSPACING, kpts: Optional[Sequence[int]] = None,
                      species: Optional[Sequence[str]] = None,
                      isotopes: Optional[Mapping[str, str]] = None,
                      quad_mb: Optional[Mapping[str, float]] = None,
                      pp: str = "PBE", setups="recommended", potcar_overrides: Optional[Mapping[str, str]] = None,
                      pp_path: Optional[str] = None, potcar: bool = True,
                      source: Optional[str] = None) -> List[Path]:
    """One job folder ``output/frame_<k>`` per frame (see the module docstring); returns them.

    Everything is checked (species, POTCARs, QUAD_EFG, INCAR) before the first file is written.
    ``potcar=False`` skips the POTCAR (assemble it elsewhere in the order of ``efgmd_job.json``).
    """
    frames = list(frames)
    if not frames:
        raise ValueError("write_vasp_inputs: no frames")
    order = species_order(frames, species)
    quad, quad_sources = quadrupole_moments(order, isotopes, quad_mb) if efg else (None, None)
    tags = incar_tags(template, overrides, quad)
    potcar_data, titles = (read_potcars(potcar_paths(order, pp, setups, potcar_overrides, pp_path), order)
                           if potcar else (None, None))
    if kpts is not None:
        kpts = [int(k) for k in kpts]
        kpoints_text(kpts, "")     # validates

    for k, atoms in enumerate(frames):
        lacking = sorted(set(order) - set(atoms.get_chemical_symbols()))
        if lacking and (potcar or efg):
            raise ValueError(f"frame {k} lacks species {lacking}: the shared POTCAR/QUAD_EFG "
                             f"order would not match its POSCAR; write frames of different "
                             f"composition in separate runs")

    output = Path(output)
    width = max(3, len(str(len(frames) - 1)))
    folders = []
    for k, atoms in enumerate(frames):
        folder = output / f"frame_{k:0{width}d}"
        folder.mkdir(parents=True, exist_ok=True)
        label = _frame_label(atoms, k, source)
        permutation = write_poscar(folder / "POSCAR", atoms, order, comment=f"{atoms.get_chemical_formula()} {label}")
        (folder / "INCAR").write_text(format_incar(tags, comment=f"efgmd vasp-inputs: {label}"))
        mesh = kpts if kpts is not None else kpoint_mesh(atoms.cell.array, kspacing).tolist()
        how = "fixed mesh" if kpts is not None else f"kspacing {kspacing} 1/A"
        write_kpoints(folder / "KPOINTS", mesh, comment=f"Gamma-centred {how} (efgmd)")
        if potcar_data is not None:
            (folder / "POTCAR").write_bytes(potcar_data)
        record = {
            "frame": k, "source": source, "info": _json_safe(atoms.info),
            "species": order, "counts": [atoms.get_chemical_symbols().count(s) for s in order],
            "poscar_to_frame": permutation.tolist(), "kpoints": [int(m) for m in mesh],
            "potcar": titles, "quad_efg_mb": quad,
            "quad_efg_source": quad_sources,
        }
        (folder / JOB_RECORD).write_text(json.dumps(record, indent=2) + "\n")
        folders.append(folder)
    return folders


def _frame_label(atoms, k: int, source: Optional[str]) -> str:
    parts = [f"frame {k}"]
    if "timestep" in atoms.info:
        parts.append(f"timestep {atoms.info['timestep']}")
    if source:
        parts.append(f"of {source}")
    return ", ".join(parts)


def _json_safe(info: Mapping) -> dict:
    out = {}
    for key, value in info.items():
        if isinstance(value, np.generic):
            value = value.item()
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        try:
            json.dumps(value)
        except TypeError:
            value = repr(value)
        out[str(key)] = value
    return out


def read_structures(source: str, types: Optional[str] = None) -> List:
    """Frames to write jobs for: a ``pyexport select`` folder (its ``frames.extxyz``), an
    extended XYZ file, or a LAMMPS dump (with ``types`` unless it has an element column)."""
    import ase.io

    from .select import FRAMES_FILE

    if os.path.isdir(source):
        path = os.path.join(source, FRAMES_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{source}: folder has no {FRAMES_FILE} (run pyexport select first)")
        return ase.io.read(path, index=":", format="extxyz")
    if not os.path.isfile(source):
        raise FileNotFoundError(f"{source}: no such file or folder")
    if re.search(r"\.(ext)?xyz(\.gz|\.bz2|\.xz)?$", source):
        return ase.io.read(source, index=":", format="extxyz")
    from .lammps.dump import read_frames
    return read_frames(source, types=types)
