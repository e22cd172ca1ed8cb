"""Reader for VASP's machine-learning training sets ``ML_AB`` / ``ML_ABN``
(plain or compressed).

The file is a header (counts, atom types, reference energies, masses, the
local reference configurations of the force field) followed by
``Configuration num. k`` blocks, each with a system name, atom types and
counts, lattice vectors (Å), Cartesian positions (Å), the total energy (eV),
forces (eV/Å) and the stress (kbar, XX YY ZZ then XY YZ ZX). Sections are
separated by lines of ``*`` or ``=``; ``-`` lines separate a title from its
values.

Units and signs: the stress is stored as VASP prints it in OUTCAR (the
"in kB" line: positive = compressed, i.e. minus the physical stress), so the
ASE stress is ``-0.1 GPa * value`` in Voigt order (xx, yy, zz, yz, xz, xy).
Tools that convert OUTCAR or vasprun.xml data into ML_AB files copy VASP's
kbar numbers unchanged into this block, which is the evidence for the sign.
The energy is the one VASP stored for fitting; it is used as both ``energy``
and ``free_energy``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dataset import ParseError, check_symbol, make_atoms, open_text, vasp_kbar_to_stress

__all__ = ["MLABHeader", "read_mlab", "read_mlab_with_header"]


@dataclass(frozen=True)
class MLABHeader:
    """The counts and per-type data of an ML_AB header."""
    version: str
    n_configurations: int
    max_atom_types: int
    atom_types: tuple
    max_atoms_per_system: int
    max_atoms_per_type: int
    reference_energies_ev: tuple
    atomic_masses: tuple


@dataclass
class _Section:
    title: str
    line: int       # 1-based line of the title
    body: list      # (line, text) of the value lines, '-' rules left out


def read_mlab(path):
    """Every configuration of an ML_AB file as ``list[ase.Atoms]``.

    ``atoms.info["source"]["step"]`` is the configuration number, ``"line"``
    the line of its ``Configuration num.`` title; ``atoms.info["system_name"]``
    the system name VASP stored. The header's counts are checked against the
    configurations: a file with fewer or more configurations than the header
    announces raises :class:`~pyexport.data.dataset.ParseError`.
    """
    return read_mlab_with_header(path)[1]


def read_mlab_with_header(path):
    """``(MLABHeader, list[ase.Atoms])`` of an ML_AB file (see :func:`read_mlab`)."""
    with open_text(path) as fh:
        lines = fh.read().splitlines()
    if not lines:
        raise ParseError(path, 1, "empty file")
    sections = _sections(lines)
    first_config = next((i for i, s in enumerate(sections)
                         if s.title.startswith("Configuration num.")), len(sections))
    header = _header(lines[0], sections[:first_config], path)
    frames = []
    config_sections = sections[first_config:]
    starts = [i for i, s in enumerate(config_sections)
              if s.title.startswith("Configuration num.")] + [len(config_sections)]
    for a, b in zip(starts[:-1], starts[1:]):
        frames.append(_configuration(config_sections[a], config_sections[a + 1:b],
                                     header, len(frames) + 1, path))
    if len(frames) != header.n_configurations:
        raise ParseError(path, len(lines),
                         f"header announces {header.n_configurations} configurations, "
                         f"the file holds {len(frames)}")
    return header, frames


def _is_separator(stripped):
    return bool(stripped) and stripped[0] in "*=" and stripped == stripped[0] * len(stripped)


def _is_rule(stripped):
    return bool(stripped) and stripped == "-" * len(stripped)


def _sections(lines):
    """The file cut at its '*' / '=' lines into titled sections."""
    sections, current = [], None
    for lineno, text in enumerate(lines, 1):
        stripped = text.strip()
        if _is_separator(stripped):
            current = None
        elif current is None:
            if stripped:
                current = _Section(stripped, lineno, [])
                sections.append(current)
        elif stripped and not _is_rule(stripped):
            current.body.append((lineno, stripped))
    return sections


def _header(version_line, sections, path):
    by_title = {s.title: s for s in sections}

    def section(title):
        if title not in by_title:
            raise ParseError(path, 1, f"header has no '{title}' section")
        return by_title[title]

    def ints(title, count=None):
        return _numbers(section(title), int, count, path)

    def one_int(title):
        return ints(title, 1)[0]

    atom_types_section = section("The atom types in the data file")
    atom_types = tuple(check_symbol(t, path, line)
                       for line, text in atom_types_section.body for t in text.split())
    n_types = one_int("The maximum number of atom type")
    if len(atom_types) != n_types:
        raise ParseError(path, atom_types_section.line,
                         f"{len(atom_types)} atom types listed, header says {n_types}")
    return MLABHeader(
        version=version_line.replace("Version", "").strip(),
        n_configurations=one_int("The number of configurations"),
        max_atom_types=n_types,
        atom_types=atom_types,
        max_atoms_per_system=one_int("The maximum number of atoms per system"),
        max_atoms_per_type=one_int("The maximum number of atoms per atom type"),
        reference_energies_ev=tuple(_numbers(section("Reference atomic energy (eV)"),
                                             float, n_types, path)),
        atomic_masses=tuple(_numbers(section("Atomic mass"), float, n_types, path)),
    )


def _numbers(section, kind, count, path):
    """All numbers in a section's body (``count`` of them when given)."""
    tokens = [(line, t) for line, text in section.body for t in text.split()]
    try:
        values = [kind(t) for _, t in tokens]
    except ValueError:
        raise ParseError(path, section.line,
                         f"non-numeric value in '{section.title}'") from None
    if count is not None and len(values) != count:
        raise ParseError(path, section.line,
                         f"'{section.title}' holds {len(values)} numbers, "
                         f"expected {count}")
    return values


def _rows3(section, n, path):
    """(n, 3) float array from a section whose body has n lines of 3 numbers."""
    if len(section.body) != n:
        where = section.body[n][0] if len(section.body) > n else section.line
        raise ParseError(path, where, f"'{section.title}' has {len(section.body)} "
                                      f"lines, expected {n} (one per atom)")
    text = " ".join(t for _, t in section.body)
    try:
        values = np.array(text.split(), dtype=float)
    except ValueError:
        values = None
    if values is None or values.size != 3 * n:
        for line, t in section.body:
            parts = t.split()
            try:
                [float(p) for p in parts]
            except ValueError:
                parts = None
            if parts is None or len(parts) != 3:
                raise ParseError(path, line, f"expected 3 numbers in "
                                             f"'{section.title}', found {t!r}")
    return values.reshape(n, 3)


def _configuration(title, sections, header, expected_number, path):
    try:
        number = int(title.title.split(".", 1)[1])
    except (IndexError, ValueError):
        raise ParseError(path, title.line, f"cannot read {title.title!r}") from None
    if number != expected_number:
        raise ParseError(path, title.line, f"configuration {number} where "
                                           f"{expected_number} was expected")
    by_title = {s.title: s for s in sections}

    def section(name):
        if name not in by_title:
            raise ParseError(path, title.line,
                             f"configuration {number} has no '{name}' section")
        return by_title[name]

    n_atoms = _numbers(section("The number of atoms"), int, 1, path)[0]
    symbols = _symbols(section("Atom types and atom numbers"), header, n_atoms, path)
    cell = _rows3(section("Primitive lattice vectors (ang.)"), 3, path)
    positions = _rows3(section("Atomic positions (ang.)"), n_atoms, path)
    energy = _numbers(section("Total energy (eV)"), float, 1, path)[0]
    forces = _rows3(section("Forces (eV ang.^-1)"), n_atoms, path)
    stress = _stress(section("Stress (kbar)"), path)
    if n_atoms > header.max_atoms_per_system:
        raise ParseError(path, title.line,
                         f"{n_atoms} atoms, more than the header's maximum "
                         f"{header.max_atoms_per_system}")
    names = by_title.get("System name")
    atoms = make_atoms(symbols, cell, positions, energy, forces, stress,
                       source={"file": str(path), "format": "mlab",
                               "step": number, "line": title.line})
    if names is not None and names.body:
        atoms.info["system_name"] = names.body[0][1]
    return atoms


def _symbols(section, header, n_atoms, path):
    symbols = []
    for line, text in section.body:
        parts = text.split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise ParseError(path, line, f"expected 'symbol count', found {text!r}")
        symbol, count = check_symbol(parts[0], path, line), int(parts[1])
        if symbol not in header.atom_types:
            raise ParseError(path, line, f"{symbol} is not among the header's "
                                         f"atom types {header.atom_types}")
        if count > header.max_atoms_per_type:
            raise ParseError(path, line, f"{count} {symbol} atoms, more than the "
                                         f"header's maximum {header.max_atoms_per_type}")
        symbols += [symbol] * count
    if len(symbols) != n_atoms:
        raise ParseError(path, section.line, f"atom types add up to {len(symbols)} "
                                             f"atoms, 'The number of atoms' is {n_atoms}")
    return symbols


def _stress(section, path):
    """ASE stress (6,) eV/Å³ from the 'XX YY ZZ' and 'XY YZ ZX' rows (kbar)."""
    labels = [t for _, t in section.body if t[0].isalpha()]
    rows = [(line, t) for line, t in section.body if not t[0].isalpha()]
    if labels != ["XX YY ZZ", "XY YZ ZX"] or len(rows) != 2:
        raise ParseError(path, section.line, "expected an 'XX YY ZZ' row and an "
                                             "'XY YZ ZX' row of stress values")
    values = []
    for line, text in rows:
        try:
            row = [float(t) for t in text.split()]
        except ValueError:
            row = []
        if len(row) != 3:
            raise ParseError(path, line, f"expected 3 stress values, found {text!r}")
        values += row
    xx, yy, zz, xy, yz, zx = values
    return vasp_kbar_to_stress(xx, yy, zz, xy, yz, zx)
