"""The model contract in Python: image-atom inputs from periodic cells, wrappers, export/load."""
import itertools

import numpy as np
import pytest
import torch
from ase import Atoms

from contract_models import export, many_body_module, point_charge_efg_module
from pyexport.calculator import MLFFCalculator
from pyexport.contract import (CONTRACT_VERSION, ContractError, build_inputs, check_outputs, load_model,
                               read_metadata)
from test_pair_mlff import perovskite


def brute_force_neighbours(atoms, cutoff, reach=3):
    """Set of (i, j, shift) with |r_j + shift·cell - r_i| < cutoff, by enumerating images."""
    pos, cell = atoms.get_positions(), atoms.cell.array
    found = set()
    for shift in itertools.product(range(-reach, reach + 1), repeat=3):
        shift = np.array(shift) * atoms.pbc
        d = pos[None, :, :] + shift @ cell - pos[:, None, :]
        r = np.linalg.norm(d, axis=2)
        for i, j in zip(*np.nonzero(r < cutoff)):
            if i != j or np.any(shift != 0):
                found.add((int(i), int(j), tuple(int(s) for s in shift)))
    return found


@pytest.mark.parametrize("case", ["triclinic", "small_cell", "slab"])
def test_build_inputs_finds_every_image_within_cutoff(case):
    if case == "triclinic":
        atoms, cutoff = perovskite(reps=(2, 2, 1), rattle=0.2, seed=3), 6.0
    elif case == "small_cell":        # cell shorter than the cutoff: several images of each atom
        atoms = Atoms("CsPbBr3", scaled_positions=[[.5, .5, .5], [0, 0, 0], [.5, 0, 0], [0, .5, 0], [0, 0, .5]],
                      cell=[[4.0, 0, 0], [0.7, 4.2, 0], [-0.3, 0.5, 3.9]], pbc=True)
        atoms.rattle(0.1, seed=1)
        cutoff = 6.5
    else:                              # not periodic along z: no images in that direction
        atoms = perovskite(reps=(2, 2, 1), shear=(0, 0, 0), rattle=0.1, seed=4)
        atoms.pbc = [True, True, False]
        cutoff = 6.0
    inputs = build_inputs(atoms, cutoff, ["Cs", "Pb", "Br"])
    pos = inputs.pos.numpy()
    cell = atoms.cell.array
    got = set()
    for i, j in inputs.edge_index.numpy().T:
        atom_j = inputs.image_of[j]
        shift = np.linalg.solve(cell.T, pos[j] - atoms.positions[atom_j])
        assert np.allclose(shift, np.round(shift), atol=1e-9)
        got.add((int(i), int(atom_j), tuple(int(s) for s in np.round(shift))))
        assert np.linalg.norm(pos[j] - pos[i]) < cutoff
    assert got == brute_force_neighbours(atoms, cutoff)
    assert inputs.n_local == len(atoms)
    assert np.all(inputs.edge_index.numpy()[0] < inputs.n_local)
    assert np.array_equal(inputs.species.numpy()[: len(atoms)], [["Cs", "Pb", "Br"].index(s)
                                                                for s in atoms.get_chemical_symbols()])


def test_calculator_forces_and_stress_are_derivatives_of_energy(tmp_path):
    model = export(many_body_module(), tmp_path / "mb.pt")
    atoms = perovskite(reps=(2, 1, 1), rattle=0.15, seed=8)
    atoms.calc = MLFFCalculator(model)
    forces, stress = atoms.get_forces(), atoms.get_stress(voigt=False)
    h = 1e-5
    for k, a in [(0, 0), (3, 1), (7, 2)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[k, a] += h
        minus.positions[k, a] -= h
        plus.calc = minus.calc = atoms.calc
        fd = -(plus.get_potential_energy() - minus.get_potential_energy()) / (2 * h)
        assert abs(fd - forces[k, a]) <= 1e-6
    for a, b in [(0, 0), (1, 2), (0, 2)]:
        eps = np.zeros((3, 3))
        eps[a, b] = eps[b, a] = h / (2 if a != b else 1)
        e = []
        for sign in (1, -1):
            strained = atoms.copy()
            strained.set_cell(atoms.cell.array @ (np.eye(3) + sign * eps), scale_atoms=True)
            strained.calc = atoms.calc
            e.append(strained.get_potential_energy())
        dE_deps = (e[0] - e[1]) / (2 * h)
        assert abs(dE_deps / atoms.get_volume() - stress[a, b]) <= 1e-6 * np.abs(stress).max()
    assert abs(atoms.get_potential_energies().sum() - atoms.get_potential_energy()) <= 1e-10
    assert np.abs(atoms.calc.get_property("stresses").sum(axis=0) - atoms.get_stress()).max() <= 1e-12
    assert np.abs(forces.sum(axis=0)).max() <= 1e-10        # translation invariance


def test_export_load_round_trip_and_metadata(tmp_path):
    path = export(many_body_module(), tmp_path / "mb.pt")
    module, meta = load_model(path, kind="potential")
    assert meta["contract_version"] == CONTRACT_VERSION and meta["kind"] == "potential"
    assert meta["elements"] == ["Cs", "Pb", "Br"] and meta["cutoff"] == 6.0 and meta["dtype"] == "float64"
    assert read_metadata(path)["made_by"] == "tests/contract_models.py"
    atoms = perovskite(seed=2)
    inputs = build_inputs(atoms, 6.0, meta["elements"])
    eager = many_body_module().eval()(*inputs.as_args())
    scripted = module(*inputs.as_args())
    check_outputs({k: v.detach() for k, v in scripted.items()}, "potential", inputs.pos.shape[0], inputs.n_local)
    for key in ("energy", "forces", "virial", "atom_virial"):
        assert torch.allclose(eager[key], scripted[key], rtol=0, atol=1e-12)
    efg_path = export(point_charge_efg_module(), tmp_path / "efg.pt")
    efg_module, efg_meta = load_model(efg_path, kind="efg")
    out = efg_module(*build_inputs(atoms, efg_meta["cutoff"], efg_meta["elements"]).as_args())
    check_outputs(out, "efg", inputs.pos.shape[0], len(atoms))
    v = out["efg"]
    assert torch.allclose(v, v.transpose(1, 2), atol=1e-12)
    assert torch.abs(torch.diagonal(v, dim1=1, dim2=2).sum(1)).max() <= 1e-12


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(ContractError, match="model file not found"):
        load_model(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_text("not a model")
    with pytest.raises(ContractError, match=f"{corrupt}: not a TorchScript model archive"):
        load_model(corrupt)
    efg = export(point_charge_efg_module(), tmp_path / "efg.pt")
    with pytest.raises(ContractError, match="model kind is 'efg', expected 'potential'"):
        load_model(efg, kind="potential")
    with pytest.raises(ContractError, match="model kind is 'efg', expected 'potential'"):
        MLFFCalculator(efg)
    plain = torch.jit.script(torch.nn.Linear(2, 2))
    torch.jit.save(plain, str(tmp_path / "plain.pt"))
    with pytest.raises(ContractError, match="has no contract attribute 'contract_version'"):
        load_model(tmp_path / "plain.pt")


def test_structure_with_unknown_element_is_refused(tmp_path):
    model = export(many_body_module(), tmp_path / "mb.pt")
    atoms = perovskite(seed=2)
    atoms[0].symbol = "K"
    atoms.calc = MLFFCalculator(model)
    with pytest.raises(ContractError, match=r"element\(s\) \['K'\] that the model does not have"):
        atoms.get_potential_energy()
