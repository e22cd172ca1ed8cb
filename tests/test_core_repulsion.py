"""`pyexport fit --core-repulsion`: a repulsive core (``models.pair.CoreRepulsion``) below the
shortest distance of every species pair in the data, carried by the checkpoint into the exported
model and LAMMPS. It is zero on the data, so the fit and its metrics do not change; below the
shortest distances it adds exactly A x³/(1 − x)⁶ per pair.

Data: the MAPbI3-like cells of test_pair_cutoffs, labelled by a random model of the fitted basis."""
import json

import ase.io
import numpy as np
import pytest

from lammps_run import mlff_single_point
from pyexport.calculator import MLFFCalculator
from pyexport.cli import main
from pyexport.training.checkpoints import load_checkpoint
from test_pair_cutoffs import (CUTOFF, ELEMENTS, FIT_BASIS, FIT_SIZE, PAIRS, TYPE_ORDER, _label,  # noqa: F401
                               methylammonium_cell, random_model)

STRENGTH = 50.0

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fits(tmp_path_factory):
    """The same data fitted with and without the core, both exported."""
    root = tmp_path_factory.mktemp("core")
    truth = random_model(basis=FIT_BASIS, seed=5)
    frames = [_label(truth, methylammonium_cell(rattle=0.04 + 0.01 * (k % 4), seed=k, scale=1.0 + 0.01 * (k % 3 - 1)))
              for k in range(16)]
    ase.io.write(root / "data.xyz", frames, format="extxyz")
    size = [f"--{k.replace('_', '-')}={v}" for k, v in FIT_SIZE.items()]
    pairs = ",".join(f"{k}={v}" for k, v in PAIRS.items())
    out = {"root": root, "frames": ase.io.read(root / "data.xyz", index=":")}     # as the fit reads them
    for name, extra in (("plain", ["--no-core-repulsion"]), ("core", ["--core-repulsion", "--core-strength", str(STRENGTH)])):
        ckpt = str(root / f"{name}.ckpt")
        assert main(["fit", str(root / "data.xyz"), "--basis", "tiny", "--cutoff", str(CUTOFF), *size,
                     "--pair-cutoff", pairs, "--split", "0.75,0.125,0.125", "--lambdas", "1e-14:1e-8:4",
                     *extra, "-o", ckpt, "--no-progress"]) == 0
        assert main(["export", ckpt, "-o", str(root / f"{name}.pt")]) == 0
        out[name] = {"ckpt": ckpt, "pt": str(root / f"{name}.pt"),
                     "metrics": json.loads((root / f"{name}.metrics.json").read_text())}
    return out


def shortest(frames, a, b):
    best = np.inf
    for atoms in frames:
        d = atoms.get_all_distances(mic=True)
        s = np.array(atoms.get_chemical_symbols())
        block = d[np.ix_(s == a, s == b)]
        best = min(best, block[block > 1e-9].min())
    return best


def test_core_radii_are_the_datas_shortest_distances(fits):
    table = load_checkpoint(fits["core"]["ckpt"])["core_repulsion"]
    assert table["strength_eV"] == STRENGTH
    r = np.array(table["r_core_A"])
    assert np.allclose(r, r.T)
    for a, b in (("C", "H"), ("H", "H"), ("I", "Pb"), ("C", "N"), ("H", "I")):
        i, j = ELEMENTS.index(a), ELEMENTS.index(b)
        assert abs(r[i, j] - shortest(fits["frames"], a, b)) <= 1e-9
    recorded = fits["core"]["metrics"]["core_repulsion"]["r_core_A"]
    assert abs(recorded["H-C"] - r[0, 1]) <= 1e-12


def test_core_radius_stops_at_the_pairs_cutoff(fits, tmp_path):
    """A pair cutoff below the data's shortest distance of that pair (the channel left empty on
    purpose, as MAPbI3's Pb–Pb): the core's radius is the cutoff, not the shortest distance, so
    that the core is zero where LAMMPS starts handing the model that pair's edges."""
    closest = shortest(fits["frames"], "I", "Pb")
    cap = round(closest - 0.3, 3)
    pairs = ",".join(f"{k}={v}" for k, v in {**PAIRS, "I-Pb": cap}.items())
    size = [f"--{k.replace('_', '-')}={v}" for k, v in FIT_SIZE.items()]
    ckpt = str(tmp_path / "capped.ckpt")
    assert main(["fit", str(fits["root"] / "data.xyz"), "--basis", "tiny", "--cutoff", str(CUTOFF), *size,
                 "--pair-cutoff", pairs, "--split", "0.75,0.125,0.125", "--lambdas", "1e-14:1e-8:4",
                 "--core-repulsion", "-o", ckpt, "--no-progress"]) == 0
    r = np.array(load_checkpoint(ckpt)["core_repulsion"]["r_core_A"])
    i, j = ELEMENTS.index("I"), ELEMENTS.index("Pb")
    assert r[i, j] == r[j, i] == pytest.approx(cap, abs=1e-12) and cap < closest
    k, m = ELEMENTS.index("C"), ELEMENTS.index("N")               # a pair the data reach inside its cutoff
    assert abs(r[k, m] - shortest(fits["frames"], "C", "N")) <= 1e-9
    slivers = json.loads((tmp_path / "capped.metrics.json").read_text())["sliver_pair_channels"]
    assert "I-Pb" not in [s["pair"] for s in slivers]               # an empty channel is no sliver


def test_a_channel_the_data_reach_only_at_its_edge_is_named(fits, tmp_path, capsys):
    """An I–Pb cutoff just beyond the data's shortest I–Pb distance: the channel's terms would be
    fitted on a sliver; the fit says so (stderr and metrics) and still runs."""
    closest = shortest(fits["frames"], "I", "Pb")
    pairs = ",".join(f"{k}={v}" for k, v in {**PAIRS, "I-Pb": round(closest + 0.05, 3)}.items())
    size = [f"--{k.replace('_', '-')}={v}" for k, v in FIT_SIZE.items()]
    assert main(["fit", str(fits["root"] / "data.xyz"), "--basis", "tiny", "--cutoff", str(CUTOFF), *size,
                 "--pair-cutoff", pairs, "--split", "0.75,0.125,0.125", "--lambdas", "1e-14:1e-8:4",
                 "-o", str(tmp_path / "sliver.ckpt"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "warning: pair I-Pb: the data come no closer than" in err and "--pair-cutoff I-Pb=R" in err
    slivers = json.loads((tmp_path / "sliver.metrics.json").read_text())["sliver_pair_channels"]
    found = {s["pair"]: s for s in slivers}
    assert found["I-Pb"]["r_min_A"] == pytest.approx(closest, abs=1e-9)
    assert found["I-Pb"]["cutoff_A"] == pytest.approx(closest + 0.05, abs=1e-3)


def test_core_changes_nothing_on_the_data(fits):
    plain, core = fits["plain"]["metrics"], fits["core"]["metrics"]
    for split in ("train", "val", "test"):
        for key in ("energy_rmse_meV_per_atom", "forces_rmse_meV_per_A"):
            assert core[split][key] == plain[split][key]
    for atoms in fits["frames"][:4]:
        e = []
        for name in ("plain", "core"):
            probe = atoms.copy()
            probe.calc = MLFFCalculator(fits[name]["pt"])
            e.append((probe.get_potential_energy(), probe.get_forces()))
        assert e[0][0] == e[1][0] and np.array_equal(e[0][1], e[1][1])


def test_core_repels_below_the_shortest_distance(fits):
    """One H pushed towards its C, 0.2 of the way inside the core: the energies differ by
    exactly A x³/(1 − x)⁶ (the pair once; every other distance stays outside its core)."""
    table = load_checkpoint(fits["core"]["ckpt"])["core_repulsion"]
    r_ch = table["r_core_A"][ELEMENTS.index("C")][ELEMENTS.index("H")]
    atoms = methylammonium_cell(rattle=0.0)
    c, h = 0, 2                                    # C and its first H
    vec = atoms.get_distance(c, h, mic=True, vector=True)
    target = 0.8 * r_ch
    atoms.positions[h] = atoms.positions[c] + vec / np.linalg.norm(vec) * target
    energies = {}
    for name in ("plain", "core"):
        probe = atoms.copy()
        probe.calc = MLFFCalculator(fits[name]["pt"])
        energies[name] = probe.get_potential_energy()
    x = 0.2
    assert abs(energies["core"] - energies["plain"] - STRENGTH * x ** 3 / (1 - x) ** 6) <= 1e-9


@pytest.mark.parametrize("nprocs", [None, 2])
def test_lammps_agrees_with_python_inside_the_core(fits, tmp_path, nprocs):
    atoms = methylammonium_cell(rattle=0.05, seed=21).repeat((2, 2, 1))
    table = load_checkpoint(fits["core"]["ckpt"])["core_repulsion"]
    r_ch = table["r_core_A"][ELEMENTS.index("C")][ELEMENTS.index("H")]
    vec = atoms.get_distance(0, 2, mic=True, vector=True)
    atoms.positions[2] = atoms.positions[0] + vec / np.linalg.norm(vec) * 0.85 * r_ch
    values = mlff_single_point(fits["core"]["pt"], atoms, TYPE_ORDER, tmp_path, nprocs)
    lammps_forces = values["forces"]
    atoms.calc = MLFFCalculator(fits["core"]["pt"])
    assert abs(values["pe"] - atoms.get_potential_energy()) <= 1e-9
    assert np.abs(lammps_forces - atoms.get_forces()).max() <= 1e-9


def test_committee_refuses_the_core(fits):
    with pytest.raises(ValueError, match="core_repulsion: not available for committees"):
        from pyexport.cli import build_parser
        from pyexport.cli.committee import run_committee_fit_command
        args = build_parser().parse_args(["committee", "fit", str(fits["root"] / "data.xyz"), "--config",
                                          str(_config(fits["root"]))])
        run_committee_fit_command(args)


def _config(root):
    path = root / "core.json"
    path.write_text(json.dumps({"core_repulsion": True}))
    return path
