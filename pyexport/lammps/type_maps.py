"""Type → element maps for LAMMPS files: from a data file, an input script or a short list.

LAMMPS numbers atom types; a dump (or a data file) holds elements only where the user put them.
:func:`read_type_map` finds the map in a data file (``Atom Type Labels``, the element comments
of ``Masses`` as :func:`pyexport.lammps.data_file.write_lammps_data` writes them, or the masses
themselves) or an input script (``labelmap``, ``pair_coeff * * file El..``, ``mass``,
``read_data``); :func:`type_map_from_arg` turns every spelling of the ``types`` argument of the
readers (and of ``--types`` on the command line) into {type: symbol}.
"""
import re
from os import PathLike
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from ase.data import atomic_masses, chemical_symbols

__all__ = ["ELEMENT_SYMBOLS", "TypesArg", "element_from_mass", "read_type_map", "type_map_from_arg"]

#: element of each atom type: a sequence (type 1 first), {type: symbol}, 'Cs,Pb,Br', or the path
#: of a LAMMPS data file or input script
TypesArg = Union[None, str, PathLike, Sequence[str], Mapping[int, str]]
#: the chemical element symbols (H .. Og), without ASE's placeholder "X"
ELEMENT_SYMBOLS = set(chemical_symbols[1:])

def _symbol(value, where: str) -> str:
    symbol = str(value).strip()
    if symbol not in ELEMENT_SYMBOLS:
        raise ValueError(f"{where}: {symbol!r} is not a chemical element symbol")
    return symbol


def element_from_mass(mass: float, where: str, tolerance: float = 0.1) -> str:
    """The one element whose standard atomic mass is within ``tolerance`` u of ``mass``."""
    close = np.flatnonzero(np.abs(atomic_masses[1:] - mass) <= tolerance) + 1
    if len(close) != 1:
        near = ", ".join(f"{chemical_symbols[z]} {atomic_masses[z]:.3f}" for z in close) or "none"
        raise ValueError(f"{where}: mass {mass} u matches {len(close)} elements within "
                         f"{tolerance} u ({near}); name the element in a comment "
                         f"(e.g. '1 {mass} # Cs') or give the types explicitly")
    return chemical_symbols[close[0]]


def _strip_comment(line: str) -> Tuple[str, str]:
    body, _, comment = line.partition("#")
    return body.strip(), comment.strip()


def _read_data_file_types(path: Path, lines: List[str]) -> Dict[int, str]:
    """From a LAMMPS data file: ``Atom Type Labels`` that are element symbols, else the
    ``Masses`` section (element named in the line's comment, else matched by mass)."""
    sections: Dict[str, List[Tuple[int, str]]] = {}
    current = None
    for number, line in enumerate(lines, start=1):
        body, comment = _strip_comment(line)
        if not body:
            continue
        if body in ("Masses", "Atom Type Labels") or re.fullmatch(r"[A-Z][A-Za-z ]*", body):
            current = body
            sections.setdefault(current, [])
            continue
        if current is not None:
            sections[current].append((number, line))
    labels = {}
    for number, line in sections.get("Atom Type Labels", []):
        words = _strip_comment(line)[0].split()
        if len(words) == 2 and words[1] in ELEMENT_SYMBOLS:
            labels[int(words[0])] = words[1]
    if labels:
        return labels
    types = {}
    for number, line in sections.get("Masses", []):
        body, comment = _strip_comment(line)
        words = body.split()
        where = f"{path}, line {number}"
        try:
            type_id, mass = int(words[0]), float(words[1])
        except (ValueError, IndexError):
            raise ValueError(f"{where}: expected 'type mass' in the Masses section, "
                             f"found {line.strip()!r}") from None
        named = comment.split()[0] if comment else ""
        types[type_id] = named if named in ELEMENT_SYMBOLS else element_from_mass(mass, where)
    return types


def _read_input_script_types(path: Path, lines: List[str]) -> Dict[int, str]:
    """From a LAMMPS input script: ``labelmap atom``, else ``pair_coeff * * ... El1 El2 ..``,
    else ``mass`` commands, else the data file of ``read_data``."""
    labelmap, pair_coeff, masses, data_files = {}, None, {}, []
    for number, raw in enumerate(lines, start=1):
        body, comment = _strip_comment(raw)
        words = body.split()
        if not words:
            continue
        where = f"{path}, line {number}"
        if words[0] == "labelmap" and len(words) >= 2 and words[1] == "atom":
            for type_id, label in zip(words[2::2], words[3::2]):
                if label in ELEMENT_SYMBOLS:
                    labelmap[int(type_id)] = label
        elif words[0] == "pair_coeff" and words[1:3] == ["*", "*"] and pair_coeff is None:
            trailing = []
            for word in reversed(words[3:]):
                if word in ELEMENT_SYMBOLS or word == "NULL":
                    trailing.append(word)
                else:
                    break
            if trailing and len(trailing) < len(words) - 3:   # a potential file comes first
                pair_coeff = {t: s for t, s in enumerate(reversed(trailing), start=1)
                              if s != "NULL"}
        elif words[0] == "mass" and len(words) >= 3 and words[1].isdigit():
            named = comment.split()[0] if comment else ""
            masses[int(words[1])] = (named if named in ELEMENT_SYMBOLS
                                     else element_from_mass(float(words[2]), where))
        elif words[0] == "read_data" and len(words) >= 2:
            data_files.append(words[1])
    if labelmap:
        return labelmap
    if pair_coeff:
        return pair_coeff
    if masses:
        return masses
    for name in data_files:
        candidate = (path.parent / name)
        if candidate.is_file():
            return read_type_map(candidate)
    return {}


def read_type_map(path: Union[str, PathLike]) -> Dict[int, str]:
    """{type: element symbol} from a LAMMPS data file or input script.

    Data file (has a ``Masses`` or ``Atom Type Labels`` section): type labels that are element
    symbols; else each ``Masses`` line, the element named in its comment (``1 132.905 # Cs``, as
    ``pyexport`` writes them) or else the one element within 0.1 u of the mass.
    Input script: ``labelmap atom 1 Cs ..``; else the element list ending
    ``pair_coeff * * <file> Cs Pb Br`` (NULL entries skipped); else ``mass`` commands as above;
    else the type map of the file named by ``read_data``.
    """
    path = Path(path)
    lines = path.read_text(errors="replace").splitlines()
    is_data = any(_strip_comment(line)[0] in ("Masses", "Atom Type Labels") for line in lines)
    types = (_read_data_file_types if is_data else _read_input_script_types)(path, lines)
    if not types:
        raise ValueError(f"{path}: found no type→element map (looked for "
                         + ("'Masses'/'Atom Type Labels' sections" if is_data else
                            "'labelmap atom', 'pair_coeff * * file El1 El2 ..', 'mass' and "
                            "'read_data'") + ")")
    return types


def type_map_from_arg(types: TypesArg) -> Optional[Dict[int, str]]:
    """Normalise the ``types`` argument of :func:`iread` to {type: symbol}."""
    if types is None:
        return None
    if isinstance(types, Mapping):
        return {int(t): _symbol(s, f"types[{t!r}]") for t, s in types.items()}
    if isinstance(types, (str, PathLike)):
        if Path(types).is_file():
            return read_type_map(types)
        if isinstance(types, PathLike):
            raise FileNotFoundError(f"types: no such file {str(types)!r}")
        words = [w for w in re.split(r"[,\s]+", types) if w]
        if not words or not all(w in ELEMENT_SYMBOLS for w in words):
            raise ValueError(f"types={types!r} is neither an existing file nor a comma-separated "
                             f"list of element symbols such as 'Cs,Pb,Br'")
        return {t: w for t, w in enumerate(words, start=1)}
    return {t: _symbol(s, f"types[{t - 1}]") for t, s in enumerate(types, start=1)}
