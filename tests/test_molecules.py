"""Molecular reorientation (efg.molecules) and its place in efg analyze / scan / compare:
synthetic trajectories whose answer is known — isotropic rotational diffusion (C1 = exp(−2 D_r t),
C2 = exp(−6 D_r t)), molecules locked in place, axes flipping between u and −u — and MAPbI3-like
LAMMPS dumps (Pb, I, C, N) analysed end to end, serial and under mpirun."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from pyexport import nmr
from efg.analyze import analyze
from efg.compare_report import write_report
from efg.molecules import (DECORRELATED_BELOW, axis_vectors, find_molecular_axes,
                           reorientation_correlation)
from efg.temperature_scan import BOLTZMANN_MEV_PER_K, scan

REPO = Path(__file__).resolve().parents[1]
CN_HALF_A = 0.74                 # half the C–N bond of methylammonium (Å)


def random_units(rng, n):
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def rotational_walk(n_frames, n_mol, d_r_per_ps, frame_dt_ps, rng, substeps=4):
    """Unit vectors (n_frames, n_mol, 3) under isotropic rotational diffusion: each substep
    rotates every vector about a random axis by a Gaussian rotation vector of variance
    2 D_r h per component (Rodrigues' formula, exact rotations)."""
    u = random_units(rng, n_mol)
    out = np.empty((n_frames, n_mol, 3))
    out[0] = u
    h = frame_dt_ps / substeps
    for f in range(1, n_frames):
        for _ in range(substeps):
            w = rng.normal(scale=np.sqrt(2.0 * d_r_per_ps * h), size=(n_mol, 3))
            angle = np.linalg.norm(w, axis=1, keepdims=True)
            k = w / angle
            u = (u * np.cos(angle) + np.cross(k, u) * np.sin(angle)
                 + k * (k * u).sum(axis=1, keepdims=True) * (1.0 - np.cos(angle)))
        out[f] = u
    return out


# ------------------------------------------------------------------------------------------
# Correlation functions and times
# ------------------------------------------------------------------------------------------
def test_fft_sums_equal_direct_sums():
    rng = np.random.default_rng(0)
    u = np.stack([random_units(rng, 3) for _ in range(40)])               # (40, 3, 3)
    corr = reorientation_correlation(u, max_lag=39)
    for t in (0, 1, 7, 39):
        dots = np.einsum("smk,smk->sm", u[: 40 - t], u[t:])                # all origins, all molecules
        assert abs(corr["C1"]["value"][t] - dots.mean()) <= 1e-12
        assert abs(corr["C2"]["value"][t] - (1.5 * dots ** 2 - 0.5).mean()) <= 1e-12
    assert corr["time_unit"] == "frames" and corr["lag"][:3] == [0.0, 1.0, 2.0]


def test_rotational_diffusion_gives_known_times():
    d_r, dt = 0.1, 0.1                                # ps⁻¹, ps: τ1 = 5 ps, τ2 = 5/3 ps
    u = rotational_walk(1000, 64, d_r, dt, np.random.default_rng(2))
    corr = reorientation_correlation(u, dt)
    assert corr["time_unit"] == "ps" and corr["n_molecules"] == 64
    for name, rate, tau_true in (("1", 2 * d_r, 5.0), ("2", 6 * d_r, 5.0 / 3.0)):
        tau = corr[f"tau{name}"]
        assert tau["decorrelated"] and 0 < tau["error"] < 0.1 * tau_true
        assert abs(tau["value"] - tau_true) <= 4 * tau["error"], (name, tau)
        assert abs(tau["plateau"]) <= 4 * tau["plateau_error"] + 0.01
        lag = np.array(corr["lag"])
        for t in (0.5, 1.0, 2.0):
            k = int(round(t / dt))
            c, e = corr[f"C{name}"]["value"][k], corr[f"C{name}"]["error"][k]
            assert abs(c - np.exp(-rate * lag[k])) <= 4 * e + 1e-3
    t1, t2 = corr["tau1"], corr["tau2"]
    ratio = t1["value"] / t2["value"]
    ratio_error = ratio * np.hypot(t1["error"] / t1["value"], t2["error"] / t2["value"])
    assert abs(ratio - 3.0) <= 4 * ratio_error and ratio_error < 0.3


def test_exponential_correlation_time_is_exact():
    """On C(t) = exp(−t/τ) itself the definition returns τ (trapezoid error only)."""
    from efg.molecules import correlation_time
    lag = np.arange(400) * 0.05
    for tau in (0.7, 2.0, 5.0):
        assert abs(correlation_time(lag, np.exp(-lag / tau)) - tau) <= 1e-3 * tau
    assert np.isnan(correlation_time(lag, 0.5 + 0.5 * np.exp(-lag)))       # levels off at 0.5


def test_locked_molecules_report_plateau_not_a_time():
    """Molecules wobbling by ~15° about fixed orientations: C1 and C2 level off; no τ."""
    rng = np.random.default_rng(3)
    n_frames, n_mol = 600, 32
    home = random_units(rng, n_mol)
    u = home[None] + 0.25 * rng.normal(size=(n_frames, n_mol, 3))
    u /= np.linalg.norm(u, axis=2, keepdims=True)
    corr = reorientation_correlation(u, 0.1)
    expected_c1 = (np.linalg.norm(u.mean(axis=0), axis=1) ** 2).mean()        # |⟨u⟩|² per molecule
    for name in ("1", "2"):
        tau = corr[f"tau{name}"]
        assert not tau["decorrelated"] and tau["value"] is None and tau["error"] is None
        assert tau["plateau"] > 0.5
    assert abs(corr["tau1"]["plateau"] - expected_c1) <= 0.01
    assert 0.8 < expected_c1 < 0.95


def test_axis_flips_decorrelate_c1_but_not_c2():
    """Axes jumping between +z and −z (probability p per frame): C1(n) = (1 − 2p)^n, so
    τ1 = −1/ln(1 − 2p) frames; C2 = 1 at every lag (P2 cannot tell u from −u)."""
    rng = np.random.default_rng(4)
    p, n_frames, n_mol = 0.05, 4000, 32
    flips = rng.random((n_frames, n_mol)) < p
    flips[0] = False
    sign = np.where(np.cumsum(flips, axis=0) % 2 == 0, 1.0, -1.0)
    u = sign[..., None] * np.array([0.0, 0.0, 1.0])
    corr = reorientation_correlation(u, max_lag=200)
    tau1 = corr["tau1"]
    expected = -1.0 / np.log(1.0 - 2.0 * p)
    assert tau1["decorrelated"] and abs(tau1["value"] - expected) <= 4 * tau1["error"]
    assert tau1["error"] < 0.1 * expected
    assert not corr["tau2"]["decorrelated"]
    assert np.abs(np.array(corr["C2"]["value"]) - 1.0).max() <= 1e-12
    assert abs(corr["tau2"]["plateau"] - 1.0) <= 1e-12


# ------------------------------------------------------------------------------------------
# Finding the molecules
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["cubic", "triclinic"])
def test_molecules_found_across_the_cell_boundary(cell):
    a = 6.3
    vectors = np.eye(3) * a if cell == "cubic" else np.array([[a, 0, 0], [0.9, a, 0], [0.5, -0.7, a]])
    direction = np.array([-0.6, 0.48, 0.64])                                  # unit vector
    centres = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]]) @ vectors         # one on a corner
    carbon = centres - CN_HALF_A * direction
    nitrogen = centres + CN_HALF_A * direction
    # N first, C in reverse order: pairing must not depend on the order of the atoms
    atoms = Atoms("N2C2", positions=np.concatenate([nitrogen, carbon[::-1]]), cell=vectors, pbc=True)
    atoms.wrap()
    pairs = find_molecular_axes(atoms)
    assert pairs.tolist() == [[2, 1], [3, 0]]
    u = axis_vectors(atoms, pairs, max_bond_A=1.8)
    assert np.abs(u - direction).max() <= 1e-12
    moved = atoms.copy()
    moved.positions[1] += [0.0, 0.0, 1.5]                                      # that molecule breaks
    with pytest.raises(ValueError, match=r"molecule 0 \(atoms 2 → 1\) is 2\.\d+ Å long, more than 1\.8 Å"):
        axis_vectors(moved, pairs, max_bond_A=1.8)


def test_bad_molecules_name_the_atoms():
    cell = np.eye(3) * 10.0
    lonely = Atoms("CNCN", positions=[[1, 1, 1], [1, 1, 2.47], [5, 5, 5], [5, 5, 7.1]], cell=cell, pbc=True)
    with pytest.raises(ValueError, match=r"C 2 has none \(nearest N 3 at 2\.100 Å > 1\.8 Å\)") as info:
        find_molecular_axes(lonely)
    assert "N 3 has none (nearest C 2 at 2.100 Å" in str(info.value)
    crowded = Atoms("CNN", positions=[[1, 1, 1], [1, 1, 2.47], [1, 1, -0.4]], cell=cell, pbc=True)
    with pytest.raises(ValueError, match=r"C 0 has 2: N 1 at 1\.470 Å, N 2 at 1\.400 Å"):
        find_molecular_axes(crowded)
    with pytest.raises(ValueError, match="no molecular axis C-N: the structure has 0 C"):
        find_molecular_axes(Atoms("N", cell=cell, pbc=True))


# ------------------------------------------------------------------------------------------
# efg analyze / scan / compare on MAPbI3-like dumps
# ------------------------------------------------------------------------------------------
A_PC = 6.3                          # Å
REPS = 3
FRAME_DT_PS, STEPS_PER_FRAME = 0.15, 75
TAU2_200K_PS, E_A_MEV = 3.0, 40.0
TC_C_OVER_A = 330.0


def tau2_true(T):
    return TAU2_200K_PS * np.exp(E_A_MEV / BOLTZMANN_MEV_PER_K * (1.0 / T - 1.0 / 200.0))


def c_over_a_true(T):
    return 1.0 + 0.03 * np.sqrt(max(0.0, 1.0 - T / TC_C_OVER_A))


def write_mapbi3_dump(path, axes, c_over_a, rng):
    """Cubic-perovskite PbI3 frames with a molecule C–N of axis ``axes[f, m]`` at every A site
    (the cell corners, so molecules straddle the boundaries), lattice a, a, c = a·c_over_a with
    0.1 % noise per frame, random EFG columns; element column, timesteps 75 apart."""
    grid = np.stack(np.meshgrid(*[np.arange(REPS)] * 3, indexing="ij"), -1).reshape(-1, 3).astype(float)
    pb = grid + 0.5
    iodine = np.concatenate([pb + 0.5 * np.eye(3)[k] for k in range(3)])
    symbols = ["Pb"] * len(pb) + ["I"] * len(iodine) + ["C"] * len(grid) + ["N"] * len(grid)
    lines = []
    for f, u in enumerate(axes):
        lengths = A_PC * REPS * np.array([1.0, 1.0, c_over_a]) * (1.0 + 1e-3 * rng.normal(size=3))
        step = lengths / REPS
        positions = np.concatenate([pb * step, iodine * step, grid * step - CN_HALF_A * u,
                                    grid * step + CN_HALF_A * u])
        positions = np.mod(positions, lengths)
        v = rng.normal(size=(len(symbols), 3, 3)) * 10.0
        v = 0.5 * (v + v.transpose(0, 2, 1))
        v -= np.eye(3) * np.trace(v, axis1=1, axis2=2)[:, None, None] / 3.0
        v6 = nmr.to_voigt6(v)
        lines += ["ITEM: TIMESTEP", str(STEPS_PER_FRAME * f), "ITEM: NUMBER OF ATOMS", str(len(symbols)),
                  "ITEM: BOX BOUNDS pp pp pp"] + [f"0 {x:.10f}" for x in lengths]
        lines.append("ITEM: ATOMS id element x y z " + " ".join(f"c_efg[{k}]" for k in range(1, 7)))
        lines += [f"{i + 1} {s} {x:.8f} {y:.8f} {z:.8f} " + " ".join(f"{c:.8f}" for c in row)
                  for i, (s, (x, y, z), row) in enumerate(zip(symbols, positions, v6))]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Five temperatures, 100-500 K: τ2 Arrhenius (3 ps at 200 K, 40 meV), c/a → 1 at 330 K."""
    d = tmp_path_factory.mktemp("mapbi3")
    files = {}
    for T in (100.0, 200.0, 300.0, 400.0, 500.0):
        rng = np.random.default_rng(int(T))
        d_r = 1.0 / (6.0 * tau2_true(T))
        axes = rotational_walk(400, REPS ** 3, d_r, FRAME_DT_PS, rng)
        dump = d / f"md_{T:.0f}K.dump"
        write_mapbi3_dump(dump, axes, c_over_a_true(T), rng)
        out = d / f"run_{T:.0f}K.json"
        analyze(dump, temperature=T, md_timestep_ps=FRAME_DT_PS / STEPS_PER_FRAME, output=out, progress=False)
        files[T] = out
    return d, files


def test_analyze_reports_reorientation(runs):
    d, files = runs
    report = json.loads(files[500.0].read_text())
    mol = report["molecules"]
    assert mol["axis"] == "C->N" and mol["n_molecules"] == REPS ** 3 and mol["time_unit"] == "ps"
    assert abs(mol["frame_dt_ps"] - FRAME_DT_PS) <= 1e-12 and mol["steps_per_frame"] == STEPS_PER_FRAME
    tau2 = mol["tau2_ps"]
    assert tau2["decorrelated"] and abs(tau2["value"] - tau2_true(500.0)) <= 4 * tau2["error"]
    assert len(mol["C2"]["lag_ps"]) == len(mol["C2"]["value"]) == 201
    assert (d / report["reorientation_png"]).stat().st_size > 1000
    assert report["perovskite"] == {"B": "Pb", "X": "I", "repeats": [3, 3, 3]}
    cold = json.loads(files[100.0].read_text())["molecules"]["tau2_ps"]
    assert not cold["decorrelated"] and cold["value"] is None and cold["plateau"] > DECORRELATED_BELOW
    # the same frames without the MD time step: times in frames, the same numbers / frame_dt
    frames = analyze(d / "md_500K.dump", progress=False)["molecules"]
    assert frames["time_unit"] == "frames" and "no --md-timestep" in frames["note"]
    assert abs(frames["tau2_frames"]["value"] * FRAME_DT_PS - tau2["value"]) <= 1e-9 * tau2["value"]
    assert "molecules" not in analyze(d / "md_500K.dump", index=":20", progress=False, molecule_axis="none")
    with pytest.raises(ValueError, match=r"--molecule-axis 'C-H': no H atoms in the dump"):
        analyze(d / "md_500K.dump", progress=False, molecule_axis="C-H")


def test_analyze_stops_at_a_broken_molecule(tmp_path):
    rng = np.random.default_rng(5)
    dump = tmp_path / "broken.dump"
    write_mapbi3_dump(dump, rotational_walk(8, REPS ** 3, 0.05, FRAME_DT_PS, rng), 1.0, rng)
    lines = dump.read_text().splitlines()
    row = [i for i, line in enumerate(lines) if line == "ITEM: TIMESTEP"][5] + 9 + 161   # last N, frame 5
    fields = lines[row].split()
    fields[2] = f"{float(fields[2]) + 1.0:.8f}"
    lines[row] = " ".join(fields)
    dump.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"broken.dump: frame 5 \(timestep 375\): molecule 26 \(atoms 134 → 161\) "
                                         r"is 1\.\d+ Å long, more than 1\.8 Å"):
        analyze(dump, progress=False)


def test_mpi_analyze_of_molecules_equals_serial(runs, tmp_path):
    d, _ = runs
    outputs = {}
    for n in (1, 2):
        out = tmp_path / f"np{n}.json"
        cmd = [sys.executable, "-m", "efg", "analyze", "--dump", str(d / "md_300K.dump"), "--temperature", "300",
               "--md-timestep", str(FRAME_DT_PS / STEPS_PER_FRAME), "--molecule-axis", "C-N", "-o", str(out),
               "--no-progress"]
        if n > 1:
            cmd = [str(Path(sys.prefix) / "bin" / "mpirun"), "-np", "2"] + cmd
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "molecules (27 C->N axes): tau2 = " in proc.stdout
        report = json.loads(out.read_text())
        for key in ("wall_time_s", "tensors_file", "histogram_png", "reorientation_png", "nqr_png"):   # names, time
            report.pop(key)
        outputs[n] = report
    assert outputs[1]["molecules"]["tau2_ps"]["decorrelated"]
    assert outputs[1] == outputs[2]


def test_scan_gives_arrhenius_reorientation_and_c_over_a(runs, tmp_path):
    d, files = runs
    report = scan(list(files.values()), tmp_path / "scan.json")
    curves = report["curves"]
    tau2 = curves["molecules:tau2_ps"]
    assert tau2["value"][0] is None                                  # 100 K: locked within the run
    fit = tau2["transition"]
    assert fit["fitted"] and fit["excluded"] == [{"temperature_K": 100.0, "reason": "not decorrelated within the run"}]
    assert fit["temperatures_used_K"] == [200.0, 300.0, 400.0, 500.0]
    assert abs(fit["activation_energy_meV"] - E_A_MEV) <= 4 * fit["activation_energy_error_meV"]
    assert fit["activation_energy_error_meV"] < 10.0
    tau1_fit = report["reorientation"]["tau1_ps"]                  # τ1 = 3 τ2: the same E_a
    assert tau1_fit["fitted"]
    assert abs(tau1_fit["activation_energy_meV"] - E_A_MEV) <= 4 * tau1_fit["activation_energy_error_meV"]
    ratio = curves["structure:c_over_a"]
    assert ratio["unique_axis"] == "c"
    for T, value, error in zip(ratio["temperature_K"], ratio["value"], ratio["error"]):
        assert 0 < error < 2e-3 and abs(value - c_over_a_true(T)) <= 4 * error
    tc = report["c_over_a_transition_K"]
    assert tc["significant"] and tc["unique_axis"] == "c"
    assert abs(tc["tc_K"] - TC_C_OVER_A) <= max(2 * tc["tc_error_K"], 50.0)
    assert "scan_molecules.png" in report["plots"]
    for png in report["plots"]:
        assert (tmp_path / png).stat().st_size > 1000
    saved = json.loads((tmp_path / "scan.json").read_text())        # strict JSON: no NaN
    assert saved["curves"]["molecules:tau2_ps"]["value"][0] is None
    # the report of efg compare carries both
    harmonic = {"structure": {"formula": "CH6NPbI3", "space_group": "Pm-3m"}, "inputs": {}}
    text = write_report(tmp_path, [harmonic], [], saved, [], [], {}, z_threshold=3.0)
    assert "## Molecular reorientation (C->N axes)" in text
    assert "| 100 | not decorrelated | not decorrelated |" in text
    assert f"- τ2: Arrhenius E_a = {fit['activation_energy_meV']:.1f} ± " in text
    assert f"- c/a (c = c) goes to 1 at {tc['tc_K']:.0f} ± {tc['tc_error_K']:.0f} K." in text


def test_scan_of_runs_where_no_molecule_decorrelated(runs, tmp_path):
    """Every run locked (e.g. short runs below the rotor transition): no τ, no Arrhenius fit,
    and the reorientation plot is still drawn (no log axis of nothing)."""
    d, files = runs
    cold = json.loads(files[100.0].read_text())
    second = dict(cold, temperature_K=150.0)
    path = tmp_path / "run_150K.json"
    path.write_text(json.dumps(second))
    report = scan([files[100.0], path], tmp_path / "scan.json")
    assert report["curves"]["molecules:tau2_ps"]["value"] == [None, None]
    assert not report["reorientation"]["tau2_ps"]["fitted"]
    assert (tmp_path / "scan_molecules.png").stat().st_size > 1000
