"""The structure at a force minimum of the potential before its phonons are computed: positions
and (by default) the cell relaxed at zero pressure, the space group kept.

A harmonic baseline means something only about a minimum of the potential that runs the MD: the
forces of a structure relaxed by another method (DFT, a foundation model) are small but not zero
with the fitted potential, and the Hessian about such a point can show imaginary modes that are
artefacts of the residual force. The 7net-0 ground state of orthorhombic CsPbBr3 has residual
forces of 0.01 eV/Å with the shipped potential; with force constants from its 40-atom cell the
9×7×10 mesh has modes down to −0.14 THz, which are real (lowest 0.08 THz) once it is relaxed to
1e-4 eV/Å (from the 320-atom cell both are real: 0.121 and 0.123 THz). The cell is relaxed too
because the MD it is compared with runs at zero pressure (NPT).

The symmetry is kept (ASE's ``FixSymmetry``: forces and stress symmetrised in the space group
spglib finds at ``symprec``), so a phase that is a saddle point of the potential (cubic CsPbBr3)
stays that phase and shows its unstable modes, instead of rolling down to another phase.

Units: Å, eV; stress in GPa in the summary.
"""
from __future__ import annotations

import warnings
from typing import Optional

import numpy as np
from ase import Atoms, units

#: BFGS steps before a relaxation counts as failed.
DEFAULT_MAX_STEPS = 1000


def max_force(atoms: Atoms) -> float:
    """Largest Cartesian force component (eV/Å) of ``atoms`` with its calculator."""
    return float(np.abs(atoms.get_forces()).max())


def max_stress_gpa(atoms: Atoms) -> float:
    """Largest Voigt stress component (GPa) of ``atoms`` with its calculator."""
    return float(np.abs(atoms.get_stress(voigt=True)).max() / units.GPa)


def space_group(atoms: Atoms, symprec: float) -> str:
    """'Pnma (62)', spglib's international symbol and number at ``symprec`` (Å)."""
    import spglib

    cell = (np.array(atoms.cell.array), atoms.get_scaled_positions(), atoms.numbers)
    return spglib.get_spacegroup(cell, symprec=symprec) or "unknown"


def _state(atoms: Atoms, relax_cell: bool, symprec: float) -> dict:
    """What the relaxation summary records of a structure (with its calculator), before and after."""
    return {"energy_eV": float(atoms.get_potential_energy()), "max_force_eV_per_A": max_force(atoms),
            "max_stress_GPa": max_stress_gpa(atoms) if relax_cell else None,
            "space_group": space_group(atoms, symprec), "cell_A": np.array(atoms.cell.array)}


def relax_structure(atoms: Atoms, calc, fmax: float, relax_cell: bool = True,
                    symprec: float = 1e-5, max_steps: int = DEFAULT_MAX_STEPS,
                    where: str = "structure") -> tuple[Atoms, dict]:
    """``(relaxed copy of atoms, summary)``: BFGS until every force component is at most ``fmax``
    (eV/Å) and, with ``relax_cell``, every stress component at most ``fmax × N / V`` (eV/Å³,
    ASE's ``FrechetCellFilter`` scales the cell gradient by the number of atoms N; the summary
    states it in GPa). The space group at ``symprec`` is kept. A structure that already meets
    the tolerance is returned unchanged (``summary["steps"] == 0``).

    Raises ``RuntimeError`` naming ``where`` when ``max_steps`` are not enough, or when the
    space group changed anyway (a symmetry finder at a loose ``symprec`` that saw more symmetry
    than the structure has).
    """
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    if not fmax > 0:
        raise ValueError(f"relax: the force tolerance must be > 0 eV/Å, got {fmax}")
    relaxed = atoms.copy()
    relaxed.calc = calc
    stress_tolerance_gpa = fmax * len(atoms) / atoms.get_volume() / units.GPa
    before = _state(relaxed, relax_cell, symprec)
    converged = before["max_force_eV_per_A"] <= fmax and (
        not relax_cell or before["max_stress_GPa"] <= stress_tolerance_gpa)
    steps = 0
    if not converged:
        relaxed.set_constraint(FixSymmetry(relaxed, symprec=symprec))
        target = FrechetCellFilter(relaxed, scalar_pressure=0.0) if relax_cell else relaxed
        optimizer = BFGS(target, logfile=None)
        with warnings.catch_warnings():
            # FrechetCellFilter takes scipy's matrix logarithm of the deformation gradient,
            # which warns at errors of 1e-13 in every step
            warnings.filterwarnings("ignore", message="logm result may be inaccurate")
            converged = bool(optimizer.run(fmax=fmax, steps=max_steps))
        steps = int(optimizer.nsteps)
        relaxed.set_constraint()
    after = _state(relaxed, relax_cell, symprec)
    if not converged:
        raise RuntimeError(f"{where}: relaxation with the potential did not reach max force "
                           f"{fmax:g} eV/Å within {max_steps} BFGS steps (now "
                           f"{after['max_force_eV_per_A']:.3g} eV/Å); check the structure, or "
                           f"loosen --relax")
    if after["space_group"] != before["space_group"]:
        # FixSymmetry keeps every operation of the start; more of them means the minimum of the
        # potential in this symmetry is a structure of higher symmetry (another phase)
        raise RuntimeError(f"{where}: the relaxation went from {before['space_group']} to "
                           f"{after['space_group']} (symprec {symprec:g} Å): the potential's "
                           f"minimum with this symmetry is another structure, not a ground state "
                           f"of this phase")
    shift = relaxed.positions - atoms.positions
    shift -= shift.mean(axis=0)          # a rigid translation is no change of the structure
    summary = {
        "force_tolerance_eV_per_A": float(fmax),
        "stress_tolerance_GPa": float(stress_tolerance_gpa) if relax_cell else None,
        "cell_relaxed": bool(relax_cell), "pressure_GPa": 0.0 if relax_cell else None,
        "symmetry_kept": f"FixSymmetry at symprec {symprec:g} Å",
        "steps": steps, "before": before, "after": after,
        "energy_change_meV_per_atom": 1e3 * (after["energy_eV"] - before["energy_eV"]) / len(atoms),
        "max_atomic_shift_A": float(np.linalg.norm(shift, axis=1).max()),
        "volume_change_percent": 100.0 * (relaxed.get_volume() / atoms.get_volume() - 1.0),
    }
    relaxed.calc = None
    return relaxed, summary


def relaxation_line(summary: Optional[dict]) -> Optional[str]:
    """One line for the printed summary and the compare report, or None without relaxation."""
    if summary is None:
        return None
    b, a = summary["before"], summary["after"]
    if summary["steps"] == 0:
        return (f"already at a force minimum of the potential: max force "
                f"{b['max_force_eV_per_A']:.2g} eV/Å <= {summary['force_tolerance_eV_per_A']:g} eV/Å")
    cell = (f", max stress {b['max_stress_GPa']:.2g} -> {a['max_stress_GPa']:.2g} GPa, volume "
            f"{summary['volume_change_percent']:+.2f} %" if summary["cell_relaxed"] else " (cell fixed)")
    return (f"relaxed with the potential ({summary['symmetry_kept']}, {summary['steps']} BFGS "
            f"steps): max force {b['max_force_eV_per_A']:.2g} -> {a['max_force_eV_per_A']:.2g} eV/Å "
            f"(tolerance {summary['force_tolerance_eV_per_A']:g}){cell}, energy "
            f"{summary['energy_change_meV_per_atom']:+.3f} meV/atom, atoms moved up to "
            f"{summary['max_atomic_shift_A']:.3f} Å; {a['space_group']}")
