"""Per-species-pair cutoffs of the cluster basis (``ClusterBasis.pair_cutoffs``).

The MAPbI3-like structures are built by hand: one CH3NH3+ cation (C-N 1.47 Å, C-H 1.09 Å, N-H 1.03 Å,
tetrahedral angles, staggered) at the centre of a 6.3 Å cubic cell with Pb at the corner and I on
the edge centres. The pair cutoffs C-H = N-H = 2.2 Å keep each H on its own heavy atom and just
take in the cross-molecule H (C···H 2.06 Å, N···H 2.10 Å, near the smooth edge of the envelope);
H-H = 2.0 Å keeps only the H within one CH3 or NH3 group.
"""
import json
import math

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms

from contract_models import labelled_by
from lammps_run import mlff_single_point
from pyexport.calculator import MLFFCalculator
from pyexport.cli import main
from pyexport.cli.fit import parse_pair_cutoffs
from pyexport.committee import ClusterCommittee
from pyexport.contract import PotentialModule, build_inputs, fold_to_atoms, load_model
from pyexport.training.checkpoints import load_checkpoint, model_from_checkpoint
from pyexport.models.cluster import ClusterLinear, ClusterNN
from pyexport.models.cluster_basis import ClusterBasis, ClusterDescriptor
from pyexport.structures import cspbbr3, rattled
from pyexport.units import LAMMPS_BAR_PER_EV_A3

ELEMENTS = ["H", "C", "N", "I", "Pb"]          # by atomic number, as `pyexport fit` orders them
TYPE_ORDER = ["I", "Pb", "N", "C", "H"]        # LAMMPS types 1..5, permuted against the model
PAIRS = {"C-H": 2.2, "H-N": 2.2, "H-H": 2.0, "N-C": 2.0}
CUTOFF = 5.0
#: small enough for a quick fit, with 2-, 3- and 4-body features
BASIS_SIZE = dict(n_radial_2=3, n_radial_3=2, l_max_3=2, n_radial_4=1, l_max_4=2)
BASIS = ClusterBasis(cutoff=CUTOFF, pair_cutoffs=PAIRS, **BASIS_SIZE)
#: for the fit: few enough columns (5 x 60 + 5) that 11 training cells of 12 atoms determine them
FIT_SIZE = dict(n_radial_2=3, n_radial_3=1, l_max_3=2, n_radial_4=0, l_max_4=0)
FIT_BASIS = ClusterBasis(cutoff=CUTOFF, pair_cutoffs=PAIRS, **FIT_SIZE)
CELL_A = 6.3


pytestmark = pytest.mark.usefixtures("one_thread")


def methylammonium_cell(rattle=0.03, seed=0, scale=1.0) -> Atoms:
    """Pb + 3 I + CH3NH3 in a cubic cell of CELL_A · scale Å, rattled (Gaussian, Å)."""
    a = CELL_A
    axis = np.ones(3) / math.sqrt(3.0)                      # C -> N along [111]
    e1 = np.cross(axis, [1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    carbon = np.full(3, a / 2) - 0.735 * axis
    nitrogen = np.full(3, a / 2) + 0.735 * axis
    tetrahedral = math.radians(180.0 - 109.47)              # H-X-Y 109.47°: H leans away from Y

    def hydrogens(centre, away, bond, phase):
        return [centre + bond * (math.cos(tetrahedral) * away
                                 + math.sin(tetrahedral) * (math.cos(phi) * e1 + math.sin(phi) * e2))
                for phi in np.radians([phase, phase + 120.0, phase + 240.0])]

    positions = ([carbon, nitrogen] + hydrogens(carbon, -axis, 1.09, 0.0) + hydrogens(nitrogen, axis, 1.03, 60.0)
                 + [np.zeros(3), [a / 2, 0, 0], [0, a / 2, 0], [0, 0, a / 2]])
    atoms = Atoms("CNH6PbI3", positions=positions, cell=np.eye(3) * a, pbc=True)
    atoms.set_cell(atoms.cell.array * scale, scale_atoms=True)
    atoms.rattle(rattle, seed=seed)
    return atoms


def _edge_vec(inputs):
    return inputs.pos[inputs.edge_index[1]] - inputs.pos[inputs.edge_index[0]]


def random_model(cls=ClusterLinear, basis=BASIS, seed=0, **kwargs):
    """Random coefficients scaled by the features' size on a rattled cell: atom energies ~1 eV."""
    torch.manual_seed(seed)
    model = cls(len(ELEMENTS), basis, elements=ELEMENTS, **kwargs)
    inputs = build_inputs(methylammonium_cell(seed=99), basis.cutoff, ELEMENTS)
    with torch.no_grad():
        features = model.descriptor(_edge_vec(inputs), inputs.species, inputs.edge_index, inputs.n_local)
        size = features.pow(2).mean(0).sqrt().clamp_min(1e-8)
        model.coef.copy_(torch.randn_like(model.coef) / size / math.sqrt(features.shape[1]))
        model.e0.copy_(-torch.arange(1.0, len(ELEMENTS) + 1.0, dtype=torch.float64))
    return model.eval()


def _derivative(f, h=5e-4):
    """df/dx at 0 by the five-point central stencil (error ~h⁴ f⁽⁵⁾, ~1e-11 here)."""
    return (8.0 * (f(h) - f(-h)) - (f(2 * h) - f(-2 * h))) / (12.0 * h)


def _energy_forces_virial(module, atoms):
    inputs = build_inputs(atoms, module.cutoff, module.elements)
    out = module(*inputs.as_args())
    forces = fold_to_atoms(out["forces"].detach().numpy(), inputs.image_of, len(atoms))
    return float(out["energy"].detach()), forces, out["virial"].detach().numpy()


# --------------------------------------------------------------------------------------------
# The basis and its table
# --------------------------------------------------------------------------------------------
def test_table_is_symmetric_order_insensitive_and_round_trips():
    table = ClusterDescriptor(len(ELEMENTS), BASIS, ELEMENTS).pair_cutoff
    h, c, n, i, pb = range(5)
    assert table.dtype == torch.float64 and table.shape == (5, 5)
    assert torch.equal(table, table.T)
    assert table[c, h] == 2.2 and table[n, h] == 2.2 and table[h, h] == 2.0 and table[c, n] == 2.0
    assert table[i, h] == CUTOFF and table[pb, pb] == CUTOFF and table[c, c] == CUTOFF
    assert ClusterBasis.from_dict(json.loads(json.dumps(BASIS.as_dict()))) == BASIS
    assert torch.equal(ClusterDescriptor(5, ClusterBasis.from_dict(BASIS.as_dict()), ELEMENTS).pair_cutoff, table)
    assert torch.equal(ClusterLinear(5, BASIS, ELEMENTS).to(torch.float32).descriptor.pair_cutoff,
                       table.to(torch.float32))


def test_no_pair_cutoffs_gives_the_single_cutoff_features_bit_for_bit():
    """Default basis: the features equal, to the last bit, those of the single-cutoff code path
    (the radial functions of the global cutoff as a Python number, no per-edge table)."""

    class SingleCutoff(ClusterDescriptor):
        def edge_functions(self, edge_vec, edge_cutoff):
            r = torch.linalg.norm(edge_vec, dim=1)
            return self.radial(r), self.harmonics(edge_vec / r.unsqueeze(1))

    basis = ClusterBasis(cutoff=5.0, n_radial_2=4, n_radial_3=3, l_max_3=3, n_radial_4=2, l_max_4=2)
    atoms = rattled(cspbbr3(repeat=(2, 2, 2)), 0.15, 1)
    inputs = build_inputs(atoms, basis.cutoff, ["Cs", "Pb", "Br"])
    args = (_edge_vec(inputs), inputs.species, inputs.edge_index, inputs.n_local)
    reference = SingleCutoff(3, basis)(*args)
    for descriptor in (ClusterDescriptor(3, basis), ClusterDescriptor(3, basis, ["Cs", "Pb", "Br"])):
        assert torch.all(descriptor.pair_cutoff == 5.0)
        assert float((descriptor(*args) - reference).abs().max()) == 0.0
    assert float(reference.abs().max()) > 1.0


# --------------------------------------------------------------------------------------------
# An edge beyond its pair cutoff, and smoothness at it
# --------------------------------------------------------------------------------------------
def _trimer(x_h: float) -> Atoms:
    """C at the origin, H at (x_h, 0, 0), Pb 3.5 Å off: only the C-H edge feels the 2.2 Å cutoff."""
    return Atoms("CHPb", positions=[[0, 0, 0], [x_h, 0, 0], [0, 3.5, 0]], cell=np.eye(3) * 20.0, pbc=True)


def _features(descriptor, inputs, keep=None):
    edge_index = inputs.edge_index if keep is None else inputs.edge_index[:, keep]
    vec = inputs.pos[edge_index[1]] - inputs.pos[edge_index[0]]
    with torch.no_grad():
        return descriptor(vec, inputs.species, edge_index, inputs.n_local)


def test_an_edge_beyond_its_pair_cutoff_contributes_nothing():
    descriptor = ClusterDescriptor(len(ELEMENTS), BASIS, ELEMENTS)
    inputs = build_inputs(_trimer(2.2 + 1e-9), CUTOFF, ELEMENTS)
    pair = descriptor.pair_cutoff[inputs.species[inputs.edge_index[0]], inputs.species[inputs.edge_index[1]]]
    keep = _edge_vec(inputs).norm(dim=1) < pair
    assert inputs.edge_index.shape[1] == 6 and int(keep.sum()) == 4   # the two C-H directions go
    assert torch.equal(_features(descriptor, inputs), _features(descriptor, inputs, keep))
    # ... while 1e-3 Å inside the cutoff the H is seen (the envelope is (1 - (r/r_c)²)³ ~ 1e-8)
    inside = build_inputs(_trimer(2.2 - 1e-3), CUTOFF, ELEMENTS)
    assert float((_features(descriptor, inside) - _features(descriptor, inside, keep)).abs().max()) > 1e-12

    # a periodic MAPbI3-like cell: dropping every edge beyond its pair cutoff changes nothing
    inputs = build_inputs(methylammonium_cell(seed=3), CUTOFF, ELEMENTS)
    pair = descriptor.pair_cutoff[inputs.species[inputs.edge_index[0]], inputs.species[inputs.edge_index[1]]]
    keep = _edge_vec(inputs).norm(dim=1) < pair
    assert int((~keep).sum()) > 50                      # many H-H, C-H, N-H, C-N pairs between 2 and 5 Å
    full, reduced = _features(descriptor, inputs), _features(descriptor, inputs, keep)
    assert float((full - reduced).abs().max()) <= 1e-13 * float(full.abs().max())
    # and the single-cutoff basis does see them
    single = ClusterDescriptor(len(ELEMENTS), ClusterBasis(cutoff=CUTOFF, **BASIS_SIZE), ELEMENTS)
    assert float((_features(single, inputs) - _features(single, inputs, keep)).abs().max()) > 1e-3


def test_energy_and_forces_are_smooth_across_a_pair_cutoff():
    module = PotentialModule(random_model(seed=1), ELEMENTS, CUTOFF)
    r_c = PAIRS["C-H"]

    def energy_and_force_on_h(x, without_c_h=False):
        """E (eV) and F_x on the H (eV/Å) of the trimer, optionally with its C-H edges removed."""
        inputs = build_inputs(_trimer(x), CUTOFF, ELEMENTS)
        if without_c_h:
            ends = inputs.species[inputs.edge_index]
            c_h = ((ends[0] == 1) & (ends[1] == 0)) | ((ends[0] == 0) & (ends[1] == 1))
            inputs.edge_index = inputs.edge_index[:, ~c_h]
        out = module(*inputs.as_args())
        forces = fold_to_atoms(out["forces"].detach().numpy(), inputs.image_of, 3)
        return float(out["energy"].detach()), float(forces[1, 0])

    def c_h_part(x):
        """What the C-H edges add to E and F_x(H)."""
        full, without = energy_and_force_on_h(x), energy_and_force_on_h(x, without_c_h=True)
        return full[0] - without[0], full[1] - without[1]

    assert c_h_part(r_c + 1e-9) == (0.0, 0.0) and c_h_part(r_c + 0.3) == (0.0, 0.0)
    # the C-H part of E ~ δ³ and of F ~ δ² as the H approaches the cutoff from inside
    far, near = c_h_part(r_c - 1e-2), c_h_part(r_c - 1e-3)
    assert abs(far[0]) > 1e-7 and abs(far[1]) > 1e-5
    assert 700.0 < far[0] / near[0] < 1300.0
    assert 70.0 < far[1] / near[1] < 130.0
    # forces = -dE/dx by central differences, on both sides and at the cutoff
    for x in (r_c - 0.3, r_c - 1e-2, r_c - 1e-4, r_c, r_c + 1e-4):
        numeric = -_derivative(lambda step: energy_and_force_on_h(x + step)[0], h=1e-5)
        assert abs(energy_and_force_on_h(x)[1] - numeric) <= 1e-8


@pytest.mark.parametrize("cls", [ClusterLinear, ClusterNN])
def test_forces_and_stress_match_finite_differences_in_a_mapbi3_like_cell(cls):
    model = random_model(cls, seed=2, **({"hidden": (8,)} if cls is ClusterNN else {}))
    if cls is ClusterNN:
        with torch.no_grad():
            for p in model.mlps.parameters():
                p.normal_(0.0, 0.3)
    module = PotentialModule(model, ELEMENTS, CUTOFF)
    atoms = methylammonium_cell(rattle=0.05, seed=4)
    energy, forces, virial = _energy_forces_virial(module, atoms)
    assert np.abs(forces).max() > 0.1

    def displaced(a, k, step):
        shifted = atoms.copy()
        shifted.positions[a, k] += step
        return _energy_forces_virial(module, shifted)[0]

    def deformed(i, j, step):
        """r -> (1 + step e_i e_jᵀ) r for the cell and the atoms."""
        strain = np.eye(3)
        strain[i, j] += step
        moved = atoms.copy()
        moved.set_cell(atoms.cell.array @ strain.T, scale_atoms=True)
        return _energy_forces_virial(module, moved)[0]

    for a in (0, 1, 2, 5, 8, 10):                        # C, N, H of CH3, H of NH3, Pb, I
        for k in range(3):
            assert abs(forces[a, k] + _derivative(lambda step: displaced(a, k, step))) <= 1e-8
    # virial W = -Σ_edges r ⊗ ∂E/∂r = -dE/dε of the homogeneous deformation
    for i, j in ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1), (2, 1)):
        assert abs(virial[i, j] + _derivative(lambda step: deformed(i, j, step), h=1e-4)) <= 1e-8
    assert abs(energy) > 1.0


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pairs,message", [
    ({"CH": 2.0}, "expected two element symbols"),
    ({"C-H-N": 2.0}, "expected two element symbols"),
    ({"c-h": 2.0}, "expected two element symbols"),
    ({"C-H": 0.0}, "out of range"),
    ({"C-H": -1.0}, "out of range"),
    ({"C-H": 5.5}, "global cutoff 5.0"),
    ({"C-H": float("nan")}, "out of range"),
    ({"C-H": "short"}, "expected a distance"),
    ({"C-H": 2.0, "H-C": 2.1}, "already given as 'C-H'"),
])
def test_bad_pair_cutoffs_are_rejected(pairs, message):
    with pytest.raises(ValueError, match=message):
        ClusterBasis(cutoff=5.0, pair_cutoffs=pairs)


def test_pair_cutoffs_need_the_models_elements():
    basis = ClusterBasis(cutoff=5.0, pair_cutoffs={"C-Br": 2.0})
    with pytest.raises(ValueError, match=r"'C-Br': element 'Br' is not one of the model's elements \['H', 'C'"):
        ClusterLinear(len(ELEMENTS), basis, ELEMENTS)
    with pytest.raises(ValueError, match="need the model's element order"):
        ClusterDescriptor(len(ELEMENTS), BASIS)
    with pytest.raises(ValueError, match="4 elements"):
        ClusterDescriptor(len(ELEMENTS), BASIS, ELEMENTS[:4])
    with pytest.raises(ValueError, match="need the model's element order"):
        ClusterCommittee(len(ELEMENTS), BASIS, 2)


@pytest.mark.parametrize("text,message", [
    ("C-H", "expected A-B=R items"), ("C-H=", "expected A-B=R items"), ("=2.0", "expected A-B=R items"),
    ("C-H=two", "expected A-B=R items"), ("C-H=2,C-H=2.1", "pair .C-H. is given twice"),
])
def test_bad_pair_cutoff_option_is_rejected(text, message):
    with pytest.raises(ValueError, match=f"--pair-cutoff: {message}"):
        parse_pair_cutoffs(text)


def test_pair_cutoff_option_parses():
    assert parse_pair_cutoffs("C-H=2.0, N-H=1.8,") == {"C-H": 2.0, "N-H": 1.8}
    assert parse_pair_cutoffs({"C-H": 2.0}) == {"C-H": 2.0}   # a config-file table
    assert parse_pair_cutoffs(None) == {}


# --------------------------------------------------------------------------------------------
# Fit, export, LAMMPS
# --------------------------------------------------------------------------------------------
def _label(truth, atoms):
    return labelled_by(truth, atoms, ELEMENTS, CUTOFF)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """`pyexport fit --pair-cutoff` on 16 cells labelled by a random model of the same basis, then
    `pyexport export`."""
    root = tmp_path_factory.mktemp("pair_cutoffs")
    truth = random_model(basis=FIT_BASIS, seed=5)
    frames = [_label(truth, methylammonium_cell(rattle=0.04 + 0.01 * (k % 4), seed=k, scale=1.0 + 0.01 * (k % 3 - 1)))
              for k in range(16)]
    ase.io.write(root / "data.xyz", frames, format="extxyz")
    pairs = ",".join(f"{k}={v}" for k, v in PAIRS.items())
    size = [f"--{k.replace('_', '-')}={v}" for k, v in FIT_SIZE.items()]
    ckpt = str(root / "model.ckpt")
    assert main(["fit", str(root / "data.xyz"), "--basis", "tiny", "--cutoff", str(CUTOFF), *size,
                 "--pair-cutoff", pairs, "--split", "0.75,0.125,0.125", "--lambdas", "1e-14:1e-8:4",
                 "--no-core-repulsion", "-o", ckpt, "--no-progress"]) == 0
    assert main(["export", ckpt, "-o", str(root / "model.pt")]) == 0
    return {"root": root, "ckpt": ckpt, "pt": str(root / "model.pt"), "truth": truth, "pairs": pairs}


def test_fit_with_pair_cutoffs_reproduces_a_model_of_the_same_basis(fitted):
    with open(fitted["root"] / "model.metrics.json") as fh:
        metrics = json.load(fh)
    assert metrics["pair_cutoffs"] == PAIRS and metrics["elements"] == ELEMENTS
    assert metrics["test"]["n_structures"] == 2
    # labels of ~1e3 meV/atom and meV/Å, rounded by the extxyz text; force rows that ignored the
    # pair cutoffs would leave errors of ~1e3 meV/Å
    assert metrics["test"]["energy_rmse_meV_per_atom"] < 1e-3
    assert metrics["test"]["forces_rmse_meV_per_A"] < 1e-2
    ckpt = load_checkpoint(fitted["ckpt"])
    assert ckpt["hyperparameters"]["basis"]["pair_cutoffs"] == PAIRS
    model = model_from_checkpoint(ckpt)
    assert torch.equal(model.descriptor.pair_cutoff, fitted["truth"].descriptor.pair_cutoff)


def test_checkpoint_export_load_keeps_the_pair_cutoffs(fitted):
    loaded, meta = load_model(fitted["pt"], kind="potential")
    assert meta["cutoff"] == CUTOFF and meta["hyperparameters"]["basis"]["pair_cutoffs"] == PAIRS
    expected = ClusterDescriptor(len(ELEMENTS), FIT_BASIS, ELEMENTS).pair_cutoff
    assert torch.equal(loaded.model.descriptor.pair_cutoff, expected)
    # the file's forces are those of the truth model (same basis, recovered by the fit)
    atoms = methylammonium_cell(rattle=0.06, seed=40)
    _, f_file, _ = _energy_forces_virial(loaded, atoms)
    _, f_truth, _ = _energy_forces_virial(PotentialModule(fitted["truth"], ELEMENTS, CUTOFF), atoms)
    assert np.abs(f_file - f_truth).max() <= 1e-4 * np.abs(f_truth).max()


def test_committee_fit_records_the_pair_cutoffs(fitted):
    out = fitted["root"] / "committee.pt"
    size = [f"--{k.replace('_', '-')}={v}" for k, v in FIT_SIZE.items()]
    assert main(["committee", "fit", str(fitted["root"] / "data.xyz"), "--basis", "tiny", "--cutoff", str(CUTOFF),
                 *size, "--pair-cutoff", fitted["pairs"], "--members", "2", "--split", "0.75,0.125,0.125",
                 "--lambdas", "1e-14:1e-8:4", "-o", str(out), "--no-progress"]) == 0
    loaded, meta = load_model(out, kind="potential")
    assert meta["hyperparameters"]["basis"]["pair_cutoffs"] == PAIRS
    assert torch.equal(loaded.model.descriptor.pair_cutoff, ClusterDescriptor(5, FIT_BASIS, ELEMENTS).pair_cutoff)
    with open(fitted["root"] / "committee.metrics.json") as fh:
        assert json.load(fh)["pair_cutoffs"] == PAIRS


@pytest.mark.parametrize("nprocs", [None, 2])
def test_lammps_agrees_with_python_for_a_model_with_pair_cutoffs(fitted, tmp_path, nprocs):
    atoms = methylammonium_cell(rattle=0.05, seed=21).repeat((2, 2, 2))
    values = mlff_single_point(fitted["pt"], atoms, TYPE_ORDER, tmp_path, nprocs)
    lammps_forces = values["forces"]
    atoms.calc = MLFFCalculator(fitted["pt"])
    forces = atoms.get_forces()
    assert np.abs(forces).max() > 0.1
    assert abs(values["pe"] - atoms.get_potential_energy()) <= 1e-9
    assert np.abs(lammps_forces - forces).max() <= 1e-9
    stress = atoms.get_stress()
    assert abs(-values["pxx"] / LAMMPS_BAR_PER_EV_A3 - stress[0]) <= 1e-12 + 1e-9 * abs(stress).max()
    assert abs(-values["pyz"] / LAMMPS_BAR_PER_EV_A3 - stress[3]) <= 1e-12 + 1e-9 * abs(stress).max()
