"""``pyexport fit / export / inspect / eval / scan`` end to end, on small data.

Labels come from a known ``cluster`` model of a tiny basis (exported as ``truth.pt``), so a fit
with the same basis must reproduce it closely and the scan reference is exact; one fit runs on
the real VASP MD file tests/data/dpdata/vasprun.h2o.md.10.xml.
"""
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch

import pyexport
from contract_models import labelled_by
from pyexport.cli import main
from pyexport.contract import PotentialModule, build_inputs, export_model, load_model
from pyexport.training.checkpoints import load_checkpoint, model_from_checkpoint, potential_from_checkpoint
from pyexport.training.data import prepare, read_structures
from pyexport.training.metrics import predict
from pyexport.models.cluster import ClusterLinear
from pyexport.models.cluster_basis import ClusterBasis
from pyexport.structures import cspbbr3, displaced, mode_pattern, rattled

REPO = Path(__file__).resolve().parents[1]
VASPRUN = REPO / "tests" / "data" / "dpdata" / "vasprun.h2o.md.10.xml"
ELEMENTS = ["Br", "Cs", "Pb"]  # what `fit` picks: ordered by atomic number
TINY = ClusterBasis.preset("tiny", cutoff=5.0)


pytestmark = pytest.mark.usefixtures("one_thread")


def _label(truth, atoms):
    return labelled_by(truth, atoms, ELEMENTS, TINY.cutoff)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """truth.pt, data.xyz (14 labelled rattled CsPbBr3 cells), POSCAR of the cubic 2x2x2 cell."""
    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    truth = ClusterLinear(len(ELEMENTS), TINY)
    with torch.no_grad():
        truth.coef.normal_(0.0, 1e-3)
        truth.coef[:, :12] = -0.02  # attractive 2-body terms keep the energies physical-looking
        truth.e0.copy_(torch.tensor([-2.0, -3.0, -4.0]))
    export_model(PotentialModule(truth, ELEMENTS, TINY.cutoff), root / "truth.pt")
    frames = []
    for seed in range(14):
        atoms = rattled(cspbbr3(), 0.04 + 0.01 * (seed % 6), seed)
        atoms.set_cell(atoms.cell.array * (1.0 + 0.01 * ((seed % 3) - 1)), scale_atoms=True)
        frames.append(_label(truth, atoms))
    ase.io.write(root / "data.xyz", frames, format="extxyz")
    ase.io.write(root / "POSCAR", cspbbr3(), format="vasp", direct=True)
    return {"root": root, "truth": truth, "data": str(root / "data.xyz"), "truth_pt": str(root / "truth.pt"),
            "poscar": str(root / "POSCAR")}


@pytest.fixture(scope="module")
def fitted(work):
    ckpt = str(work["root"] / "model.ckpt")
    rc = main(["fit", work["data"], "--basis", "tiny", "--cutoff", "5.0", "--split", "0.7,0.15,0.15",
               "--lambdas", "1e-14:1e-6:5", "-o", ckpt, "--no-progress"])
    assert rc == 0
    return ckpt


def test_fit_writes_checkpoint_and_metrics(work, fitted):
    ckpt = load_checkpoint(fitted)
    assert ckpt["model_type"] == "cluster" and ckpt["elements"] == ELEMENTS and ckpt["cutoff"] == 5.0
    assert ckpt["data_hash"] == hashlib.sha256(hashlib.sha256(Path(work["data"]).read_bytes()).digest()).hexdigest()
    with open(os.path.splitext(fitted)[0] + ".metrics.json") as fh:
        metrics = json.load(fh)
    assert metrics["fit"]["split_sizes"] == {"train": 10, "val": 2, "test": 2}
    assert metrics["lambda"] in [float(x) for x in np.logspace(-14, -6, 5)]
    # same basis as the truth: the held-out structures are reproduced almost exactly
    assert metrics["test"]["energy_rmse_meV_per_atom"] < 1e-3
    assert metrics["test"]["forces_rmse_meV_per_A"] < 1e-2
    assert metrics["test"]["stress_rmse_GPa"] < 1e-5
    for split in ("train", "val", "test"):
        assert {"energy_mae_meV_per_atom", "forces_mae_meV_per_A", "stress_mae_GPa"} <= set(metrics[split])


def test_export_inspect_and_round_trip(work, fitted, capsys):
    out = str(work["root"] / "model.pt")
    assert main(["export", fitted, "-o", out]) == 0
    module, meta = load_model(out, kind="potential")
    ckpt = load_checkpoint(fitted)
    assert meta["elements"] == ELEMENTS and meta["cutoff"] == 5.0 and meta["dtype"] == "float64"
    assert meta["contract_version"] == 1 and meta["model_type"] == "cluster"
    assert meta["data_hash"] == ckpt["data_hash"] and meta["package_version"] == pyexport.__version__
    assert meta["metrics"]["test"]["n_structures"] == 2
    assert meta["hyperparameters"]["basis"]["n_radial_2"] == 4
    # the file equals the in-memory model
    eager = potential_from_checkpoint(ckpt)
    inputs = build_inputs(ase.io.read(work["data"], index=3), 5.0, ELEMENTS)
    a, b = eager(*inputs.as_args()), module(*inputs.as_args())
    for key in ("energy", "forces", "virial", "atom_virial"):
        assert torch.abs(a[key] - b[key]).max() <= 1e-12

    capsys.readouterr()
    assert main(["inspect", out]) == 0
    text = capsys.readouterr().out
    assert "contract_version" in text and "['Br', 'Cs', 'Pb']" in text and "test" in text
    assert main(["inspect", fitted, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["type"] == "checkpoint" and info["summary"]["model_type"] == "cluster"

    out32 = str(work["root"] / "model32.pt")
    assert main(["export", fitted, "-o", out32, "--dtype", "float32"]) == 0
    module32, meta32 = load_model(out32)
    assert meta32["dtype"] == "float32"
    f32 = module32(*inputs.as_args())["forces"]
    assert f32.dtype == torch.float64
    assert torch.abs(f32 - a["forces"]).max() < 1e-4 * torch.abs(a["forces"]).max()


def test_eval_matches_in_process_predictions(work, fitted, tmp_path):
    model_pt = str(tmp_path / "m.pt")
    assert main(["export", fitted, "-o", model_pt]) == 0
    out, png = tmp_path / "eval.json", tmp_path / "parity.png"
    assert main(["eval", model_pt, work["data"], "-o", str(out), "--plot", str(png)]) == 0
    metrics = json.loads(out.read_text())
    structures = read_structures([work["data"]])
    items = prepare(structures, ELEMENTS, 5.0)
    pred = predict(model_from_checkpoint(load_checkpoint(fitted)), items)
    de = np.array([(float(pred["energy"][k]) - it.energy) / it.n_atoms for k, it in enumerate(items)]) * 1000
    df = torch.cat([f - it.forces for f, it in zip(pred["forces"], items)]).numpy() * 1000
    assert metrics["n_structures"] == 14 and metrics["n_stress"] == 14
    assert math.isclose(metrics["energy_rmse_meV_per_atom"], np.sqrt(np.mean(de ** 2)), rel_tol=1e-6, abs_tol=1e-9)
    assert math.isclose(metrics["forces_mae_meV_per_A"], np.mean(np.abs(df)), rel_tol=1e-6, abs_tol=1e-9)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scan_against_reference_model_and_reference_data(work, fitted, tmp_path):
    model_pt = str(tmp_path / "m.pt")
    assert main(["export", fitted, "-o", model_pt]) == 0
    out = tmp_path / "scan.json"
    assert main(["scan", model_pt, "--structure", work["poscar"], "--mode", "R-tilt", "--amplitudes=-0.4:0.4:9",
                 "--reference", work["truth_pt"], "-o", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["formula_units"] == 8 and len(result["model"]["amplitude_A"]) == 9
    assert result["model"]["energy_meV_per_fu"][4] == 0.0  # relative to amplitude 0
    assert result["rms_difference_meV_per_fu"] < 1e-3
    assert (tmp_path / "scan.png").read_bytes()[:4] == b"\x89PNG"

    # reference data on the mode: amplitudes are found by projection, energies are the labels
    cubic = ase.io.read(work["poscar"])
    pattern = mode_pattern(cubic, "R-tilt")
    amplitudes = [-0.3, -0.1, 0.0, 0.2, 0.35]
    ase.io.write(tmp_path / "ref.xyz", [_label(work["truth"], displaced(cubic, pattern, a)) for a in amplitudes],
                 format="extxyz")
    out2 = tmp_path / "scan_data.json"
    assert main(["scan", model_pt, "--structure", work["poscar"], "--mode", "a0a0c-", "--amplitudes", "0,0.2",
                 "--reference", str(tmp_path / "ref.xyz"), "-o", str(out2)]) == 0
    ref = json.loads(out2.read_text())["reference"]
    assert ref["kind"] == "data" and np.allclose(ref["amplitude_A"], amplitudes, atol=1e-10)
    truth_curve = result["reference"]
    k = int(np.argmin(np.abs(np.array(truth_curve["amplitude_A"]) - 0.2)))
    assert max(abs(e) for e in truth_curve["energy_meV_per_fu"]) > 0.3  # the tilt costs energy
    assert math.isclose(ref["energy_meV_per_fu"][3], truth_curve["energy_meV_per_fu"][k], rel_tol=1e-9)

    # an (N, 3) pattern file scans the same curve as the built-in mode
    np.save(tmp_path / "tilt.npy", 2.0 * pattern)
    out3 = tmp_path / "scan_file.json"
    assert main(["scan", model_pt, "--structure", work["poscar"], "--mode-file", str(tmp_path / "tilt.npy"),
                 "--amplitudes=-0.4:0.4:9", "-o", str(out3)]) == 0
    assert np.allclose(json.loads(out3.read_text())["model"]["energy_eV"], result["model"]["energy_eV"], atol=1e-10)


def test_fit_cluster_nn_from_config_file(work, tmp_path):
    config = tmp_path / "fit.toml"
    config.write_text(f'data = ["{work["data"]}"]\nmodel = "cluster-nn"\nbasis = "tiny"\ncutoff = 5.0\n'
                      'hidden = "8"\nepochs = 2\nbatch-atoms = 80\nsplit = "0.7,0.15,0.15"\n')
    ckpt = str(tmp_path / "nn.ckpt")
    # flags override the config file: cutoff 4.5 instead of 5.0
    assert main(["fit", "--config", str(config), "--cutoff", "4.5", "-o", ckpt, "--no-progress"]) == 0
    loaded = load_checkpoint(ckpt)
    assert loaded["model_type"] == "cluster-nn" and loaded["cutoff"] == 4.5
    assert loaded["hyperparameters"]["hidden"] == [8]
    assert loaded["fit"]["nn"]["epochs_run"] == 2
    assert "linear_start" in loaded["metrics"]
    out = str(tmp_path / "nn.pt")
    assert main(["export", ckpt, "-o", out]) == 0
    module, meta = load_model(out)
    assert meta["model_type"] == "cluster-nn"
    inputs = build_inputs(ase.io.read(work["data"], index=0), 4.5, ELEMENTS)
    a, b = potential_from_checkpoint(loaded)(*inputs.as_args()), module(*inputs.as_args())
    assert torch.abs(a["forces"] - b["forces"]).max() <= 1e-12


def test_fit_on_real_vasp_md(tmp_path):
    ckpt = str(tmp_path / "h2o.ckpt")
    assert main(["fit", str(VASPRUN), "--basis", "tiny", "--cutoff", "4.0", "--split", "0.6,0.2,0.2",
                 "-o", ckpt, "--no-progress"]) == 0
    loaded = load_checkpoint(ckpt)
    assert loaded["elements"] == ["H", "O"]
    frames = read_structures([str(VASPRUN)])
    e = np.array([s.energy / s.n_atoms for s in frames]) * 1000
    train = loaded["metrics"]["train"]
    assert train["n_structures"] == 6 and train["n_stress"] == 6
    # the fit explains the training energies far better than their spread
    assert train["energy_rmse_meV_per_atom"] < 0.1 * e.std()


def test_max_atoms_leaves_out_the_large_structures(work, fitted, tmp_path, capsys):
    """--max-atoms drops the structures above it before the split: the 14 small cells with two
    80-atom cells between them fit to the same model as the 14 alone."""
    frames = ase.io.read(work["data"], ":")
    big = [_label(work["truth"], rattled(cspbbr3(repeat=(4, 2, 2)), 0.05, seed)) for seed in (1, 2)]
    mixed = tmp_path / "mixed.xyz"
    ase.io.write(mixed, frames[:5] + big[:1] + frames[5:] + big[1:], format="extxyz")
    ckpt = str(tmp_path / "small_only.ckpt")
    assert main(["fit", str(mixed), "--max-atoms", "40", "--basis", "tiny", "--cutoff", "5.0",
                 "--split", "0.7,0.15,0.15", "--lambdas", "1e-14:1e-6:5", "-o", ckpt, "--no-progress"]) == 0
    assert "14 of 16 structures used, 2 larger ones left out" in capsys.readouterr().out
    only, reference = load_checkpoint(ckpt), load_checkpoint(fitted)
    assert only["metrics"]["max_atoms"] == 40 and only["metrics"]["n_structures"] == 14
    assert reference["metrics"]["max_atoms"] is None and reference["metrics"]["n_structures"] == 14
    assert {k: len(v) for k, v in only["fit"]["split_sources"].items()} == \
        {k: len(v) for k, v in reference["fit"]["split_sources"].items()}
    torch.testing.assert_close(only["state_dict"]["coef"], reference["state_dict"]["coef"], rtol=0, atol=1e-12)
    assert main(["fit", str(mixed), "--max-atoms", "39", "--basis", "tiny", "-o", ckpt, "--no-progress"]) == 1
    assert "max_atoms = 39 leaves no structure (the smallest has 40 atoms)" in capsys.readouterr().err


def test_errors_name_the_culprit(work, tmp_path, capsys):
    missing = str(tmp_path / "nope.xml")
    assert main(["fit", missing, "--no-progress"]) == 1
    assert "nope.xml" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"basis": "tiny", "learning_rat": 0.1}))
    assert main(["fit", work["data"], "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad.json" in err and "learning_rat" in err
    assert main(["export", work["data"], "-o", str(tmp_path / "x.pt")]) == 1
    assert "data.xyz" in capsys.readouterr().err
    ase.io.write(tmp_path / "POSCAR1", cspbbr3(repeat=(1, 1, 1)), format="vasp")
    assert main(["scan", work["truth_pt"], "--structure", str(tmp_path / "POSCAR1"), "--mode", "R-tilt"]) == 1
    assert "cannot carry" in capsys.readouterr().err


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "pyexport", "--version"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"pyexport {pyexport.__version__}"


def test_mode_patterns_are_rigid_octahedron_rotations_and_polar_keeps_the_centre_of_mass():
    from ase.data import atomic_masses

    from pyexport.octahedra import find_octahedra

    atoms = cspbbr3(a=6.0)
    octa = find_octahedra(atoms)
    assert (octa.b_symbol, octa.x_symbol) == ("Pb", "Br") and len(octa.b) == 8
    z = np.array([0.0, 0.0, 1.0])
    centres = atoms.positions[octa.b]
    for mode, alternates_along_z in (("R-tilt", True), ("M-tilt", False)):
        pattern = mode_pattern(atoms, mode)
        moving = np.linalg.norm(pattern, axis=1) > 1e-12
        assert set(np.array(atoms.get_chemical_symbols())[moving]) == {"Br"} and moving.sum() == 16
        assert np.allclose(np.linalg.norm(pattern[moving], axis=1), 1.0)  # amplitude = Br displacement
        # each octahedron rotates rigidly about z: every one of its Br moves by s n x (r_Br - r_Pb)
        signs = []
        for k in range(8):
            bonds = octa.bonds(atoms)[k]
            rotation = np.cross(z, bonds) / np.linalg.norm(bonds, axis=1, keepdims=True)
            sign = np.sign(np.sum(pattern[octa.ligands[k]] * rotation))
            assert np.allclose(pattern[octa.ligands[k]], sign * rotation, atol=1e-12)
            signs.append(sign)
        # neighbours along x rotate oppositely; along z oppositely for R (out of phase), alike for M
        def neighbour(k, shift):
            return next(j for j in range(8)
                        if np.allclose((centres[j] - centres[k] - shift + 6.0) % 12.0 - 6.0, 0.0))

        assert all(signs[k] != signs[neighbour(k, [6.0, 0, 0])] for k in range(8))
        assert all((signs[k] != signs[neighbour(k, [0, 0, 6.0])]) == alternates_along_z for k in range(8))
    assert np.allclose(np.linalg.norm(mode_pattern(atoms, "R-tilt-111")[atoms.numbers == 35], axis=1), 1.0)
    polar = mode_pattern(atoms, "polar", axis="x")
    masses = atomic_masses[atoms.numbers]
    assert np.allclose(masses @ polar, 0.0, atol=1e-10) and np.allclose(polar[atoms.numbers == 82], [1, 0, 0])
