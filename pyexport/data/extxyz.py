"""Reader for extended XYZ training data: ASE's parser, plus the checks and
normalisation that make its frames follow the dataset convention of
:mod:`pyexport.data.dataset`.

Per frame, the file must give an energy (``energy`` or ``free_energy`` in the
comment line) and ``forces`` (per-atom, eV/Å); ``stress`` (eV/Å³, ASE sign) or
``virial`` (eV, = -stress x volume) is optional. When both ``free_energy``
and ``energy`` are present the free energy is the entry's energy (the
force-consistent one) and ``energy`` is kept as ``atoms.info["energy_sigma0"]``,
which is what ASE writes for VASP data. A per-atom ``efg`` column of 9 numbers
(row-major 3x3, V/Å²) becomes ``atoms.arrays["efg"]`` (N, 3, 3).
"""

from __future__ import annotations

import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import iread
from ase.stress import full_3x3_to_voigt_6_stress

from .dataset import ParseError, decompressed_text

__all__ = ["read_extxyz"]


def read_extxyz(path):
    """Every frame of an extended XYZ file (plain or compressed) as
    ``list[ase.Atoms]``; ``atoms.info["source"]["step"]`` is the 1-based frame
    number and ``"line"`` the line of its atom count. A provenance dict
    already in the file's ``source`` key is kept as ``source["origin"]``.
    """
    text = decompressed_text(path)
    starts = _frame_starts(text, path)
    text.seek(0)
    frames = []
    reader = iread(text, index=":", format="extxyz")
    for number, line in enumerate(starts, 1):
        try:
            atoms = next(reader)
        except StopIteration:
            raise ParseError(path, line, f"ASE read no frame {number}") from None
        except Exception as err:  # ASE raises many types on bad input
            raise ParseError(path, line,
                             f"frame {number}: {type(err).__name__}: {err}") from None
        frames.append(_normalized(atoms, path, number, line))
    return frames


def _frame_starts(fh, path):
    """1-based line of each frame's atom count in the text ``fh`` (read from ``path``);
    checks every frame is whole."""
    starts = []
    lines = iter(fh)
    lineno = 0
    for text in lines:
        lineno += 1
        if not text.strip():
            continue
        try:
            n_atoms = int(text)
        except ValueError:
            raise ParseError(path, lineno,
                             f"expected the atom count of frame {len(starts) + 1}, "
                             f"found {text.strip()!r}") from None
        starts.append(lineno)
        read = sum(1 for _ in zip(range(n_atoms + 1), lines))
        lineno += read
        if read < n_atoms + 1:
            raise ParseError(path, starts[-1],
                             f"frame {len(starts)} declares {n_atoms} atoms but "
                             f"the file ends after {max(read - 1, 0)} of them")
    if not starts:
        raise ParseError(path, None, "no frame found")
    return starts


def _normalized(atoms, path, number, line):
    results = dict(atoms.calc.results) if atoms.calc is not None else {}
    if "free_energy" in results:
        energy = results["free_energy"]
    elif "energy" in results:
        energy = results["energy"]
    else:
        raise ParseError(path, line, f"frame {number} has no energy")
    forces = results.get("forces")
    if forces is None:
        raise ParseError(path, line, f"frame {number} has no forces")
    forces = np.asarray(forces, dtype=float)
    stress = _stress(atoms, results, path, number, line)
    for what, value in (("energy", energy), ("forces", forces), ("stress", stress)):
        if value is not None and not np.all(np.isfinite(value)):
            raise ParseError(path, line, f"frame {number}: non-finite {what}")
    if forces.shape != (len(atoms), 3):
        raise ParseError(path, line, f"frame {number}: forces have shape "
                                     f"{forces.shape}, expected ({len(atoms)}, 3)")
    calc_results = {"energy": float(energy), "free_energy": float(energy),
                    "forces": forces}
    if stress is not None:
        calc_results["stress"] = stress
    if ("free_energy" in results and "energy" in results
            and results["energy"] != results["free_energy"]
            and "energy_sigma0" not in atoms.info):
        atoms.info["energy_sigma0"] = float(results["energy"])
    atoms.calc = SinglePointCalculator(atoms, **calc_results)
    if "efg" in atoms.arrays:
        efg = atoms.arrays.pop("efg")
        if efg.shape != (len(atoms), 9):
            raise ParseError(path, line, f"frame {number}: efg has shape "
                                         f"{efg.shape}, expected ({len(atoms)}, 9)")
        atoms.arrays["efg"] = efg.reshape(len(atoms), 3, 3).astype(float)
    origin = atoms.info.pop("source", None)
    atoms.info["source"] = {"file": str(path), "format": "extxyz",
                            "step": number, "line": line}
    if origin is not None:
        atoms.info["source"]["origin"] = origin
    return atoms


def _stress(atoms, results, path, number, line):
    """ASE stress (6,) eV/Å³ from a ``stress`` or ``virial`` entry, or None."""
    if "stress" in results:
        stress = np.asarray(results["stress"], dtype=float)
        if stress.shape == (3, 3):
            stress = full_3x3_to_voigt_6_stress(stress)
        if stress.shape != (6,):
            raise ParseError(path, line, f"frame {number}: stress has shape "
                                         f"{stress.shape}, expected (6,) or (3, 3)")
        return stress
    virial = atoms.info.pop("virial", None)
    if virial is None:
        return None
    virial = np.asarray(virial, dtype=float)
    if virial.size != 9:
        raise ParseError(path, line, f"frame {number}: virial has {virial.size} "
                                     f"numbers, expected 9")
    volume = atoms.get_volume()
    if not volume > 0:
        raise ParseError(path, line, f"frame {number}: virial given without a cell")
    return full_3x3_to_voigt_6_stress(-virial.reshape(3, 3) / volume)
