"""Exported cluster and cluster-nn potentials run in LAMMPS through pair_style mlff and agree
with the Python evaluation of the same file (float64), serial and on two MPI ranks; per-atom
virials are computed on the steps that ask for them, with models of either export format."""
from typing import Dict, List

import numpy as np
import pytest
import torch

from lammps_run import mlff_single_point, read_dump_sorted, run_lammps
from pyexport.calculator import MLFFCalculator
from pyexport.contract import (CONTRACT_VERSION, PotentialModule, _edge_vectors, _energy_outputs, export_model,
                               load_model)
from pyexport.lammps.data_file import write_lammps_data
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


class _PreSwitchPotential(torch.nn.Module):
    """A contract potential as exported before the ``compute_atom_virial`` switch existed: the
    same attributes and outputs as :class:`PotentialModule` then had (autograd forces,
    ``atom_virial`` on every call), no switch."""

    contract_version: int
    kind: str
    elements: List[str]
    cutoff: float
    dtype: str
    units: str

    def __init__(self, energy_model, elements, cutoff):
        super().__init__()
        self.model = energy_model
        self.contract_version, self.kind, self.units, self.dtype = CONTRACT_VERSION, "potential", "metal", "float64"
        self.elements, self.cutoff = list(elements), float(cutoff)

    def forward(self, pos: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                n_local: int) -> Dict[str, torch.Tensor]:
        edge_vec, src, dst = _edge_vectors(pos, edge_index, self.dtype, True)
        atom_energy = self.model(edge_vec, species, edge_index, n_local)
        return _energy_outputs(atom_energy, edge_vec, src, dst, pos.shape[0], True, False)


STRESS_ATOM_RUN = """units metal
atom_style atomic
boundary p p p
atom_modify map array
read_data data.lmp
pair_style mlff
pair_coeff * * {model} {types}
mass * 100.0
velocity all create 600 4 loop geom
timestep 0.002
fix nve all nve
compute pe_atom all pe/atom
compute s_atom all stress/atom NULL pair
thermo 1
dump d all custom 3 traj.dump id x y z c_pe_atom c_s_atom[*]
dump_modify d format float %.17g
run 4
"""


def _last_dump_frame(path):
    """Columns of the last frame of a custom dump, rows sorted by id."""
    text = path.read_text()
    last = text.rindex("ITEM: TIMESTEP")
    frame = path.with_suffix(".last")
    frame.write_text(text[last:])
    return read_dump_sorted(frame)


@pytest.mark.parametrize("make_module,nprocs", [("switch", None), ("switch", 2), ("pre-switch", None)])
def test_per_atom_virial_on_the_steps_that_ask_for_it(tmp_path, make_module, nprocs):
    """LAMMPS asks for per-atom virials only on the dump steps (0 and 3 of a 4-step run): the
    per-atom energies and virials of step 3, after steps without them, equal Python's at the
    dumped positions; a model exported before the switch (atom_virial always) gives the same."""
    energy_model = _random_model(ClusterLinear)
    module = (PotentialModule(energy_model, ELEMENTS, BASIS.cutoff) if make_module == "switch"
              else _PreSwitchPotential(energy_model, ELEMENTS, BASIS.cutoff))
    model = tmp_path / "cluster.pt"
    export_model(module, model)
    assert hasattr(load_model(model)[0], "compute_atom_virial") == (make_module == "switch")
    atoms = perovskite(reps=(2, 2, 2), rattle=0.1, seed=13)
    write_lammps_data(tmp_path / "data.lmp", atoms, TYPE_ORDER)
    run_lammps(STRESS_ATOM_RUN.format(model=model, types=" ".join(TYPE_ORDER)), tmp_path, nprocs=nprocs)
    frame = _last_dump_frame(tmp_path / "traj.dump")
    atoms.positions = np.stack([frame["x"], frame["y"], frame["z"]], axis=1)
    atoms.calc = MLFFCalculator(model)
    assert np.abs(frame["c_pe_atom"] - atoms.get_potential_energies()).max() <= 1e-10
    s_lmp = np.stack([frame[f"c_s_atom[{k}]"] for k in range(1, 7)], axis=1)[:, [0, 1, 2, 5, 4, 3]]
    stresses = atoms.calc.get_property("stresses") * atoms.get_volume()
    assert np.abs(s_lmp / LAMMPS_BAR_PER_EV_A3 - stresses).max() <= 1e-9
    assert np.abs(stresses).max() > 1e-2
