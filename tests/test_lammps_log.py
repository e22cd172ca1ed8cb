"""Thermo columns of a real LAMMPS log (pyexport.lammps.log), several run sections and a reset
timestep, as the example inputs write them (equilibration, reset_timestep 0, production)."""
import numpy as np

from lammps_run import run_lammps
import pytest

from pyexport.lammps.log import elapsed_steps, read_thermo, read_timestep


def test_thermo_of_every_run_section_and_elapsed_steps(tmp_path):
    run_lammps("""units lj
atom_style atomic
lattice fcc 0.8442
region box block 0 4 0 4 0 4
create_box 1 box
create_atoms 1 box
mass 1 1.0
velocity all create 1.0 87287 loop geom
pair_style lj/cut 2.5
pair_coeff 1 1 1.0 1.0 2.5
fix 1 all nve
thermo_style custom step temp pe
thermo 5
run 0
run 20
reset_timestep 0
thermo_style custom step temp pe press
run 10
""", tmp_path)
    thermo = read_thermo(tmp_path / "log.lammps")
    assert thermo["Step"].tolist() == [0, 0, 5, 10, 15, 20, 0, 5, 10]
    assert len(thermo["Temp"]) == 9 and len(thermo["Press"]) == 3       # the last section's extra column
    assert np.all(np.isfinite(thermo["PotEng"]))
    assert elapsed_steps(thermo["Step"]).tolist() == [0, 0, 5, 10, 15, 20, 20, 25, 30]


def test_timestep_is_the_last_one_the_input_set(tmp_path):
    run_lammps("""units metal
variable dt index 0.004
lattice fcc 4.0
region box block 0 2 0 2 0 2
create_box 1 box
create_atoms 1 box
mass 1 60.0
pair_style lj/cut 6.0
pair_coeff 1 1 0.01 3.0
fix 1 all nve
timestep 0.001
run 2
timestep ${dt}   # production step
run 2
""", tmp_path)
    assert read_timestep(tmp_path / "log.lammps") == 0.004


def test_timestep_missing_names_the_log(tmp_path):
    log = tmp_path / "log.lammps"
    log.write_text("LAMMPS (22 Jul 2025)\nunits metal\n")
    with pytest.raises(ValueError, match="log.lammps: no 'timestep'"):
        read_timestep(log)
