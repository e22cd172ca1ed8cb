"""The equivariant EFG model (pyexport.models.efg), its training (pyexport.fit_efg), export and
evaluation (pyexport.efg_eval).

One small model is trained once per session on point-charge EFG labels (efg.pointcharge, formal
charges Cs +1, Pb +2, Br −1) of thermally displaced and tilted 2×2×2 CsPbBr3 cells; the
symmetry tests run on that trained model, so that the tensors they compare are of realistic
size (Br: a few V/Å²) and the tolerances mean what they say.
"""
import argparse
import json

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.lj import LennardJones
from ase.calculators.singlepoint import SinglePointCalculator
from e3nn import o3

from pyexport import nmr
from efg.pointcharge import ewald_efg
from pyexport.contract import EFGModule, build_inputs, export_model, load_model
from pyexport.efg_eval import frame_groups, join_inputs, predict_efg
from pyexport.cli.fit_efg import FIT_EFG_DEFAULTS, add_fit_efg_parser, chosen_isotopes
from pyexport.cli.options import resolve_options
from pyexport.fit_efg import (EFGFitConfig, EFGTraining, build_efg_module_from_checkpoint,
                              efg_model_from_checkpoint, efg_provenance, load_efg_checkpoint,
                              metric_isotopes, run_efg_fit, structures_from_frames)
from pyexport.models.efg import (EFGHyperparameters, build_efg_model, efg_contract_module,
                                 traceless_symmetric_basis)

ELEMENTS = ["Cs", "Pb", "Br"]
A0 = 5.87                                      # Å, cubic CsPbBr3
FORMAL_CHARGES = {"Cs": 1.0, "Pb": 2.0, "Br": -1.0}
#: rms displacement per Cartesian component (Å), roughly CsPbBr3 near room temperature
THERMAL_SIGMA = {"Cs": 0.15, "Pb": 0.08, "Br": 0.13}
CUTOFF = 6.0


# --------------------------------------------------------------------------------------------
# Labelled CsPbBr3 cells
# --------------------------------------------------------------------------------------------
def cubic_supercell(repeat=(2, 2, 2)):
    unit = Atoms("CsPbBr3", cell=np.eye(3) * A0, pbc=True,
                 scaled_positions=[[.5, .5, .5], [0, 0, 0], [.5, 0, 0], [0, .5, 0], [0, 0, .5]])
    return unit.repeat(repeat)


def tilt_octahedra(atoms, repeat, angles, in_phase=(False, False, False)):
    """Rigid PbBr6 tilts about x, y, z by ``angles`` (rad), to first order: the Br between Pb
    at n and n + e_b moves by σ_k(n) θ_k e_k × (a/2) e_b, with σ_k(n) = (−1)^(Σ_i n_i) for an
    out-of-phase (R-point) tilt and (−1)^(Σ_{i≠k} n_i) for an in-phase (M-point) tilt, so that
    the two octahedra sharing a Br turn in opposite senses."""
    frac = atoms.get_scaled_positions() * np.array(repeat)
    pos = atoms.positions.copy()
    for k in np.flatnonzero(np.array(atoms.get_chemical_symbols()) == "Br"):
        bond = int(np.argmax(np.abs(frac[k] - np.round(frac[k]))))
        n = np.floor(frac[k] + 1e-6).astype(int)
        half_bond = np.zeros(3)
        half_bond[bond] = A0 / 2
        for axis, theta in enumerate(angles):
            if axis == bond:
                continue
            exponent = n.sum() - (n[axis] if in_phase[axis] else 0)
            pos[k] += (-1) ** int(exponent) * theta * np.cross(np.eye(3)[axis], half_bond)
    atoms.positions = pos
    return atoms


def labelled_frame(rng):
    """A 40-atom CsPbBr3 cell: tilts (half of the cells), thermal displacements, a small strain;
    labelled with the Ewald point-charge EFG (V/Å²)."""
    repeat = (2, 2, 2)
    atoms = cubic_supercell(repeat)
    if rng.random() < 0.5:
        tilt_octahedra(atoms, repeat, rng.normal(0.0, 0.08, 3), in_phase=tuple(rng.random(3) < 0.3))
    sigma = np.array([THERMAL_SIGMA[s] for s in atoms.get_chemical_symbols()]) * rng.uniform(0.3, 1.3)
    atoms.positions += rng.normal(size=(len(atoms), 3)) * sigma[:, None]
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + rng.normal(0.0, 0.01, (3, 3))), scale_atoms=True)
    atoms.arrays["efg"] = ewald_efg(atoms, FORMAL_CHARGES)
    return atoms


def labelled_frames(n, seed):
    rng = np.random.default_rng(seed)
    return [labelled_frame(rng) for _ in range(n)]


@pytest.fixture(scope="module")
def training_frames():
    return labelled_frames(50, seed=11)


@pytest.fixture(scope="module")
def trained(training_frames):
    """(checkpoint, metrics, eager model) of a model trained on 50 labelled cells (~15 s)."""
    config = EFGFitConfig(cutoff=CUTOFF, val_fraction=0.15, test_fraction=0.25, seed=0, progress=False,
                          training=EFGTraining(epochs=25, learning_rate=1e-2, batch_frames=1, patience=25))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)      # 40-atom graphs: one thread is faster (measured 14 s vs 23 s with 2)
    try:
        return run_efg_fit(config, structures_from_frames(training_frames, "generated"))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def module(trained):
    """The trained model as a contract module, inner model scripted (what export writes)."""
    return build_efg_module_from_checkpoint(trained[0])


def efg_of(module, atoms):
    inputs = build_inputs(atoms, module.cutoff, module.elements)
    with torch.no_grad():
        return module(*inputs.as_args())["efg"].numpy()


def transformed(atoms, matrix, shift=np.zeros(3)):
    """``atoms`` with cell and positions mapped by x -> matrix x + shift (Cartesian)."""
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ matrix.T, scale_atoms=True)
    out.positions = out.positions + shift
    return out


# --------------------------------------------------------------------------------------------
# The 2e -> Cartesian map
# --------------------------------------------------------------------------------------------
def test_basis_maps_2e_irrep_to_rotated_cartesian_tensor():
    """V = Σ_m x_m Q_m with Q symmetric, traceless and orthonormal maps e3nn's 2e components to
    Cartesian tensors: the l = 2 spherical harmonics of a unit vector n (what the model's 2e
    features are built from) give √(15/2) (n nᵀ − I/3) exactly, and x -> D_2e(R) x gives
    V -> R V Rᵀ for Cartesian R, proper and improper (e3nn 0.6: 1o components are x, y, z)."""
    q = traceless_symmetric_basis()
    assert q.dtype == torch.float64 and q.shape == (5, 3, 3)
    assert torch.equal(q, q.transpose(1, 2))
    assert torch.diagonal(q, dim1=1, dim2=2).sum(1).abs().max() < 1e-15
    assert torch.allclose(torch.einsum("mab,nab->mn", q, q), torch.eye(5, dtype=torch.float64), atol=1e-15)
    torch.manual_seed(1)
    n = torch.nn.functional.normalize(torch.randn(20, 3, dtype=torch.float64), dim=1)
    y2 = o3.spherical_harmonics(2, n, normalize=True, normalization="component")
    cartesian = np.sqrt(7.5) * (n[:, :, None] * n[:, None, :] - torch.eye(3, dtype=torch.float64) / 3)
    assert (torch.einsum("km,mab->kab", y2, q) - cartesian).abs().max() < 1e-14
    x = torch.randn(5, dtype=torch.float64)
    for rotation in (o3.rand_matrix(dtype=torch.float64), -o3.rand_matrix(dtype=torch.float64)):
        # e3nn builds D from Euler angles with ~1e-7 rounding, hence the tolerance
        d2 = o3.Irreps("2e").D_from_matrix(rotation)
        v = torch.einsum("m,mab->ab", x, q)
        v_rot = torch.einsum("m,mab->ab", d2 @ x, q)
        assert (v_rot - rotation @ v @ rotation.T).abs().max() < 1e-5


# --------------------------------------------------------------------------------------------
# Exact symmetry of the trained model
# --------------------------------------------------------------------------------------------
def rotations():
    torch.manual_seed(5)
    proper = [o3.rand_matrix(dtype=torch.float64).numpy() for _ in range(3)]
    mirror = np.diag([1.0, 1.0, -1.0])
    tilted_mirror = proper[0] @ mirror @ proper[0].T
    return {"proper-1": proper[1], "proper-2": proper[2], "inversion": -np.eye(3), "mirror-z": mirror,
            "tilted-mirror": tilted_mirror, "rotoinversion": -proper[0]}


@pytest.mark.parametrize("name", list(rotations()))
def test_equivariant_under_rotations_reflections_translations(module, name):
    """max|V(R x + t) − R V(x) Rᵀ| ≤ 1e-10 V/Å² for proper and improper R, through the contract
    inputs of the rotated periodic cell."""
    rotation = rotations()[name]
    atoms = labelled_frames(1, seed=99)[0]
    v = efg_of(module, atoms)
    assert np.abs(v).max() > 0.5          # realistic magnitudes, so 1e-10 is a relative 1e-10
    shift = np.array([0.37, -1.91, 2.53])
    v_rot = efg_of(module, transformed(atoms, rotation, shift))
    expected = np.einsum("ab,nbc,dc->nad", rotation, v, rotation)
    assert np.abs(v_rot - expected).max() <= 1e-10


def test_invariant_under_translation_and_wrapping(module):
    atoms = labelled_frames(1, seed=98)[0]
    v = efg_of(module, atoms)
    moved = atoms.copy()
    moved.positions += np.array([3.1, -7.7, 12.9])
    moved.wrap()
    assert np.abs(efg_of(module, moved) - v).max() <= 1e-10


def test_outputs_symmetric_and_traceless(module):
    v = efg_of(module, labelled_frames(1, seed=97)[0])
    assert np.abs(v - np.swapaxes(v, 1, 2)).max() <= 1e-12
    assert np.abs(np.trace(v, axis1=1, axis2=2)).max() <= 1e-12


def test_permuting_atoms_permutes_outputs(module):
    atoms = labelled_frames(1, seed=96)[0]
    v = efg_of(module, atoms)
    order = np.random.default_rng(3).permutation(len(atoms))
    assert np.abs(efg_of(module, atoms[order]) - v[order]).max() <= 1e-12


def test_strictly_local_and_smooth_at_the_cutoff():
    """Two atoms: the EFG vanishes beyond the cutoff and like (rc − r)³ below it (the C²
    envelope; the one-neighbour density is linear in the radial weights)."""
    hp = EFGHyperparameters(n_species=3, cutoff=CUTOFF, avg_neighbors=1.0)
    module = efg_contract_module(build_efg_model(hp, seed=4), ELEMENTS, CUTOFF)

    def vzz_at(r):
        atoms = Atoms("PbBr", positions=[[0, 0, 0], [0.3 * r, 0.4 * r, np.sqrt(0.75) * r]], pbc=False)
        return efg_of(module, atoms)[0]

    assert np.abs(vzz_at(CUTOFF + 1e-9)).max() == 0.0
    d1, d2 = np.abs(vzz_at(CUTOFF - 0.01)).max(), np.abs(vzz_at(CUTOFF - 0.02)).max()
    assert d1 > 0 and d2 / d1 == pytest.approx(8.0, rel=0.03)


# --------------------------------------------------------------------------------------------
# Learning
# --------------------------------------------------------------------------------------------
def test_learns_point_charge_efgs_of_displaced_cspbbr3(trained, training_frames):
    """Held-out cells: component RMSE ≤ 5 % of the label standard deviation, 79Br C_Q MAE ≤ 3 %
    of the mean |C_Q|; recomputed here from the predictions with pyexport.nmr."""
    ckpt, metrics, model = trained
    test_sources = set(ckpt["training"]["split_sources"]["test"])
    assert len(test_sources) >= 10
    module = build_efg_module_from_checkpoint(ckpt)
    held_out = [f for k, f in enumerate(training_frames) if f"generated:{k + 1}" in test_sources]
    pred = np.concatenate(predict_efg(module, held_out))
    label = np.concatenate([f.arrays["efg"] for f in held_out])
    rmse = np.sqrt(np.mean((pred - label) ** 2))
    assert rmse <= 0.05 * np.std(label)
    is_br = np.concatenate([f.get_chemical_symbols() for f in held_out]) == "Br"
    cq_pred, cq_label = nmr.cq_mhz(pred[is_br], "79Br"), nmr.cq_mhz(label[is_br], "79Br")
    assert np.mean(np.abs(cq_pred - cq_label)) <= 0.03 * np.mean(np.abs(cq_label))
    # the metrics JSON says the same
    assert metrics["test"]["component_rmse_V_per_A2"] == pytest.approx(rmse, rel=1e-9)
    assert metrics["test"]["species"]["Br"]["cq_mae_MHz"] == pytest.approx(
        np.mean(np.abs(cq_pred - cq_label)), rel=1e-9)


def test_metrics_report_every_species_and_isotope(trained):
    metrics = trained[1]
    for split in ("train", "val", "test"):
        m = metrics[split]
        assert set(m["species"]) == set(ELEMENTS)
        assert m["species"]["Br"]["isotope"] == "79Br" and m["species"]["Cs"]["isotope"] == "133Cs"
        assert "isotope" not in m["species"]["Pb"]            # no quadrupolar Pb isotope
        for s in ELEMENTS:
            assert 0.0 <= m["species"][s]["eta_mae"] <= 1.0
    weights = metrics["species_loss_weights"]
    assert weights["Cs"] > 50 * weights["Br"]                # inverse variance: Cs is not ignored
    json.dumps(metrics)


# --------------------------------------------------------------------------------------------
# Export and evaluation
# --------------------------------------------------------------------------------------------
def test_exported_model_equals_in_memory_model(trained, tmp_path):
    ckpt = trained[0]
    path = tmp_path / "efg.pt"
    export_model(build_efg_module_from_checkpoint(ckpt), path, provenance=efg_provenance(ckpt))
    loaded, meta = load_model(path, kind="efg")
    assert meta["kind"] == "efg" and meta["elements"] == ["Br", "Cs", "Pb"] and meta["cutoff"] == CUTOFF
    assert meta["dtype"] == "float64" and meta["data_hash"] == ckpt["data_hash"]
    eager = EFGModule(efg_model_from_checkpoint(ckpt), ckpt["elements"], CUTOFF)
    frames = labelled_frames(3, seed=7)
    frames.append(transformed(cubic_supercell((3, 2, 2)), np.array([[1, .1, 0], [0, 1, -.05], [0, 0, 1.]])))
    for a, b in zip(predict_efg(loaded, frames), predict_efg(eager, frames)):
        assert np.abs(a).max() > 0.5 and np.abs(a - b).max() <= 1e-12


def test_float32_export_agrees_with_float64(trained, tmp_path):
    ckpt = trained[0]
    export_model(build_efg_module_from_checkpoint(ckpt, dtype="float32"), tmp_path / "efg32.pt")
    loaded, meta = load_model(tmp_path / "efg32.pt", kind="efg")
    assert meta["dtype"] == "float32"
    frames = labelled_frames(2, seed=8)
    v32 = np.concatenate(predict_efg(loaded, frames))
    v64 = np.concatenate(predict_efg(build_efg_module_from_checkpoint(ckpt), frames))
    assert v32.dtype == np.float64
    assert np.abs(v32 - v64).max() <= 1e-5 * np.abs(v64).max()


def test_batched_evaluation_equals_frame_by_frame(module):
    frames = labelled_frames(3, seed=9) + [cubic_supercell((2, 3, 2)), labelled_frames(1, seed=10)[0][:20]]
    frames[-1].pbc = False                                    # a cluster: no image atoms
    single = predict_efg(module, frames, batch_frames=1)
    joined = predict_efg(module, frames, batch_atoms=10 ** 6)
    assert [len(v) for v in joined] == [len(f) for f in frames]
    for a, b in zip(single, joined):
        assert np.abs(a - b).max() <= 1e-12


def test_join_inputs_keeps_owned_atoms_first():
    frames = [cubic_supercell((1, 1, 2)), cubic_supercell((1, 1, 1))]
    inputs = [build_inputs(f, CUTOFF, ELEMENTS) for f in frames]
    joined = join_inputs(inputs)
    assert joined.n_local == 15 and joined.n_atoms == [10, 5]
    assert int(joined.edge_index[0].max()) < joined.n_local
    n_ghost0 = inputs[0].pos.shape[0] - 10
    # the second frame's first image row comes after all owned atoms and the first frame's images
    assert torch.equal(joined.pos[15 + n_ghost0], inputs[1].pos[5])
    vec = joined.pos[joined.edge_index[1]] - joined.pos[joined.edge_index[0]]
    ref = torch.cat([i.pos[i.edge_index[1]] - i.pos[i.edge_index[0]] for i in inputs])
    assert torch.equal(vec, ref)
    assert frame_groups([10, 5, 40, 3], batch_atoms=16) == [[0, 1], [2], [3]]


# --------------------------------------------------------------------------------------------
# Command line and checkpoints
# --------------------------------------------------------------------------------------------
def write_training_file(path, frames):
    """extxyz with an 'efg' column (9 numbers per atom). The reader requires energies and forces
    in every frame; they come from ASE's Lennard-Jones calculator and fit-efg ignores them."""
    import ase.io

    out = []
    for f in frames:
        g = f.copy()
        g.arrays["efg"] = f.arrays["efg"].reshape(len(f), 9)
        lj = LennardJones(sigma=3.0, epsilon=0.01, rc=6.0)
        g.calc = SinglePointCalculator(g, energy=lj.get_potential_energy(f), forces=lj.get_forces(f))
        out.append(g)
    ase.io.write(path, out, format="extxyz")


def cli(argv):
    parser = argparse.ArgumentParser(prog="pyexport")
    add_fit_efg_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_fit_efg_command_writes_checkpoint_and_metrics(tmp_path, capsys):
    data = tmp_path / "train.extxyz"
    write_training_file(data, labelled_frames(8, seed=21))
    ckpt_path, metrics_path = tmp_path / "efg.ckpt", tmp_path / "metrics.json"
    assert cli(["fit-efg", str(data), "-o", str(ckpt_path), "--metrics", str(metrics_path), "--epochs", "2",
                "--cutoff", "5.0", "--lmax", "2", "--isotope", "Br=81Br", "--val-fraction", "0.25",
                "--test-fraction", "0.25", "--no-progress", "--dtype", "float32"]) == 0
    assert "checkpoint written" in capsys.readouterr().out
    ckpt = load_efg_checkpoint(str(ckpt_path))
    assert ckpt["model"] == "efg" and ckpt["cutoff"] == 5.0 and ckpt["hyperparameters"]["lmax"] == 2
    assert ckpt["elements"] == ["Br", "Cs", "Pb"] and len(ckpt["data_hash"]) == 64 and ckpt["dtype"] == "float32"
    metrics = json.loads(metrics_path.read_text())
    assert metrics["epochs_run"] == 2 and metrics["split_sizes"] == {"train": 4, "val": 2, "test": 2}
    assert metrics["test"]["species"]["Br"]["isotope"] == "81Br"
    assert "float32" in metrics
    module = build_efg_module_from_checkpoint(ckpt)
    assert module.dtype == "float32" and module.cutoff == 5.0


def test_fit_efg_max_atoms_trains_on_the_small_cells_only(tmp_path, capsys):
    """--max-atoms leaves the 80-atom cells out before the split and says so; metrics record it."""
    small = labelled_frames(6, seed=23)
    big = []
    for f in labelled_frames(2, seed=24):
        g = f.repeat((2, 1, 1))
        g.arrays["efg"] = ewald_efg(g, FORMAL_CHARGES)
        big.append(g)
    data = tmp_path / "mixed.extxyz"
    write_training_file(data, small[:3] + big[:1] + small[3:] + big[1:])
    metrics_path = tmp_path / "metrics.json"
    assert cli(["fit-efg", str(data), "--max-atoms", "40", "-o", str(tmp_path / "efg.ckpt"), "--metrics",
                str(metrics_path), "--epochs", "1", "--cutoff", "5.0", "--lmax", "2", "--val-fraction", "0.2",
                "--test-fraction", "0.2", "--no-progress"]) == 0
    metrics = json.loads(metrics_path.read_text())
    assert metrics["max_atoms"] == 40 and metrics["n_structures"] == 6
    assert sum(metrics["split_sizes"].values()) == 6
    sources = load_efg_checkpoint(str(tmp_path / "efg.ckpt"))["training"]["split_sources"]
    assert sorted(int(s.rsplit(":", 1)[1]) for v in sources.values() for s in v) == [1, 2, 3, 5, 6, 7]
    with pytest.raises(ValueError, match="max_atoms = 20 leaves no structure"):
        cli(["fit-efg", str(data), "--max-atoms", "20", "-o", str(tmp_path / "x.ckpt"), "--no-progress"])


def test_fit_efg_isotopes_one_grammar_on_command_line_and_in_config(tmp_path):
    """--isotope ELEMENT=ISOTOPE, repeated, as in every command; --config takes a table or a list."""
    parser = argparse.ArgumentParser(prog="pyexport")
    add_fit_efg_parser(parser.add_subparsers(dest="command", required=True))

    def isotopes(argv):
        return chosen_isotopes(resolve_options(parser.parse_args(["fit-efg", *argv]), FIT_EFG_DEFAULTS)["isotopes"])

    assert isotopes([]) is None
    assert isotopes(["--isotope", "Br=81Br", "--isotope", "Cs=133Cs"]) == {"Br": "81Br", "Cs": "133Cs"}
    for value in ({"Br": "81Br"}, ["Br=81Br"]):
        (tmp_path / "fit.json").write_text(json.dumps({"isotopes": value}))
        assert isotopes(["--config", str(tmp_path / "fit.json")]) == {"Br": "81Br"}
    assert isotopes(["--config", str(tmp_path / "fit.json"), "--isotope", "Br=79Br"]) == {"Br": "79Br"}
    with pytest.raises(ValueError, match="--isotope Br=81Br,Cs=133Cs: one ELEMENT=ISOTOPE per --isotope"):
        isotopes(["--isotope", "Br=81Br,Cs=133Cs"])
    with pytest.raises(SystemExit):
        parser.parse_args(["fit-efg", "--isotopes", "Br=81Br"])
    # the metrics: in the data's element order, chosen over the defaults, Pb (no Q) left out
    assert list(metric_isotopes(ELEMENTS, {"Br": "81Br"}).items()) == [("Cs", "133Cs"), ("Br", "81Br")]
    assert metric_isotopes(ELEMENTS) == {"Br": "79Br", "Cs": "133Cs"}


def test_fit_efg_rejects_bad_labels(tmp_path):
    frames = labelled_frames(3, seed=22)
    del frames[1].arrays["efg"]
    with pytest.raises(ValueError, match=r"generated:2: structure has no per-atom EFG labels"):
        structures_from_frames(frames, "generated")
    frames = labelled_frames(2, seed=23)
    frames[0].arrays["efg"][4] += 0.5 * np.eye(3)
    with pytest.raises(ValueError, match=r"generated:1: EFG label of atom 5 has a trace"):
        structures_from_frames(frames, "generated")
    with pytest.raises(ValueError, match="not an isotope of Br"):
        metric_isotopes(ELEMENTS, {"Br": "133Cs"})
    with pytest.raises(ValueError, match="not an EFG checkpoint"):
        torch.save({"model": "cluster"}, tmp_path / "x.ckpt")
        load_efg_checkpoint(str(tmp_path / "x.ckpt"))
