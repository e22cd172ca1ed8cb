"""pair_style mlff with a model that has per-species-pair cutoffs (attribute pair_cutoffs): the
neighbour list gets the shorter cutoffs (init_one), the graph still holds every edge the model
needs, and LAMMPS (serial and -np 2) equals the Python evaluation of the same file."""
import re

import numpy as np
import pytest
from ase.neighborlist import neighbor_list

from contract_models import export
from lammps_run import mlff_single_point
from pyexport.calculator import MLFFCalculator
from pyexport.contract import PotentialModule, load_model
from test_pair_cutoffs import CUTOFF, ELEMENTS, TYPE_ORDER, methylammonium_cell, random_model

SKIN = 2.0    # LAMMPS's default neighbour skin in metal units


@pytest.fixture(scope="module")
def pair_cutoff_pt(tmp_path_factory):
    return export(PotentialModule(random_model(), ELEMENTS, CUTOFF), tmp_path_factory.mktemp("pc") / "pc.pt")


def test_export_carries_the_pair_cutoffs(pair_cutoff_pt):
    model, _ = load_model(pair_cutoff_pt, kind="potential")
    table = model.pair_cutoffs.numpy()
    h, c, n = (ELEMENTS.index(e) for e in ("H", "C", "N"))
    assert table.shape == (5, 5) and np.array_equal(table, table.T)
    assert table[c, h] == 2.2 and table[h, h] == 2.0 and table[c, n] == 2.0 and table.max() == CUTOFF


def expected_neighbours(atoms, pair_cutoffs):
    """Ordered pairs (i, j) closer than the pair's cutoff + skin: what LAMMPS's full list holds."""
    i, j, d = neighbor_list("ijd", atoms, CUTOFF + SKIN)
    species = np.array([ELEMENTS.index(s) for s in atoms.get_chemical_symbols()])
    return int(np.count_nonzero(d < pair_cutoffs[species[i], species[j]] + SKIN))


@pytest.mark.parametrize("nprocs", [None, 2])
def test_lammps_agrees_with_python_and_lists_fewer_neighbours(pair_cutoff_pt, tmp_path, nprocs):
    atoms = methylammonium_cell(rattle=0.05, seed=21).repeat((2, 2, 2))
    values = mlff_single_point(pair_cutoff_pt, atoms, TYPE_ORDER, tmp_path, nprocs)
    atoms.calc = MLFFCalculator(pair_cutoff_pt)
    forces = atoms.get_forces()
    assert np.abs(forces).max() > 0.1
    assert abs(values["pe"] - atoms.get_potential_energy()) <= 1e-9
    assert np.abs(values["forces"] - forces).max() <= 1e-9

    log = (tmp_path / "log.lammps").read_text()
    listed = int(re.search(r"Total # of neighbors = (\d+)", log).group(1))
    model, _ = load_model(pair_cutoff_pt, kind="potential")
    assert listed == expected_neighbours(atoms, model.pair_cutoffs.numpy())
    assert listed < expected_neighbours(atoms, np.full((5, 5), CUTOFF))     # the old list was longer
    assert "species-pair cutoffs (A): H-H 2 H-C 2.2 H-N 2.2 C-N 2" in log
