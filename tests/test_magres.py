"""pyexport.magres: .magres files that ASE reads back with the same structure and EFG tensors
(atomic units), and from which Soprano gets our signed C_Q, eta and Euler angles."""
import numpy as np
import pytest
from ase import Atoms

from pyexport import magres, nmr


def tetragonal_cell_with_tensors(seed=0):
    """A periodic cell with Cs, Pb, Br, I atoms and random traceless EFG tensors (V/Å²,
    tens of V/Å² like halide sites)."""
    rng = np.random.default_rng(seed)
    atoms = Atoms("CsPbBr2IBr", cell=[[6.1, 0.0, 0.0], [0.2, 6.0, 0.0], [0.0, 0.1, 6.4]], pbc=True)
    atoms.set_scaled_positions(rng.uniform(0, 1, (len(atoms), 3)))
    a = rng.normal(size=(len(atoms), 3, 3)) * 30.0
    tensors = a + np.swapaxes(a, 1, 2)
    tensors -= np.trace(tensors, axis1=1, axis2=2)[:, None, None] * np.eye(3) / 3
    return atoms, tensors


def test_ase_reads_back_structure_and_tensors(tmp_path):
    import ase.io

    atoms, tensors = tetragonal_cell_with_tensors()
    path = magres.write_magres(tmp_path / "frame.magres", atoms, tensors, comments=["frame 3 of md.dump"])
    text = path.read_text()
    assert text.startswith("#$magres-abinitio-v1.0\n") and "units efg au" in text
    read = ase.io.read(path, format="magres")
    assert read.get_chemical_symbols() == atoms.get_chemical_symbols()
    np.testing.assert_allclose(read.cell.array, atoms.cell.array, rtol=0, atol=1e-14)
    np.testing.assert_allclose(read.positions, atoms.positions, rtol=0, atol=1e-13)
    # CASTEP's site naming: the element and its count within it, from 1
    assert read.get_array("indices").tolist() == [1, 1, 1, 2, 1, 3]
    assert read.info["magres_units"] == {"efg": "au"}
    back = read.get_array("efg") * nmr.V_PER_A2_PER_EFG_AU
    assert np.abs(back - tensors).max() <= 1e-10 * np.abs(tensors).max()
    assert np.abs(read.get_array("efg") - tensors / 97.1736).max() < 1e-5 * np.abs(tensors).max()
    assert read.info["magresblock_calculation"]["calc_comment"] == [["frame", "3", "of", "md.dump"]]


def test_soprano_sees_our_signed_cq_eta_and_orientation(tmp_path):
    """Soprano reads the file (through ASE) and computes C_Q = e Q V_zz / h with its own Q
    table: the same signed value as nmr.cq_mhz (¹²⁷I and ¹³³Cs have Q < 0), the same eta and the
    same ZYZ Euler angles."""
    pytest.importorskip("soprano")
    import ase.io
    from soprano.properties.nmr import EFGAsymmetry, EFGEuler, EFGQuadrupolarConstant

    atoms, tensors = tetragonal_cell_with_tensors(seed=1)
    path = magres.write_magres(tmp_path / "mean.magres", atoms, tensors)
    read = ase.io.read(path, format="magres")
    isotopes = {"Cs": "133Cs", "Br": "79Br", "I": "127I"}
    soprano_cq_mhz = EFGQuadrupolarConstant.get(read, isotopes={"Cs": 133, "Br": 79, "I": 127}) / 1e6
    quadrupolar = [i for i, s in enumerate(atoms.get_chemical_symbols()) if s in isotopes]
    for i in quadrupolar:
        ours = nmr.cq_mhz(tensors[i], isotopes[atoms[i].symbol])
        assert soprano_cq_mhz[i] == pytest.approx(ours, rel=1e-9)
    assert np.sign(soprano_cq_mhz[0]) == -np.sign(nmr.vzz(tensors[0]))          # Q(¹³³Cs) < 0
    np.testing.assert_allclose(EFGAsymmetry.get(read), nmr.eta(tensors), atol=1e-12)
    np.testing.assert_allclose(EFGEuler.get(read), nmr.euler_zyz(nmr.principal_frame(tensors)[1]), atol=1e-8)


def test_molecule_without_lattice(tmp_path):
    import ase.io

    atoms = Atoms("N2", positions=[[0, 0, 0], [0, 0, 1.1]])
    tensors = np.array([np.diag([-1.0, -1.0, 2.0])] * 2) * 50.0
    read = ase.io.read(magres.write_magres(tmp_path / "n2.magres", atoms, tensors), format="magres")
    assert not read.pbc.any() and "lattice" not in (tmp_path / "n2.magres").read_text()
    np.testing.assert_allclose(read.get_array("efg") * nmr.V_PER_A2_PER_EFG_AU, tensors, rtol=1e-12)


def test_bad_input_is_refused():
    atoms, tensors = tetragonal_cell_with_tensors()
    symbols, positions = atoms.get_chemical_symbols(), atoms.positions
    with pytest.raises(ValueError, match=r"tensors_V_per_A2: expected shape \(6, 3, 3\)"):
        magres.magres_text(symbols, positions, atoms.cell.array, tensors[:5])
    bad = tensors.copy()
    bad[2, 0, 0] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        magres.magres_text(symbols, positions, atoms.cell.array, bad)
    with pytest.raises(ValueError, match="one line without"):
        magres.magres_text(symbols, positions, atoms.cell.array, tensors, comments=["average [frames]"])
