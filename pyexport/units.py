"""Unit constants shared by pyexport and efg (one place, so both sides convert alike).

LAMMPS ``units metal``: energy eV, distance Å, time ps, pressure bar, velocity Å/ps.
"""
from ase import units as _ase

#: bar per eV/Å³ exactly as LAMMPS metal units define it (force->nktv2p = 1.6021765e6).
#: CODATA gives 1.602176634e6; the 8e-8 relative difference matters when comparing to 1e-10.
LAMMPS_BAR_PER_EV_A3 = 1.6021765e6

#: GPa per eV/Å³ (CODATA, as ASE).
GPA_PER_EV_A3 = 1.0 / _ase.GPa

#: kbar per eV/Å³ (CODATA); VASP prints stresses in kB.
KBAR_PER_EV_A3 = 10.0 * GPA_PER_EV_A3

#: Å/ps per ASE velocity unit (Å / (Å·sqrt(amu/eV))).
A_PER_PS_PER_ASE_VELOCITY = 1000.0 * _ase.fs
