"""Exported cluster and cluster-nn potentials run in LAMMPS through pair_style mlff and agree
with the Python evaluation of the same file (float64), serial and on two MPI ranks."""
import numpy as np
import pytest

from lammps_run import mlff_single_point
from pyexport.calculator import MLFFCalculator
from pyexport.contract import PotentialModule, export_model
from pyexport.models.cluster import ClusterLinear, ClusterNN
from pyexport.units import LAMMPS_BAR_PER_EV_A3
from test_cluster_model import BASIS, ELEMENTS, _random_model
from test_pair_mlff import TYPE_ORDER, perovskite


@pytest.mark.parametrize("cls,nprocs", [(ClusterLinear, None), (ClusterNN, 2)])
def test_exported_cluster_models_agree_with_python_in_lammps(tmp_path, cls, nprocs):
    model = tmp_path / "cluster.pt"
    export_model(PotentialModule(_random_model(cls), ELEMENTS, BASIS.cutoff), model)
    atoms = perovskite(reps=(2, 2, 2), rattle=0.1, seed=12)
    values = mlff_single_point(model, atoms, TYPE_ORDER, tmp_path, nprocs)
    atoms.calc = MLFFCalculator(model)
    forces = values["forces"]
    assert abs(values["pe"] - atoms.get_potential_energy()) <= 1e-9
    assert np.abs(forces - atoms.get_forces()).max() <= 1e-10
    stress = atoms.get_stress()
    assert abs(-values["pxx"] / LAMMPS_BAR_PER_EV_A3 - stress[0]) <= 1e-12 + 1e-9 * abs(stress[0])
    assert abs(-values["pyz"] / LAMMPS_BAR_PER_EV_A3 - stress[3]) <= 1e-12 + 1e-9 * abs(stress).max()
    assert np.abs(forces).max() > 1e-3
