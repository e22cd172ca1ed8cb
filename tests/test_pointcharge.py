"""efg.pointcharge: Ewald-summed point-charge EFG.

Checked against symmetry (cubic CsPbBr3), against itself (splitting parameter, supercells,
translations, rotations) and against an independent brute-force real-space lattice sum.
"""
import numpy as np
import pytest
from ase import Atoms

from pyexport import nmr
from efg.pointcharge import COULOMB_V_A, ewald_efg, ewald_parameters

CSPBBR3_CHARGES = {"Cs": 1.0, "Pb": 2.0, "Br": -1.0}


def cubic_cspbbr3(a=5.87):
    """Pm-3m CsPbBr3: Pb at the origin, Cs at the body centre, Br at the edge centres."""
    return Atoms("CsPbBr3", cell=[a, a, a], pbc=True,
                 scaled_positions=[[0.5, 0.5, 0.5], [0, 0, 0],
                                   [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]])


def distorted_triclinic_supercell():
    """A 2x2x2 CsPbBr3 supercell, sheared into a triclinic cell and rattled (40 atoms)."""
    atoms = cubic_cspbbr3().repeat((2, 2, 2))
    strain = np.array([[1.0, 0.05, 0.02], [0.0, 1.0, -0.04], [0.0, 0.0, 1.03]])
    atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
    atoms.rattle(0.2, seed=3)
    return atoms


def brute_force_efg(atoms, charges, site, radius):
    """Real-space EFG at ``site`` summed over whole neutral cells: the cell centred on the site
    (each atom's image with fractional offset in [−½, ½)) repeated over all lattice vectors of
    length ≤ ``radius`` Å. Such a set is centrosymmetric, so the dipole terms of the cells cancel
    in pairs and the sum converges to the lattice EFG like a power of 1/radius."""
    cell = atoms.cell.array
    offset = atoms.get_scaled_positions(wrap=False) - atoms.get_scaled_positions(wrap=False)[site]
    offset -= np.round(offset)
    centred = offset @ cell
    n_max = int(np.ceil(radius * np.linalg.norm(np.linalg.inv(cell), axis=0).max())) + 1
    span = np.arange(-n_max, n_max + 1)
    n = np.stack(np.meshgrid(span, span, span, indexing="ij"), axis=-1).reshape(-1, 3)
    lattice = n @ cell
    lattice = lattice[np.linalg.norm(lattice, axis=1) <= radius]
    total = np.zeros((3, 3))
    for q, r0 in zip(charges, centred):
        d = r0 + lattice
        r2 = np.einsum("nk,nk->n", d, d)
        d, r2 = d[r2 > 0], r2[r2 > 0]
        total += q * (3.0 * np.einsum("na,nb,n->ab", d, d, r2**-2.5) - np.eye(3) * np.sum(r2**-1.5))
    return COULOMB_V_A * total


def relative(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max()


# --------------------------------------------------------------------------------------------
def test_coulomb_constant():
    # 14.3996454784 V·Å is e/(4πε0) with CODATA 2018; scipy ≥ 1.15 ships CODATA 2022, whose ε0
    # differs by 6.8e-10 relative.
    assert COULOMB_V_A == pytest.approx(14.3996454784, rel=1e-8)


def test_sign_and_size_from_a_single_close_neighbour():
    """−1 at the origin and +1 at 1 Å along z in a 30 Å box: at the −1 nucleus the EFG is that
    of the +1 charge, V = k (3 ẑẑ − 1) / d³ (V_zz = +2k/d³ > 0); the periodic images of the
    pair contribute ~ k d / L⁴ ≈ 2e-5 V/Å² (relative 1e-6)."""
    atoms = Atoms("ClNa", positions=[[0, 0, 0], [0, 0, 1.0]], cell=[30.0] * 3, pbc=True)
    V = ewald_efg(atoms, {"Cl": -1.0, "Na": 1.0}, sites=[0])[0]
    np.testing.assert_allclose(V, COULOMB_V_A * np.diag([-1.0, -1.0, 2.0]),
                               atol=1e-4 * COULOMB_V_A)


def test_cubic_cspbbr3_symmetry():
    atoms = cubic_cspbbr3()
    V = ewald_efg(atoms, CSPBBR3_CHARGES)
    assert np.abs(V[0]).max() <= 1e-8 and np.abs(V[1]).max() <= 1e-8  # Cs, Pb: O_h sites
    vxx, vyy, vzz = nmr.principal(V[2:])
    assert np.all(np.abs(nmr.eta(V[2:])) <= 1e-8)  # Br: D_4h sites, axial
    assert np.all(vzz > 1.0)  # the two Pb2+ on the axis dominate: V_zz > 0 along Pb–Br–Pb
    values, axes = nmr.principal_axes(V[2:])
    for k in range(3):  # Br k sits on the k-th cell edge, its Pb–Br–Pb axis along k
        assert abs(axes[k, k, 2]) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(vzz, vzz[0], rtol=1e-12)
    np.testing.assert_allclose(np.trace(V, axis1=1, axis2=2), 0.0, atol=1e-14)
    np.testing.assert_array_equal(V, np.swapaxes(V, 1, 2))


def test_supercell_gives_the_unit_cell_values():
    unit = ewald_efg(cubic_cspbbr3(), CSPBBR3_CHARGES)
    supercell = ewald_efg(cubic_cspbbr3().repeat((2, 2, 2)), CSPBBR3_CHARGES)
    assert relative(supercell, np.tile(unit, (8, 1, 1))) <= 1e-8


def test_independent_of_the_ewald_splitting():
    atoms = distorted_triclinic_supercell()
    reference = ewald_efg(atoms, CSPBBR3_CHARGES)
    alpha = ewald_parameters(atoms.cell.array, len(atoms)).alpha
    for factor in (0.5, 0.7, 1.5, 2.5):
        changed = ewald_efg(atoms, CSPBBR3_CHARGES, alpha=factor * alpha)
        # required ≤ 1e-6; the default accuracy 1e-10 gives ~1e-10
        assert relative(changed, reference) <= 1e-8, factor


def test_accuracy_is_met():
    atoms = distorted_triclinic_supercell()
    exact = ewald_efg(atoms, CSPBBR3_CHARGES, accuracy=1e-15)
    for accuracy in (1e-4, 1e-6, 1e-8):
        assert relative(ewald_efg(atoms, CSPBBR3_CHARGES, accuracy=accuracy), exact) <= accuracy
    rough = ewald_efg(atoms, CSPBBR3_CHARGES, accuracy=1e-4)
    assert relative(rough, exact) > 1e-9  # the cutoffs do follow the accuracy


def _brute_force_agreement(atoms, charges, sites):
    """Ewald vs brute force at radius 40 Å and 160 Å: the sphere sums approach the Ewald value
    (error shrinking more than tenfold) and end within 2e-6 of it, relative to the largest
    component. Measured: 2e-5 … 1e-4 at 40 Å, 1e-7 … 5e-7 at 160 Å (the truncated-sum error
    falls like ~1/R² to 1/R³)."""
    ewald = ewald_efg(atoms, charges, sites=sites)
    for k, site in enumerate(sites):
        near = relative(brute_force_efg(atoms, charges, site, 40.0), ewald[k])
        far = relative(brute_force_efg(atoms, charges, site, 160.0), ewald[k])
        assert far <= 2e-6, (site, far)
        assert far < near / 10.0, (site, near, far)


def test_brute_force_stretched_cscl():
    a = 4.1
    atoms = Atoms("CsCl", cell=[a, a, 1.3 * a], pbc=True,
                  scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]])
    V = ewald_efg(atoms, {"Cs": 1.0, "Cl": -1.0})
    assert nmr.eta(V) == pytest.approx([0.0, 0.0], abs=1e-10)  # tetragonal axis
    _brute_force_agreement(atoms, [1.0, -1.0], [0])


def test_brute_force_triclinic_low_symmetry():
    cell = np.array([[5.0, 0.0, 0.0], [1.2, 4.6, 0.0], [-0.8, 0.9, 6.1]])
    atoms = Atoms("NaClKBr", cell=cell, pbc=True,
                  scaled_positions=[[0.02, 0.01, 0.0], [0.47, 0.55, 0.48],
                                    [0.3, 0.1, 0.7], [0.8, 0.6, 0.2]])
    charges = [1.5, -1.0, 0.5, -1.0]
    _brute_force_agreement(atoms, charges, [0, 1, 2, 3])


def test_covariance_under_translation_wrapping_and_rotation():
    atoms = distorted_triclinic_supercell()
    reference = ewald_efg(atoms, CSPBBR3_CHARGES)
    moved = atoms.copy()
    moved.positions += np.array([3.1, -7.4, 12.9])  # most atoms now outside the cell
    assert relative(ewald_efg(moved, CSPBBR3_CHARGES), reference) <= 1e-9
    rng = np.random.default_rng(5)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    rotation = q * np.sign(np.diag(r))
    rotated = atoms.copy()
    rotated.set_cell(atoms.cell.array @ rotation.T)
    rotated.positions = atoms.positions @ rotation.T
    expected = rotation @ reference @ rotation.T
    assert relative(ewald_efg(rotated, CSPBBR3_CHARGES), expected) <= 1e-9


def test_sites_charges_and_sternheimer_options():
    atoms = distorted_triclinic_supercell()
    everything = ewald_efg(atoms, CSPBBR3_CHARGES)
    symbols = atoms.get_chemical_symbols()
    per_atom = [CSPBBR3_CHARGES[s] for s in symbols]
    np.testing.assert_array_equal(ewald_efg(atoms, per_atom), everything)
    sites = [7, 3, 12]
    np.testing.assert_allclose(ewald_efg(atoms, CSPBBR3_CHARGES, sites=sites), everything[sites],
                               rtol=0, atol=1e-13)
    scaled = ewald_efg(atoms, CSPBBR3_CHARGES, sternheimer=-10.0)
    np.testing.assert_allclose(scaled, 11.0 * everything, rtol=1e-15)
    gamma = {"Cs": -100.0, "Pb": 0.0, "Br": -80.0}
    factors = np.array([1.0 - gamma[s] for s in symbols])
    np.testing.assert_allclose(ewald_efg(atoms, CSPBBR3_CHARGES, sternheimer=gamma),
                               factors[:, None, None] * everything, rtol=1e-15)
    # a dict need only name the elements at the requested sites
    br = [i for i, s in enumerate(symbols) if s == "Br"]
    np.testing.assert_allclose(ewald_efg(atoms, CSPBBR3_CHARGES, sites=br,
                                         sternheimer={"Br": -80.0}), 81.0 * everything[br],
                               rtol=1e-15)


def test_bad_input_is_refused():
    atoms = cubic_cspbbr3()
    with pytest.raises(ValueError, match=r"not neutral \(total charge \+1"):
        ewald_efg(atoms, {"Cs": 2.0, "Pb": 2.0, "Br": -1.0})
    with pytest.raises(ValueError, match="no charge given for element.*Br"):
        ewald_efg(atoms, {"Cs": 1.0, "Pb": 2.0})
    with pytest.raises(ValueError, match="one charge per atom"):
        ewald_efg(atoms, [1.0, 2.0, -1.0])
    with pytest.raises(ValueError, match="no γ∞ given for element.*Br"):
        ewald_efg(atoms, CSPBBR3_CHARGES, sternheimer={"Cs": -100.0})
    with pytest.raises(ValueError, match="out of range"):
        ewald_efg(atoms, CSPBBR3_CHARGES, sites=[5])
    slab = atoms.copy()
    slab.pbc = [True, True, False]
    with pytest.raises(ValueError, match="periodic in all three"):
        ewald_efg(slab, CSPBBR3_CHARGES)
    clash = atoms.copy()
    clash.positions[2] = clash.positions[1] + clash.cell[0]  # Br onto an image of Pb
    with pytest.raises(ValueError, match="atoms .* coincide"):
        ewald_efg(clash, CSPBBR3_CHARGES)
