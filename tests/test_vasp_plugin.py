"""pyexport.vasp_plugin called the way VASP calls it.

The stand-in argument classes below mirror the dataclasses of VASP's ``vasp`` Python package
(``ConstantsForceAndStress``/``AdditionsForceAndStress``, ``ConstantsStructure``/
``AdditionsStructure``, as on the VASP wiki pages PLUGINS/FORCE_AND_STRESS and PLUGINS/STRUCTURE):
constants frozen and their arrays made read-only (VASP's ``freeze_arrays``), ion types 0-based,
positions fractional, additions plain dataclasses whose arrays are views of a buffer owned by
"VASP" (as the Fortran arrays are), so only in-place changes reach it.
"""
import importlib
import json
import os
import sys
from dataclasses import dataclass, fields
from typing import Optional

import numpy as np
import pytest
from ase import Atoms

from contract_models import export, many_body_module, point_charge_efg_module
from pyexport import nmr
from pyexport import vasp_plugin
from pyexport.calculator import MLFFCalculator
from pyexport.contract import build_inputs, fold_to_atoms, load_model
from pyexport.data.dataset import vasp_kbar_to_stress
from pyexport.efg_eval import predict_efg
from pyexport.units import KBAR_PER_EV_A3


# --------------------------------------------------------------------------------------------
# Stand-ins for VASP's argument dataclasses
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConstantsForceAndStress:
    ENCUT: float
    NELECT: float
    shape_grid: np.ndarray
    number_ions: int
    number_ion_types: int
    ion_types: np.ndarray
    atomic_numbers: np.ndarray
    lattice_vectors: np.ndarray
    positions: np.ndarray
    ZVAL: np.ndarray
    POMASS: np.ndarray
    forces: np.ndarray
    stress: np.ndarray
    charge_density: Optional[np.ndarray] = None


@dataclass
class AdditionsForceAndStress:
    total_energy: float
    forces: np.ndarray
    stress: np.ndarray


@dataclass(frozen=True)
class ConstantsStructure:
    number_ions: int
    number_ion_types: int
    ion_types: np.ndarray
    atomic_numbers: np.ndarray
    lattice_vectors: np.ndarray
    positions: np.ndarray
    POMASS: np.ndarray
    total_energy: float
    forces: np.ndarray
    stress: np.ndarray
    shape_grid: np.ndarray
    charge_density: np.ndarray


@dataclass
class AdditionsStructure:
    lattice_vectors: np.ndarray
    positions: np.ndarray


def freeze_arrays(constants):
    """What VASP does to ``constants`` before calling a plugin: every array read-only."""
    for f in fields(constants):
        value = getattr(constants, f.name)
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    return constants


def snapshot(obj):
    return {f.name: np.copy(getattr(obj, f.name)) for f in fields(obj)}


def assert_unchanged(obj, before):
    for name, value in before.items():
        assert np.array_equal(np.asarray(getattr(obj, name)), value), name


SPECIES = ["Cs", "Pb", "Br"]   # POSCAR / POTCAR order of the test runs


def distorted_perovskite(seed=5):
    """Triclinic, rattled CsPbBr3 2x1x1 supercell with atoms grouped by species (POSCAR order)."""
    unit = Atoms("CsPbBr3", scaled_positions=[[.5, .5, .5], [0, 0, 0], [.5, 0, 0], [0, .5, 0], [0, 0, .5]],
                 cell=np.eye(3) * 5.9, pbc=True)
    atoms = unit.repeat((2, 1, 1))
    cell = atoms.cell.array.copy()
    cell[1, 0], cell[2, 0], cell[2, 1] = 0.3, -0.2, 0.25
    atoms.set_cell(cell, scale_atoms=True)
    atoms.rattle(0.15, seed=seed)
    order = np.argsort([SPECIES.index(s) for s in atoms.get_chemical_symbols()], kind="stable")
    return atoms[order]


def vasp_arguments(atoms, rng):
    """(constants, additions, buffer) for force_and_stress; additions start at 'DFT' values."""
    symbols = atoms.get_chemical_symbols()
    n = len(atoms)
    constants = freeze_arrays(ConstantsForceAndStress(
        ENCUT=520.0, NELECT=100.0, shape_grid=np.array([4, 4, 4], dtype=np.int32),
        number_ions=n, number_ion_types=len(SPECIES),
        ion_types=np.array([SPECIES.index(s) for s in symbols], dtype=np.int32),
        atomic_numbers=np.array([55, 82, 35], dtype=np.int32),
        lattice_vectors=atoms.cell.array.copy(), positions=atoms.get_scaled_positions(wrap=False),
        ZVAL=np.array([9.0, 14.0, 7.0]), POMASS=np.array([132.9, 207.2, 79.9]),
        forces=rng.normal(size=(n, 3)), stress=rng.normal(size=(3, 3)),
        charge_density=rng.random((4, 4, 4))))
    # VASP's memory: one buffer the additions' arrays are views of
    buffer = rng.normal(size=3 * n + 9)
    additions = AdditionsForceAndStress(total_energy=-123.456, forces=buffer[:3 * n].reshape(n, 3),
                                        stress=buffer[3 * n:].reshape(3, 3))
    return constants, additions, buffer


@pytest.fixture
def plugin_env(tmp_path, monkeypatch):
    """A clean plugin state in an empty run folder, no efgmd variables in the environment."""
    for name in (vasp_plugin.ENV_POTENTIAL, vasp_plugin.ENV_EFG_MODEL, vasp_plugin.ENV_EFG_LOG):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    vasp_plugin.reset()
    yield tmp_path
    vasp_plugin.reset()


@pytest.fixture(scope="module")
def potential_file(tmp_path_factory):
    return export(many_body_module(), tmp_path_factory.mktemp("models") / "potential.pt")


@pytest.fixture(scope="module")
def efg_file(tmp_path_factory):
    return export(point_charge_efg_module(), tmp_path_factory.mktemp("models") / "efg.pt")


def model_reference(path, atoms):
    """Energy (eV), forces (eV/Å) and virial (eV) straight from the exported module."""
    model, meta = load_model(path, kind="potential")
    inputs = build_inputs(atoms, meta["cutoff"], meta["elements"])
    out = model(*inputs.as_args())
    forces = fold_to_atoms(out["forces"].detach().numpy(), inputs.image_of, len(atoms))
    return float(out["energy"].detach()), forces, out["virial"].detach().numpy()


# --------------------------------------------------------------------------------------------
# force_and_stress
# --------------------------------------------------------------------------------------------
def test_force_and_stress_adds_exactly_the_model_in_vasp_units(plugin_env, potential_file, monkeypatch):
    monkeypatch.setenv(vasp_plugin.ENV_POTENTIAL, potential_file)
    atoms = distorted_perovskite()
    rng = np.random.default_rng(0)
    constants, additions, buffer = vasp_arguments(atoms, rng)
    before_constants = snapshot(constants)
    start = snapshot(additions)
    forces_view, stress_view = additions.forces, additions.stress

    vasp_plugin.force_and_stress(constants, additions)

    energy, forces, virial = model_reference(potential_file, atoms)
    # VASP's stress is -σ·V in eV, which for a contract model is its (symmetrised) virial
    assert np.allclose(additions.forces - start["forces"], forces, rtol=0, atol=1e-12)
    assert np.allclose(additions.stress - start["stress"], 0.5 * (virial + virial.T), rtol=0, atol=1e-10)
    assert abs((additions.total_energy - start["total_energy"]) - energy) < 1e-10
    assert np.abs(forces).max() > 0.1 and np.abs(virial - np.diag(np.diag(virial))).max() > 1e-3
    # changed in place: VASP's buffer holds the new values
    assert additions.forces is forces_view and additions.stress is stress_view
    assert np.array_equal(buffer[:3 * len(atoms)].reshape(-1, 3), additions.forces)
    assert np.array_equal(buffer[3 * len(atoms):].reshape(3, 3), additions.stress)
    assert_unchanged(constants, before_constants)


def test_vasp_stress_is_minus_strain_derivative_and_matches_outcar_convention(plugin_env, potential_file,
                                                                                monkeypatch):
    """Sign and unit checked against physics (finite differences of the energy under strain)
    and against the OUTCAR convention pyexport.data reads (``in kB`` = stress / V in kbar)."""
    monkeypatch.setenv(vasp_plugin.ENV_POTENTIAL, potential_file)
    atoms = distorted_perovskite(seed=9)
    constants, additions, _ = vasp_arguments(atoms, np.random.default_rng(1))
    additions.forces[:] = 0.0
    additions.stress[:] = 0.0
    vasp_plugin.force_and_stress(constants, additions)

    calc = MLFFCalculator(potential_file)

    def energy(strain):
        strained = atoms.copy()
        strained.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
        strained.calc = calc
        return strained.get_potential_energy()

    h = 1e-5
    derivative = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            e = np.zeros((3, 3))
            e[i, j] += 0.5 * h
            e[j, i] += 0.5 * h
            derivative[i, j] = (energy(e) - energy(-e)) / (2 * h)
    assert np.allclose(additions.stress, -derivative, rtol=0, atol=2e-6)

    # the "in kB" line VASP would print from this tensor, read the way pyexport.data reads it
    kb = additions.stress / atoms.get_volume() * KBAR_PER_EV_A3
    ase_stress = vasp_kbar_to_stress(kb[0, 0], kb[1, 1], kb[2, 2], kb[0, 1], kb[1, 2], kb[2, 0])
    atoms.calc = calc
    assert np.allclose(ase_stress, atoms.get_stress(), rtol=0, atol=1e-12)


def test_vasp_plugin_shim_in_run_folder_is_what_vasp_imports(plugin_env, potential_file):
    """The one-line vasp_plugin.py of the README, imported the way VASP imports it
    (importlib.import_module("vasp_plugin") from the run folder), with efgmd_plugin.json."""
    run = plugin_env
    (run / "vasp_plugin.py").write_text("from pyexport.vasp_plugin import force_and_stress, structure\n")
    (run / "efgmd_plugin.json").write_text(json.dumps({"potential": os.path.relpath(potential_file, run)}))
    sys.path.insert(0, str(run))
    try:
        module = importlib.import_module("vasp_plugin")
        atoms = distorted_perovskite(seed=2)
        constants, additions, _ = vasp_arguments(atoms, np.random.default_rng(2))
        start = additions.forces.copy()
        module.force_and_stress(constants, additions)
    finally:
        sys.path.remove(str(run))
        sys.modules.pop("vasp_plugin", None)
    _, forces, _ = model_reference(potential_file, atoms)
    assert np.allclose(additions.forces - start, forces, rtol=0, atol=1e-12)


def test_force_and_stress_without_configured_potential_says_how_to_configure(plugin_env):
    atoms = distorted_perovskite()
    constants, additions, _ = vasp_arguments(atoms, np.random.default_rng(3))
    start = snapshot(additions)
    with pytest.raises(vasp_plugin.PluginError, match=vasp_plugin.ENV_POTENTIAL):
        vasp_plugin.force_and_stress(constants, additions)
    assert_unchanged(additions, start)


def test_one_based_ion_types_are_refused(plugin_env, potential_file, monkeypatch):
    monkeypatch.setenv(vasp_plugin.ENV_POTENTIAL, potential_file)
    atoms = distorted_perovskite()
    _, additions, _ = vasp_arguments(atoms, np.random.default_rng(4))
    good, _, _ = vasp_arguments(atoms, np.random.default_rng(4))
    one_based = ConstantsForceAndStress(**{**{f.name: getattr(good, f.name) for f in fields(good)},
                                           "ion_types": good.ion_types + 1})
    with pytest.raises(vasp_plugin.PluginError, match="0-based"):
        vasp_plugin.force_and_stress(one_based, additions)


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------
def test_config_file_paths_are_relative_to_run_folder_and_environment_wins(tmp_path):
    (tmp_path / "efgmd_plugin.json").write_text(json.dumps(
        {"potential": "models/corr.pt", "efg_model": "efg.pt", "threads": 2, "isotopes": {"Br": "81Br"}}))
    config = vasp_plugin.read_config(str(tmp_path), environ={})
    assert config.potential == str(tmp_path / "models" / "corr.pt")
    assert config.efg_model == str(tmp_path / "efg.pt")
    assert config.efg_log == str(tmp_path / vasp_plugin.DEFAULT_EFG_LOG)
    assert config.threads == 2 and config.isotopes == {"Br": "81Br"}
    config = vasp_plugin.read_config(str(tmp_path), environ={vasp_plugin.ENV_POTENTIAL: "/abs/other.pt"})
    assert config.potential == "/abs/other.pt" and config.efg_model == str(tmp_path / "efg.pt")


def test_config_file_errors_name_the_file(tmp_path):
    path = tmp_path / "efgmd_plugin.json"
    path.write_text('{"potential": "a.pt", "potenital": "b.pt"}')
    with pytest.raises(vasp_plugin.PluginError, match=r"efgmd_plugin.json.*potenital"):
        vasp_plugin.read_config(str(tmp_path), environ={})
    path.write_text('{"potential": "a.pt",\n "efg_model": }')
    with pytest.raises(vasp_plugin.PluginError, match=r"efgmd_plugin.json:2"):
        vasp_plugin.read_config(str(tmp_path), environ={})
    # isotopes are read by pyexport.nmr when the file is read, not at the first EFG step
    path.write_text('{"isotopes": {"Br": "133Cs"}}')
    with pytest.raises(vasp_plugin.PluginError, match=r"efgmd_plugin.json: isotopes Br=133Cs: 133Cs is not an isotope of Br"):
        vasp_plugin.read_config(str(tmp_path), environ={})
    path.write_text('{"isotopes": {"Br": "Br-81"}}')
    assert vasp_plugin.read_config(str(tmp_path), environ={}).isotopes == {"Br": "81Br"}


# --------------------------------------------------------------------------------------------
# structure
# --------------------------------------------------------------------------------------------
def structure_arguments(atoms, rng, total_energy):
    n = len(atoms)
    symbols = atoms.get_chemical_symbols()
    constants = freeze_arrays(ConstantsStructure(
        number_ions=n, number_ion_types=len(SPECIES),
        ion_types=np.array([SPECIES.index(s) for s in symbols], dtype=np.int32),
        atomic_numbers=np.array([55, 82, 35], dtype=np.int32),
        lattice_vectors=atoms.cell.array.copy(), positions=atoms.get_scaled_positions(wrap=False),
        POMASS=np.array([132.9, 207.2, 79.9]), total_energy=total_energy,
        forces=rng.normal(size=(n, 3)), stress=rng.normal(size=(3, 3)),
        shape_grid=np.array([4, 4, 4], dtype=np.int32), charge_density=rng.random((4, 4, 4))))
    # read-only here too: structure() must not move the ions, so any write attempt would raise
    additions = freeze_arrays(AdditionsStructure(lattice_vectors=atoms.cell.array.copy(),
                                                 positions=atoms.get_scaled_positions(wrap=False)))
    return constants, additions


def read_efg_log(path):
    rows, steps = [], []
    for line in open(path):
        if line.startswith("# step"):
            words = line.split()
            steps.append((int(words[2]), float(words[4])))
        elif not line.startswith("#"):
            rows.append(line.split())
    return steps, rows


def test_structure_logs_efg_predictions_per_ionic_step_and_leaves_the_structure(plugin_env, efg_file,
                                                                                monkeypatch):
    monkeypatch.setenv(vasp_plugin.ENV_EFG_MODEL, efg_file)
    rng = np.random.default_rng(6)
    frames = [distorted_perovskite(seed=s) for s in (11, 12)]
    model, _ = load_model(efg_file, kind="efg")
    for step, atoms in enumerate(frames, start=1):
        constants, additions = structure_arguments(atoms, rng, total_energy=-100.0 - step)
        before = snapshot(constants), snapshot(additions)
        vasp_plugin.structure(constants, additions)
        assert_unchanged(constants, before[0])
        assert_unchanged(additions, before[1])

    steps, rows = read_efg_log(plugin_env / vasp_plugin.DEFAULT_EFG_LOG)
    assert steps == [(1, -101.0), (2, -102.0)]
    n = len(frames[0])
    assert len(rows) == 2 * n
    for step, atoms in enumerate(frames, start=1):
        expected = predict_efg(model, [atoms])[0]
        block = rows[(step - 1) * n: step * n]
        assert [int(r[0]) for r in block] == [step] * n
        assert [int(r[1]) for r in block] == list(range(1, n + 1))
        assert [r[2] for r in block] == atoms.get_chemical_symbols()
        v6 = np.array([[float(x) for x in r[3:9]] for r in block])
        assert np.allclose(nmr.from_voigt6(v6), expected, rtol=1e-6, atol=1e-9 * np.abs(expected).max())
        assert np.abs(expected).max() > 0.1
        vzz = np.array([float(r[9]) for r in block])
        assert np.allclose(vzz, nmr.vzz(expected), rtol=1e-6)
        for r, tensor in zip(block, expected):
            if r[2] == "Pb":          # no quadrupolar isotope: marked, not invented
                assert r[11] == "-" and np.isnan(float(r[12]))
            else:
                isotope = {"Cs": "133Cs", "Br": "79Br"}[r[2]]
                assert r[11] == isotope
                assert float(r[12]) == pytest.approx(float(nmr.cq_mhz(tensor, isotope)), rel=1e-5, abs=1e-6)

    # a new VASP run (fresh interpreter) starts a new log
    vasp_plugin.reset()
    constants, additions = structure_arguments(frames[0], rng, total_energy=-7.0)
    vasp_plugin.structure(constants, additions)
    steps, rows = read_efg_log(plugin_env / vasp_plugin.DEFAULT_EFG_LOG)
    assert steps == [(1, -7.0)] and len(rows) == n


def test_structure_without_efg_model_says_how_to_configure(plugin_env):
    constants, additions = structure_arguments(distorted_perovskite(), np.random.default_rng(7), 0.0)
    with pytest.raises(vasp_plugin.PluginError, match=vasp_plugin.ENV_EFG_MODEL):
        vasp_plugin.structure(constants, additions)
    assert not (plugin_env / vasp_plugin.DEFAULT_EFG_LOG).exists()
