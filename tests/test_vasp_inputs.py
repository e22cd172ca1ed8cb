"""VASP job folders for labelling: POSCAR round trip, INCAR tags, QUAD_EFG and POTCAR order."""
import argparse
import gzip
import json
import os

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.vasp import Vasp

from pyexport.lammps.dump import read_frames
from pyexport.nmr import quadrupole_moment_mb
from pyexport.cli.select import add_select_parser
from pyexport.cli.vasp_inputs import add_vasp_inputs_parser
from pyexport.vasp_inputs import (DEFAULT_INCAR, IncarError, kpoint_mesh, read_incar,
                                  write_vasp_inputs)

DATA = os.path.join(os.path.dirname(__file__), "data")
WATER_DUMP = os.path.join(DATA, "mdanalysis", "wat.lammpstrj.bz2")   # 3 frames, 24 atoms, types H O


def fake_pp_path(root, names, compressed=()):
    """$VASP_PP_PATH/potpaw_PBE/<name>/POTCAR stand-ins: header lines only (real POTCARs are
    licensed and never in the repository)."""
    for name in names:
        folder = root / "potpaw_PBE" / name
        folder.mkdir(parents=True)
        element = name.split("_")[0]
        text = (f"  PAW_PBE {name} 01Jan2000\n  7.00000000000000\n parameters from PSCTR are:\n"
                f"   VRHFIN ={element}: fake\n   TITEL  = PAW_PBE {name} 01Jan2000\n   body of {name}\n"
                f" End of Dataset\n")
        if name in compressed:
            with gzip.open(folder / "POTCAR.Z", "wt") as fh:
                fh.write(text)
        else:
            (folder / "POTCAR").write_text(text)
    return str(root)


def shuffled_frames(n=3):
    """Triclinic rattled CsPbBr3 supercells, atoms in random order, some outside the cell."""
    frames = []
    for seed in range(n):
        unit = Atoms("CsPbBr3", scaled_positions=[[.5, .5, .5], [0, 0, 0], [.5, 0, 0], [0, .5, 0], [0, 0, .5]],
                     cell=[[5.9, 0, 0], [0.3, 5.8, 0], [-0.2, 0.25, 6.1]], pbc=True)
        atoms = unit.repeat((2, 1, 1))
        atoms.rattle(0.3, seed=seed)           # pushes some atoms across the cell faces
        atoms = atoms[np.random.default_rng(seed).permutation(len(atoms))]
        atoms.info["timestep"] = 100 * seed
        frames.append(atoms)
    return frames


def potcar_titles(path):
    return [line.split("=", 1)[1].strip() for line in open(path) if line.strip().startswith("TITEL")]


def incar_keys_and_values(path):
    """INCAR read back by ASE's VASP calculator (an independent parser): {TAG: value}. Also
    checks that every line is a comment or one TAG = value, so that ASE misses nothing."""
    lines = [line for line in open(path).read().splitlines() if not line.startswith("#")]
    assert all(len(line.split(" = ")) == 2 for line in lines), lines
    raw_keys = [line.split(" = ")[0] for line in lines]
    calc = Vasp()
    calc.read_incar(str(path))
    found = {}
    for group in (calc.float_params, calc.exp_params, calc.string_params, calc.int_params,
                  calc.bool_params, calc.special_params, calc.list_bool_params, calc.list_int_params,
                  calc.list_float_params):
        found.update({k.upper(): v for k, v in group.items() if v is not None})
    assert sorted(raw_keys) == sorted(found)
    return found


@pytest.fixture
def pp_path(tmp_path):
    return fake_pp_path(tmp_path / "pp", ["Cs_sv", "Pb_d", "Br", "Pb", "Cs"], compressed=("Br",))


def test_poscar_round_trips_the_frame_in_potcar_species_order(tmp_path, pp_path):
    frames = shuffled_frames()
    assert any((f.get_scaled_positions(wrap=False) < 0).any() for f in frames)   # not wrapped
    folders = write_vasp_inputs(frames, tmp_path / "jobs", efg=True, pp_path=pp_path)
    assert [f.name for f in folders] == ["frame_000", "frame_001", "frame_002"]
    for frame, folder in zip(frames, folders):
        record = json.loads((folder / "efgmd_job.json").read_text())
        poscar = ase.io.read(folder / "POSCAR", format="vasp")
        perm = np.array(record["poscar_to_frame"])
        assert sorted(perm.tolist()) == list(range(len(frame)))
        species = record["species"]
        assert species == list(dict.fromkeys(frames[0].get_chemical_symbols()))   # first appearance
        # the POSCAR lists the species in POTCAR order, atoms grouped
        symbols = poscar.get_chemical_symbols()
        assert list(dict.fromkeys(symbols)) == species
        assert symbols == sorted(symbols, key=species.index)
        assert [t.split()[1].split("_")[0] for t in potcar_titles(folder / "POTCAR")] == species
        # the same atoms at the same places
        assert symbols == [frame.get_chemical_symbols()[k] for k in perm]
        assert np.allclose(poscar.positions, frame.positions[perm], rtol=0, atol=1e-8)
        assert np.allclose(poscar.cell.array, frame.cell.array, rtol=0, atol=1e-8)
        assert record["info"]["timestep"] == frame.info["timestep"]


def test_incar_holds_exactly_the_requested_tags_and_quad_efg_follows_potcar_order(tmp_path, pp_path):
    template = tmp_path / "INCAR.template"
    template.write_text("# labelling settings\nENCUT = 600 ! more\nGGA = PS; LREAL = Auto\n\nISPIN=1\n")
    tags = {**DEFAULT_INCAR, **read_incar(template), "NELM": "200"}
    frames = shuffled_frames(1)
    folder = write_vasp_inputs(frames, tmp_path / "jobs", efg=True, template=read_incar(template),
                               overrides={"NELM": "200"}, species=["Cs", "Pb", "Br"], pp_path=pp_path,
                               isotopes={"Br": "81Br"})[0]
    found = incar_keys_and_values(folder / "INCAR")
    assert set(found) == set(tags) | {"LEFG", "QUAD_EFG"}
    assert found["ENCUT"] == 600.0 and found["GGA"] == "PS" and found["LREAL"] == "Auto"
    assert found["NELM"] == 200 and found["LEFG"] is True and found["IBRION"] == -1
    # one moment per POTCAR, in POTCAR order: 133Cs, Pb (no quadrupolar isotope), 81Br
    assert found["QUAD_EFG"] == [quadrupole_moment_mb("133Cs"), 0.0, quadrupole_moment_mb("81Br")]
    assert [t.split()[1] for t in potcar_titles(folder / "POTCAR")] == ["Cs_sv", "Pb_d", "Br"]
    record = json.loads((folder / "efgmd_job.json").read_text())
    assert record["quad_efg_source"] == ["133Cs", "no quadrupolar isotope", "81Br"]

    # another species order moves QUAD_EFG with the POTCARs; no --efg, no EFG tags
    folder = write_vasp_inputs(frames, tmp_path / "jobs2", efg=True, species=["Br", "Cs", "Pb"],
                               pp_path=pp_path, setups="minimal")[0]
    found = incar_keys_and_values(folder / "INCAR")
    assert found["QUAD_EFG"] == [quadrupole_moment_mb("79Br"), quadrupole_moment_mb("133Cs"), 0.0]
    assert [t.split()[1] for t in potcar_titles(folder / "POTCAR")] == ["Br", "Cs_sv", "Pb"]   # ASE 'minimal'
    folder = write_vasp_inputs(frames, tmp_path / "jobs3", pp_path=pp_path)[0]
    assert set(incar_keys_and_values(folder / "INCAR")) == set(DEFAULT_INCAR)


def test_efg_tags_in_template_and_unknown_quadrupole_moments_are_errors(tmp_path, pp_path):
    frames = shuffled_frames(1)
    with pytest.raises(IncarError, match="QUAD_EFG"):
        write_vasp_inputs(frames, tmp_path / "a", efg=True, template={"QUAD_EFG": "1 2 3"}, pp_path=pp_path)
    gallium = [Atoms("GaN", positions=[[0, 0, 0], [1.5, 1.5, 1.5]], cell=np.eye(3) * 3.2, pbc=True)]
    with pytest.raises(ValueError, match="--quad Ga="):
        write_vasp_inputs(gallium, tmp_path / "b", efg=True, potcar=False)
    folder = write_vasp_inputs(gallium, tmp_path / "c", efg=True, potcar=False, quad_mb={"Ga": 107.0})[0]
    assert incar_keys_and_values(folder / "INCAR")["QUAD_EFG"] == [107.0, quadrupole_moment_mb("14N")]
    # isotopes are read by pyexport.nmr, as by every command: errors name --isotope and the item
    for isotopes, message in (({"Br": "133Cs"}, "--isotope Br=133Cs: 133Cs is not an isotope of Br"),
                              ({"Br": "80Br"}, "--isotope Br=80Br: .*no quadrupole moment"),
                              ({"I": "127I"}, "--isotope I=127I: there is no I here")):
        with pytest.raises(ValueError, match=message):
            write_vasp_inputs(frames, tmp_path / "d", efg=True, potcar=False, isotopes=isotopes)
    assert not (tmp_path / "d").exists()
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    bad = tmp_path / "INCAR.bad"
    bad.write_text("ENCUT = 500\nISMEAR 0\n")
    with pytest.raises(IncarError, match=r"INCAR.bad:2"):
        read_incar(bad)


def test_potcar_lookup_errors(tmp_path, pp_path, monkeypatch):
    frames = shuffled_frames(1)
    monkeypatch.delenv("VASP_PP_PATH", raising=False)
    with pytest.raises(FileNotFoundError, match="VASP_PP_PATH"):
        write_vasp_inputs(frames, tmp_path / "a")
    monkeypatch.setenv("VASP_PP_PATH", pp_path)
    with pytest.raises(FileNotFoundError, match="Pb_GW"):
        write_vasp_inputs(frames, tmp_path / "b", potcar_overrides={"Pb": "Pb_GW"})
    # a POTCAR of the wrong element under the expected name
    os.rename(os.path.join(pp_path, "potpaw_PBE", "Cs", "POTCAR"), tmp_path / "cs")
    (tmp_path / "pp" / "potpaw_PBE" / "Cs" / "POTCAR").write_text("   TITEL  = PAW_PBE Pb 01Jan2000\n")
    with pytest.raises(ValueError, match="expected Cs"):
        write_vasp_inputs(frames, tmp_path / "c", potcar_overrides={"Cs": "Cs"})
    assert not any((tmp_path / name).exists() for name in ("a", "b", "c"))


def test_kpoint_mesh_follows_the_kspacing_rule(tmp_path, pp_path):
    frame = shuffled_frames(1)[0]
    folder = write_vasp_inputs([frame], tmp_path / "jobs", kspacing=0.3, pp_path=pp_path)[0]
    lines = (folder / "KPOINTS").read_text().splitlines()
    assert lines[1].strip() == "0" and lines[2].strip() == "Gamma"
    mesh = np.array([int(v) for v in lines[3].split()])
    lengths = np.linalg.norm(frame.cell.reciprocal(), axis=1) * 2 * np.pi
    assert np.all(mesh * 0.3 >= lengths) and np.all((mesh - 1) * 0.3 < lengths)
    assert mesh.tolist() == [2, 4, 4]
    assert kpoint_mesh(np.eye(3) * 100.0).tolist() == [1, 1, 1]


# --------------------------------------------------------------------------------------------
# pyexport select -> pyexport vasp-inputs
# --------------------------------------------------------------------------------------------
def run_cli(argv):
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers(dest="command")
    add_select_parser(subparsers)
    add_vasp_inputs_parser(subparsers)
    args = parser.parse_args(argv)
    return args.func(args)


def test_select_then_vasp_inputs_on_a_real_dump(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VASP_PP_PATH", fake_pp_path(tmp_path / "pp", ["H", "O"]))
    selected = tmp_path / "selected"
    run_cli(["select", "--dump", WATER_DUMP, "--types", "H,O", "-n", "2", "-o", str(selected)])
    assert run_cli(["vasp-inputs", str(selected), "--efg", "--kpts", "1,1,1", "--set", "ENCUT=700"]) == 0
    assert "QUAD_EFG (mb): O=-25.58 (17O) H=2.86 (2H)" in capsys.readouterr().out
    selection = json.loads((selected / "selection.json").read_text())
    dump = read_frames(WATER_DUMP, types="H,O")
    jobs = sorted((selected / "vasp").iterdir())
    assert [j.name for j in jobs] == ["frame_000", "frame_001"]
    for job, entry in zip(jobs, selection["selected"]):
        frame = dump[entry["position"]]
        record = json.loads((job / "efgmd_job.json").read_text())
        perm = np.array(record["poscar_to_frame"])
        poscar = ase.io.read(job / "POSCAR", format="vasp")
        assert record["species"] == ["O", "H"]          # first appearance: atom id 1 is an O
        assert poscar.get_chemical_symbols() == ["O"] * 8 + ["H"] * 16
        assert poscar.get_chemical_symbols() == [frame.get_chemical_symbols()[k] for k in perm]
        # frames.extxyz keeps 8 decimals: the POSCAR equals the dump to 1e-8 Å
        assert np.allclose(poscar.positions, frame.positions[perm], rtol=0, atol=1e-8)
        found = incar_keys_and_values(job / "INCAR")
        assert found["ENCUT"] == 700.0
        assert found["QUAD_EFG"] == [quadrupole_moment_mb("17O"), quadrupole_moment_mb("2H")]
        assert [t.split()[1] for t in potcar_titles(job / "POTCAR")] == ["O", "H"]
        assert (job / "KPOINTS").read_text().splitlines()[3].split() == ["1", "1", "1"]
