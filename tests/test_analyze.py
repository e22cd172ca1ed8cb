"""efg analyze: LAMMPS dumps → per-site / per-species NMR parameters, in-situ vs post-processed
EFG, motional averaging, MPI = serial, perovskite tilt order parameters."""
import json
import subprocess
import sys

import numpy as np
import pytest
from ase import Atoms

from contract_models import export, many_body_module, point_charge_efg_module
from lammps_run import run_lammps
from pyexport.lammps.data_file import write_lammps_data
from test_pair_mlff import HEADER, TYPE_ORDER, perovskite

from pyexport import nmr
from pyexport.octahedra import find_octahedra
from efg.analyze import analyze
from efg.statistics import estimate, integrated_autocorrelation_time
from efg.tilts import tilt_order_parameters

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def md_dump(tmp_path_factory):
    """A short LAMMPS NVT run of CsPbBr3 with pair_style mlff, dumping positions and the in-situ
    compute efg/atom columns every 5 steps."""
    wd = tmp_path_factory.mktemp("md")
    pot = export(many_body_module(), wd / "pot.pt")
    efg = export(point_charge_efg_module(), wd / "efg.pt")
    atoms = perovskite(reps=(2, 2, 2), shear=(0, 0, 0), rattle=0.05, seed=5)
    write_lammps_data(wd / "data.lmp", atoms, TYPE_ORDER)
    run_lammps(HEADER + f"""pair_style mlff
pair_coeff * * {pot} Br Cs Pb
compute efg all efg/atom {efg} Br Cs Pb
velocity all create 300 4711 loop geom
fix nvt all nvt temp 300 300 0.1
timestep 0.002
dump d all custom 5 md.dump id type x y z vx vy vz c_efg[*]
dump_modify d format float %.17g
run 200
""", wd)
    return wd, efg


def test_in_situ_compute_equals_post_processing(md_dump):
    wd, efg_model = md_dump
    from_columns = analyze(wd / "md.dump", types="Br,Cs,Pb", isotopes={"Br": "79Br"}, progress=False)
    assert from_columns["efg_source"] == "dump columns c_efg[1..6]"
    # the same frames without the columns, evaluated by the model
    lines = (wd / "md.dump").read_text().splitlines()
    stripped = []
    for line in lines:
        parts = line.split()
        if line.startswith("ITEM: ATOMS"):
            stripped.append(" ".join(parts[:10]))
        elif len(parts) == 14:
            stripped.append(" ".join(parts[:8]))
        else:
            stripped.append(line)
    (wd / "positions.dump").write_text("\n".join(stripped) + "\n")
    from_model = analyze(wd / "positions.dump", model=efg_model, types="Br,Cs,Pb", isotopes={"Br": "79Br"},
                         progress=False, output=wd / "run.json")
    assert from_model["efg_source"] == "model" and from_model["n_frames"] == 41
    a = np.load(wd / "run.npz")["efg_V_per_A2"]
    b = np.stack([nmr.from_voigt6(np.stack([f.arrays[f"c_efg[{k}]"] for k in range(1, 7)], 1))
                  for f in __import__("pyexport.lammps.dump", fromlist=["iread"]).iread(wd / "md.dump", types="Br,Cs,Pb".split(","))])
    assert np.abs(a - b).max() <= 1e-10
    assert np.abs(a).max() > 0.1
    sa, sb = from_model["species"]["Br"], from_columns["species"]["Br"]
    assert abs(sa["cq_of_mean_tensor_mhz"]["value"] - sb["cq_of_mean_tensor_mhz"]["value"]) <= 1e-10
    assert sa["isotope"] == "79Br" and from_model["species"]["Cs"]["isotope"] == "133Cs"
    assert from_model["species"]["Pb"]["isotope"] is None
    assert (wd / "run_hist.png").stat().st_size > 1000
    report = json.loads((wd / "run.json").read_text())
    assert report["perovskite"] == {"B": "Pb", "X": "Br", "repeats": [2, 2, 2]}
    assert 5.0 < report["structure"]["lattice_pc_A"]["value"][0] < 6.5


def positions_only_dump(source, target):
    """``source`` dump with only id type x y z (no velocities, no EFG columns)."""
    out = []
    for line in source.read_text().splitlines():
        parts = line.split()
        if line.startswith("ITEM: ATOMS"):
            out.append(" ".join(parts[:7]))
        elif len(parts) == 14:
            out.append(" ".join(parts[:5]))
        else:
            out.append(line)
    target.write_text("\n".join(out) + "\n")


@pytest.mark.parametrize("columns", ["velocities and EFG columns", "positions only"])
def test_mpi_analyze_equals_serial(md_dump, tmp_path, columns):
    wd, efg_model = md_dump
    dump = wd / "md.dump"
    if columns == "positions only":
        dump = tmp_path / "positions.dump"
        positions_only_dump(wd / "md.dump", dump)
    outputs = {}
    for n in (1, 2):
        out = tmp_path / f"np{n}.json"
        cmd = [sys.executable, "-m", "efg", "analyze", "--dump", str(dump), "--model", efg_model,
               "--types", "Br,Cs,Pb", "--isotope", "Br=81Br", "-o", str(out), "--no-progress"]
        if columns != "positions only":
            cmd += ["--efg-columns", "c_efg", "--efg-source", "columns"]
        if n > 1:
            cmd = [str(__import__("pathlib").Path(sys.prefix) / "bin" / "mpirun"), "-np", "2"] + cmd
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        report = json.loads(out.read_text())
        for key in ("wall_time_s", "tensors_file", "histogram_png", "nqr_png"):   # differ by name or time only
            report.pop(key)
        outputs[n] = report
    assert outputs[1] == outputs[2]
    assert outputs[1]["species"]["Br"]["isotope"] == "81Br"


def write_tensor_dump(path, tensors, cell=10.0):
    """A LAMMPS-style dump with only EFG columns (c_efg[1..6]) of given tensors (F, N, 3, 3)."""
    rng = np.random.default_rng(0)
    lines = []
    for f, frame in enumerate(tensors):
        lines += ["ITEM: TIMESTEP", str(10 * f), "ITEM: NUMBER OF ATOMS", str(len(frame)),
                  "ITEM: BOX BOUNDS pp pp pp"] + [f"0 {cell}"] * 3
        lines.append("ITEM: ATOMS id type x y z c_efg[1] c_efg[2] c_efg[3] c_efg[4] c_efg[5] c_efg[6]")
        for i, v in enumerate(nmr.to_voigt6(frame)):
            x = rng.uniform(0, cell, 3)
            lines.append(f"{i + 1} 1 {x[0]} {x[1]} {x[2]} " + " ".join(f"{c:.17g}" for c in v))
    path.write_text("\n".join(lines) + "\n")


def test_motional_averaging_of_hopping_tensor(tmp_path):
    """A site whose axial tensor hops between the x and z axes: C_Q(<V>) → -C_Q/2 (analytic:
    <V> = diag(1/4, -1/2, 1/4) V0), while <C_Q> stays C_Q and eta(<V>) = 0."""
    v0 = 50.0
    along_z = np.diag([-0.5, -0.5, 1.0]) * v0
    along_x = np.diag([1.0, -0.5, -0.5]) * v0
    rng = np.random.default_rng(1)
    n_frames = 2000
    state = np.zeros(n_frames, dtype=int)
    for t in range(1, n_frames):            # a two-state Markov chain with mean dwell 5 frames
        state[t] = state[t - 1] if rng.random() > 0.2 else 1 - state[t - 1]
    tensors = np.where(state[:, None, None, None] == 0, along_z, along_x)
    tensors = tensors + rng.normal(0, 0.5, tensors.shape) * np.array([[1, 1, 1]]).T  # small noise
    tensors = 0.5 * (tensors + tensors.transpose(0, 1, 3, 2))
    tensors -= np.eye(3) * np.trace(tensors, axis1=2, axis2=3)[..., None, None] / 3
    write_tensor_dump(tmp_path / "hop.dump", tensors)
    report = analyze(tmp_path / "hop.dump", types="Br", isotopes={"Br": "79Br"}, progress=False)
    br = report["species"]["Br"]
    cq0 = nmr.CQ_MHZ_PER_MB_V_PER_A2 * nmr.quadrupole_moment_mb("79Br") * v0
    fraction_z = (state == 0).mean()
    mean_tensor = fraction_z * along_z + (1 - fraction_z) * along_x
    expected = nmr.cq_mhz(mean_tensor, "79Br")
    cq_avg = br["cq_of_mean_tensor_mhz"]
    assert abs(cq_avg["value"] - expected) <= 4 * cq_avg["error"] + 0.01 * abs(cq0)
    assert abs(cq_avg["value"] - (-0.5 * cq0)) <= 0.1 * abs(cq0)     # near the 50/50 limit
    assert abs(br["mean_abs_cq_mhz"]["value"] - abs(cq0)) <= 0.02 * abs(cq0)   # static average stays
    assert br["eta_of_mean_tensor"]["value"] <= 0.2
    # the hops are correlated (ρ(t) = 0.6^t, τ_int = 2 frames): the error analysis must see it
    assert 1.4 < cq_avg["tau_frames"] < 2.6 and cq_avg["n_blocks"] >= 8


def test_autocorrelation_time_of_ar1_process():
    """AR(1) x_t = a x_{t-1} + noise has τ_int = (1 + a) / (2 (1 - a))."""
    rng = np.random.default_rng(3)
    a, n = 0.8, 200_000
    x = np.empty(n)
    x[0] = 0
    noise = rng.normal(size=n)
    for t in range(1, n):
        x[t] = a * x[t - 1] + noise[t]
    tau = integrated_autocorrelation_time(x)
    assert abs(tau - (1 + a) / (2 * (1 - a))) <= 0.1 * (1 + a) / (2 * (1 - a))
    e = estimate(x)
    true_sem = np.sqrt(2 * tau / n) * x.std()
    assert 0.6 * true_sem <= e.error <= 1.5 * true_sem
    white = rng.normal(size=5000)
    assert abs(integrated_autocorrelation_time(white) - 0.5) < 0.15


def tilted_perovskite(phi_deg, phase="R", reps=(4, 4, 4), a=5.9):
    """Cubic CsPbBr3 supercell with the X atoms displaced as a rigid tilt about z of angle phi:
    out-of-phase between all neighbours (R, a0a0c-) or in-phase along z (M, a0a0c+)."""
    unit = Atoms("CsPbBr3", scaled_positions=[[.5, .5, .5], [0, 0, 0], [.5, 0, 0], [0, .5, 0], [0, 0, .5]],
                 cell=np.eye(3) * a, pbc=True)
    atoms = unit.repeat(reps)
    t = 0.5 * a * np.tan(np.radians(phi_deg))
    pos = atoms.positions
    for i, s in enumerate(atoms.get_chemical_symbols()):
        if s != "Br":
            continue
        frac = pos[i] / a
        k = np.floor(frac + 1e-6).astype(int)              # the B site on the -side of this X
        sign = (-1) ** (k.sum() if phase == "R" else k[0] + k[1])
        offset = frac - k
        if offset[0] > 0.25:                               # bond along x: moves along y
            pos[i, 1] += sign * t
        elif offset[1] > 0.25:                             # bond along y: moves along -x
            pos[i, 0] -= sign * t
    atoms.positions = pos
    return atoms


@pytest.mark.parametrize("phase", ["R", "M"])
def test_tilt_order_parameters(phase):
    phi = 7.0
    atoms = tilted_perovskite(phi, phase)
    sites = find_octahedra(atoms)
    assert (sites.b_symbol, sites.x_symbol) == ("Pb", "Br") and list(sites.repeats) == [4, 4, 4]
    order = tilt_order_parameters(atoms, sites)
    key, other = ("tilt_R_deg", "tilt_M_deg") if phase == "R" else ("tilt_M_deg", "tilt_R_deg")
    assert abs(order[key][2] - phi) <= 1e-9
    assert np.abs(order[key][:2]).max() <= 1e-9 and np.abs(order[other]).max() <= 1e-9
    cubic = tilted_perovskite(0.0)
    cubic.rattle(0.05, seed=2)
    noise = tilt_order_parameters(cubic, find_octahedra(cubic))
    assert max(noise["tilt_R_deg"].max(), noise["tilt_M_deg"].max()) < 1.0


def test_analyze_errors_name_the_problem(tmp_path):
    write_tensor_dump(tmp_path / "t.dump", np.zeros((3, 2, 3, 3)))
    with pytest.raises(ValueError, match="isotope '80Br': no quadrupole moment in the table"):
        analyze(tmp_path / "t.dump", types="Br", isotopes={"Br": "80Br"}, progress=False)
    # six columns of another quantity are never taken for the EFG
    (tmp_path / "noefg.dump").write_text((tmp_path / "t.dump").read_text().replace("c_efg", "c_stress"))
    with pytest.raises(ValueError, match="no EFG columns .* and no --model given"):
        analyze(tmp_path / "noefg.dump", types="Br", progress=False)


def test_msd_follows_atoms_across_boundaries_and_vdos_finds_the_frequency():
    from efg.frame_steps import displacement_msd, msd_statistics, vibrational_dos
    rng = np.random.default_rng(6)
    n_frames, n_atoms, L = 3000, 20, 8.0
    cell = np.eye(3) * L
    centres = rng.uniform(0, L, (n_atoms, 3))
    centres[0] = [0.01, 4.0, 7.99]                      # sits on the boundary: wraps every frame
    sigma = np.array([0.05, 0.10, 0.20])                # Å, anisotropic
    u = rng.normal(size=(n_frames, n_atoms, 3)) * sigma
    positions = np.mod(centres + u, L)
    scaled = positions / L
    masses = np.full(n_atoms, 80.0)
    uu = displacement_msd(scaled, np.repeat(cell[None], n_frames, 0), masses)
    stats = msd_statistics(uu, np.array(["Br"] * n_atoms))["Br"]
    expected = sigma ** 2 * (1 - 1 / n_atoms)          # centre-of-mass motion removed
    diag = np.diag(stats["msd_tensor_A2"]["value"])
    err = np.diag(stats["msd_tensor_A2"]["error"])
    assert np.all(np.abs(diag - expected) <= 4 * err + 1e-12)
    assert abs(stats["msd_iso_A2"]["value"] - expected.mean()) <= 4 * stats["msd_iso_A2"]["error"]
    # velocities of oscillators at 2.5 THz sampled every 0.02 ps
    t = np.arange(2048) * 0.02
    phases = rng.uniform(0, 2 * np.pi, (1, n_atoms, 3))
    v = np.cos(2 * np.pi * 2.5 * t[:, None, None] + phases)
    dos = vibrational_dos(v, masses, 0.02)
    freq, g = np.array(dos["frequencies_THz"]), np.array(dos["dos_normalised"])
    assert abs(freq[np.argmax(g)] - 2.5) <= 2.0 / (2048 * 0.02)
    assert abs(np.trapezoid(g, freq) - 1.0) <= 1e-12


def test_perovskite_found_in_strongly_rattled_frames():
    """High-temperature MD frames spread the six B-X bonds by tens of percent; the octahedra must
    still be found (the next X shell is ~2.2 times farther)."""
    found = 0
    for seed in range(10):
        atoms = tilted_perovskite(0.0, reps=(6, 6, 6), a=6.0)
        atoms.rattle(0.15, seed=seed)
        sites = find_octahedra(atoms)
        found += list(sites.repeats) == [6, 6, 6] and len(sites.b) == 216
    assert found == 10
    # B far off-centre (lone-pair-like Pb displacements of 0.9 Å, B-X up to ~4 Å): still octahedra
    offcentre = tilted_perovskite(7.0, reps=(4, 4, 4), a=6.0)
    rng = np.random.default_rng(3)
    pb = [i for i, s in enumerate(offcentre.get_chemical_symbols()) if s == "Pb"]
    shift = rng.normal(size=(len(pb), 3))
    offcentre.positions[pb] += 0.9 * shift / np.linalg.norm(shift, axis=1)[:, None]
    sites = find_octahedra(offcentre)
    reference = find_octahedra(tilted_perovskite(7.0, reps=(4, 4, 4), a=6.0))
    assert np.array_equal(sites.x_of_b, reference.x_of_b) and np.array_equal(sites.grid, reference.grid)
    molten = tilted_perovskite(0.0, reps=(2, 2, 2), a=6.0)
    molten.rattle(1.5, seed=1)
    with pytest.raises(ValueError, match="not an ABX3 perovskite"):
        find_octahedra(molten)


# --------------------------------------------------------------------------------------------
# the EFG source is chosen, never guessed; reports are strict JSON; corrupt numbers are refused


def _strict_json(path):
    """The JSON of ``path``, failing on the non-standard NaN / Infinity tokens."""
    def refuse(token):
        raise AssertionError(f"{path}: non-standard JSON token {token}")
    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture()
def tensor_dump_and_model(tmp_path):
    """A dump with EFG columns (random tensors, 2 frames of 3 Br) and a point-charge EFG model
    whose tensors differ from the columns."""
    rng = np.random.default_rng(3)
    v = rng.normal(size=(2, 3, 3, 3))
    v = 0.5 * (v + v.transpose(0, 1, 3, 2))
    v -= np.eye(3) * np.trace(v, axis1=2, axis2=3)[..., None, None] / 3
    write_tensor_dump(tmp_path / "cols.dump", v)
    return tmp_path / "cols.dump", export(point_charge_efg_module(), tmp_path / "efg.pt"), v


def test_model_and_columns_together_need_a_choice(tensor_dump_and_model, tmp_path, capsys):
    from efg.cli import main as efg_main

    dump, model, columns = tensor_dump_and_model
    base = ["analyze", "--dump", str(dump), "--types", "Br", "--isotope", "Br=79Br", "--no-progress",
            "--model", model]
    assert efg_main(base + ["-o", str(tmp_path / "auto.json")]) == 1
    err = capsys.readouterr().err
    assert (f"{dump}: two sources of EFG tensors: the dump's columns c_efg[1..6] and the model {model}; "
            "choose one with --efg-source columns or --efg-source model") in err
    assert not (tmp_path / "auto.json").exists()

    assert efg_main(base + ["--efg-source", "columns", "-o", str(tmp_path / "cols.json")]) == 0
    report = _strict_json(tmp_path / "cols.json")
    assert report["efg_source"] == "dump columns c_efg[1..6]" and report["model"] is None
    np.testing.assert_allclose(np.load(tmp_path / "cols.npz")["efg_V_per_A2"], columns, rtol=0, atol=1e-15)

    assert efg_main(base + ["--efg-source", "model", "-o", str(tmp_path / "model.json")]) == 0
    report = _strict_json(tmp_path / "model.json")
    assert report["efg_source"] == "model" and report["model"] == model
    from_model = np.load(tmp_path / "model.npz")["efg_V_per_A2"]
    assert np.abs(from_model - columns).max() > 0.1           # really the model's tensors

    assert efg_main(["analyze", "--dump", str(dump), "--types", "Br", "--efg-source", "model",
                     "-o", str(tmp_path / "none.json")]) == 1
    assert "--efg-source model needs --model" in capsys.readouterr().err


def test_report_json_is_strict_with_null_for_no_number(tmp_path):
    """One frame: no error bars (NaN in memory) must be written as null, never as NaN."""
    rng = np.random.default_rng(0)
    v = rng.normal(size=(1, 2, 3, 3))
    write_tensor_dump(tmp_path / "one.dump", 0.5 * (v + v.transpose(0, 1, 3, 2)))
    analyze(tmp_path / "one.dump", types="Br", isotopes={"Br": "79Br"}, progress=False, output=tmp_path / "one.json")
    report = _strict_json(tmp_path / "one.json")
    assert report["species"]["Br"]["cq_of_mean_tensor_mhz"]["error"] is None
    assert "null = no number" in report["conventions"]


@pytest.mark.parametrize("token", ["nan", "inf"])
def test_non_finite_efg_column_is_an_error(tmp_path, token):
    write_tensor_dump(tmp_path / "t.dump", np.ones((3, 2, 3, 3)))
    lines = (tmp_path / "t.dump").read_text().splitlines()
    row = [k for k, line in enumerate(lines) if line.startswith("2 1 ")][1]     # atom 2 of frame 1
    words = lines[row].split()
    words[7] = token
    lines[row] = " ".join(words)
    (tmp_path / "t.dump").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"t\.dump: frame 1 \(timestep 10\): the EFG tensor of atom 1 .* "
                                         r"dump columns c_efg\[1\.\.6\] is not finite"):
        analyze(tmp_path / "t.dump", types="Br", progress=False, output=tmp_path / "t.json")
    assert not (tmp_path / "t.json").exists()


def test_absurd_coordinate_stops_the_analysis(tmp_path, capsys):
    """A coordinate of 1e300 Å (was: MSD 6.9e26 Å², exit 0) is refused with file and frame."""
    from efg.cli import main as efg_main

    write_tensor_dump(tmp_path / "t.dump", np.ones((3, 2, 3, 3)))
    text = (tmp_path / "t.dump").read_text().split("ITEM: TIMESTEP")
    rows = text[3].splitlines()
    words = rows[-1].split()
    words[2] = "1e300"
    rows[-1] = " ".join(words)
    text[3] = "\n".join(rows) + "\n"
    (tmp_path / "t.dump").write_text("ITEM: TIMESTEP".join(text))
    assert efg_main(["analyze", "--dump", str(tmp_path / "t.dump"), "--types", "Br", "--no-progress",
                     "-o", str(tmp_path / "t.json")]) == 1
    assert "(frame 2, timestep 20): coordinate" in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists()


def test_report_sections_round_trip_through_their_types(md_dump, tmp_path):
    """run.json read back as efg.report.RunReport gives the same JSON (every species entry, the
    structure estimates), and efg scan reads runs only through it: a file that is not a report
    of efg analyze is refused by name."""
    from efg.report import Estimate, RunReport, SpeciesNMR

    wd, _ = md_dump
    analyze(wd / "md.dump", types="Br,Cs,Pb", progress=False, temperature=300.0, output=tmp_path / "run.json")
    written = json.loads((tmp_path / "run.json").read_text())
    run = RunReport.read(tmp_path / "run.json")
    assert run.temperature_K == 300.0 and run.quadrupolar_species() == ["Cs", "Br"]
    assert {el: entry.to_json() for el, entry in run.species.items()} == written["species"]
    assert list(run.species["Br"].to_json()) == list(written["species"]["Br"])          # key order too
    assert "histogram_cq_mhz" not in written["species"]["Pb"]                           # no isotope, no C_Q
    assert {k: e.to_json() for k, e in run.structure.items()} == written["structure"]
    assert SpeciesNMR.from_json(written["species"]["Cs"]) == run.species["Cs"]
    tilt = run.structure["tilt_R_deg"]
    assert isinstance(tilt, Estimate) and tilt.largest() == max(written["structure"]["tilt_R_deg"]["value"])
    with pytest.raises(KeyError, match="not a species estimate"):
        run.species["Br"].estimate("n_sites")
    (tmp_path / "other.json").write_text(json.dumps({"efgmd": "efg scan"}))
    with pytest.raises(ValueError, match=r"other\.json: not a report of efg analyze"):
        RunReport.read(tmp_path / "other.json")


def test_not_a_perovskite_names_the_elements_as_text():
    """The message lists the element symbols as a user wrote them (no np.str_('Na') reprs) and
    gives no advice the command line cannot follow."""
    from ase.build import bulk

    from pyexport.octahedra import find_octahedra

    rocksalt = bulk("NaCl", "rocksalt", a=5.64).repeat((2, 2, 2))
    with pytest.raises(ValueError) as error:
        find_octahedra(rocksalt)
    message = str(error.value)
    assert "among Na, Cl" in message and "np.str_" not in message and "b_symbol" not in message
    with pytest.raises(ValueError, match="the pair B = Cl, X = Na does not have six X"):
        find_octahedra(rocksalt, b_symbol="Cl", x_symbol="Na")


# --------------------------------------------------------------------------------------------
# NQR-ready results: lines per species, orientation per site, the .magres of the motional average


def write_typed_dump(path, types, positions, tensors, cell):
    """A dump with types, positions (F, N, 3) Å wrapped into the cubic box ``cell`` and EFG
    columns c_efg[1..6] of ``tensors`` (F, N, 3, 3)."""
    lines = []
    for f, (frame_positions, frame_tensors) in enumerate(zip(positions, tensors)):
        lines += ["ITEM: TIMESTEP", str(10 * f), "ITEM: NUMBER OF ATOMS", str(len(types)),
                  "ITEM: BOX BOUNDS pp pp pp"] + [f"0 {cell}"] * 3
        lines.append("ITEM: ATOMS id type x y z c_efg[1] c_efg[2] c_efg[3] c_efg[4] c_efg[5] c_efg[6]")
        for i, (kind, x, v) in enumerate(zip(types, np.mod(frame_positions, cell), nmr.to_voigt6(frame_tensors))):
            lines.append(f"{i + 1} {kind} " + " ".join(f"{c:.17g}" for c in list(x) + list(v)))
    path.write_text("\n".join(lines) + "\n")


def test_nqr_lines_orientation_and_magres_of_a_run(tmp_path, capsys):
    """Two ¹²⁷I sites (one hopping between two axes, one static at known Euler angles), one
    ¹³³Cs, one Pb (no isotope): run.json's nqr section equals the lines computed directly from
    the tensors, the static site's Euler angles come back, the motional average lowers the
    hopping site's line, and the .magres file holds ⟨V⟩ (a.u.) on the average structure."""
    import ase.io

    from efg.cli import main as efg_main
    from efg.report import RunReport
    from pyexport import nqr

    rng = np.random.default_rng(7)
    n_frames, cell = 240, 12.0
    angles = np.array([0.7, 0.4, 2.1])                                  # α, β, γ (rad)
    static = nmr.rotation_zyz(angles) @ np.diag([-12.0, -48.0, 60.0]) @ nmr.rotation_zyz(angles).T
    along_z, along_x = np.diag([-25.0, -25.0, 50.0]), np.diag([50.0, -25.0, -25.0])
    hops = np.zeros(n_frames, dtype=int)
    for t in range(1, n_frames):                                        # dwell ~4 frames
        hops[t] = hops[t - 1] if rng.random() > 0.25 else 1 - hops[t - 1]
    tensors = np.empty((n_frames, 4, 3, 3))
    tensors[:, 0] = np.where(hops[:, None, None] == 0, along_z, along_x)
    tensors[:, 1] = static
    tensors[:, 2] = np.diag([-0.2, -0.3, 0.5])
    tensors[:, 3] = np.diag([1.0, 2.0, -3.0])
    noise = rng.normal(0, 0.5, tensors.shape)
    noise[:, 1] = 0.0                                                   # the static site stays exact
    tensors += 0.5 * (noise + np.swapaxes(noise, -1, -2))
    tensors -= np.eye(3) * np.trace(tensors, axis1=2, axis2=3)[..., None, None] / 3
    sites = np.array([[0.02, 6.0, 6.0], [3.0, 3.0, 3.0], [9.0, 9.0, 3.0], [6.0, 2.0, 9.0]])
    positions = sites + rng.normal(0, 0.05, (n_frames, 4, 3))            # site 0 crosses x = 0
    write_typed_dump(tmp_path / "md.dump", [1, 1, 2, 3], positions, tensors, cell)

    assert efg_main(["analyze", "--dump", str(tmp_path / "md.dump"), "--types", "I,Cs,Pb", "--no-progress",
                     "-o", str(tmp_path / "run.json"), "--magres", str(tmp_path / "mean.magres")]) == 0
    printed = capsys.readouterr().out
    assert "I (127I, I = 5/2) NQR nu(<V>): ±1/2↔±3/2: " in printed and "±3/2↔±5/2: " in printed
    assert f"and {tmp_path / 'mean.magres'}" in printed
    report = _strict_json(tmp_path / "run.json")
    assert list(report["nqr"]) == ["I", "Cs"]                           # Pb has no isotope
    iodine, cesium = report["nqr"]["I"], report["nqr"]["Cs"]
    assert (iodine["isotope"], iodine["spin"], iodine["transitions"]) == ("127I", 2.5, ["±1/2↔±3/2", "±3/2↔±5/2"])
    assert (cesium["spin"], len(cesium["transitions"])) == (3.5, 3) and cesium["site_indices"] == [2]

    mean = tensors.mean(axis=0)
    lines_of_mean = nqr.nqr_frequencies_mhz(nmr.cq_mhz(mean[:2], "127I"), nmr.eta(mean[:2]), 2.5)
    np.testing.assert_allclose(iodine["site_lines_of_mean_tensor_mhz"]["value"], lines_of_mean, rtol=1e-10)
    np.testing.assert_allclose(iodine["lines_of_mean_tensor_mhz"]["value"], lines_of_mean.mean(axis=0), rtol=1e-10)
    instantaneous = nqr.nqr_frequencies_mhz(nmr.cq_mhz(tensors[:, :2], "127I"), nmr.eta(tensors[:, :2]), 2.5)
    np.testing.assert_allclose(iodine["mean_lines_mhz"]["value"], instantaneous.mean(axis=(0, 1)), rtol=1e-10)
    site_errors = np.array(iodine["site_lines_of_mean_tensor_mhz"]["error"])
    assert np.all(site_errors[0] > 0.01) and np.all(site_errors[1] < 1e-10)   # the static site has no spread
    # motional averaging: the hopping site's lines of <V> lie far below its time-averaged lines
    assert np.all(lines_of_mean[0] < 0.7 * instantaneous[:, 0].mean(axis=0))
    for histogram in iodine["histogram_lines_mhz"]:
        assert sum(histogram["counts"]) == n_frames * 2
    assert (tmp_path / "run_nqr.png").stat().st_size > 1000 and report["nqr_png"] == "run_nqr.png"

    np.testing.assert_allclose(report["sites"]["euler_zyz_deg_of_mean_tensor"][1], np.degrees(angles), atol=1e-9)
    axes = np.array(report["sites"]["principal_axes_of_mean_tensor"][1])            # rows x, y, z
    np.testing.assert_allclose(np.abs(axes @ nmr.rotation_zyz(angles)), np.eye(3), atol=1e-12)
    np.testing.assert_allclose(report["sites"]["principal_values_of_mean_tensor_V_per_A2"][1], [-12, -48, 60],
                               atol=1e-10)

    run = RunReport.read(tmp_path / "run.json")
    assert {el: entry.to_json() for el, entry in run.nqr.items()} == report["nqr"]

    read = ase.io.read(tmp_path / "mean.magres", format="magres")
    assert read.get_chemical_symbols() == ["I", "I", "Cs", "Pb"]
    np.testing.assert_allclose(read.get_array("efg") * nmr.V_PER_A2_PER_EFG_AU, mean, rtol=0,
                               atol=1e-10 * np.abs(mean).max())
    # mean positions follow the atoms across the boundary (site 0 sits at x ≈ 0.02, not at L/2)
    offset = read.positions - sites
    offset -= cell * np.round(offset / cell)
    assert np.abs(offset).max() < 0.05 and report["magres_file"] == str(tmp_path / "mean.magres")
    assert "motional average" in (tmp_path / "mean.magres").read_text()
