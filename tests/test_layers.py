"""The layers point one way: ``pyexport`` (data, models, contract, NMR constants, LAMMPS IO) is
the lower layer and ``efg`` (trajectory analysis) sits on top of it. No module of ``pyexport``
may import ``efg``, at module level or inside a function (a function-local import hides a cycle,
it does not remove it)."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def upward_imports(path: Path):
    """(line, statement) of every import of the ``efg`` package in the Python file ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        if any(name == "efg" or name.startswith("efg.") for name in names):
            found.append((node.lineno, ast.unparse(node)))
    return found


def test_pyexport_never_imports_efg():
    sources = sorted((REPO / "pyexport").rglob("*.py"))
    assert len(sources) > 20            # the package is where this test thinks it is
    offenders = [f"{path.relative_to(REPO)}:{line}: {statement}"
                 for path in sources for line, statement in upward_imports(path)]
    assert not offenders, "pyexport imports the upper layer efg:\n" + "\n".join(offenders)


def test_the_check_sees_function_local_imports(tmp_path):
    """The checker itself: imports inside functions and plain ``import efg.x`` count, a module
    merely named like efg (``efgmd``, ``pyexport.efg_eval``) does not."""
    source = tmp_path / "m.py"
    source.write_text("import os\nfrom pyexport import efg_eval\nimport efgmd\n\n"
                      "def f():\n    from efg.analyze import analyze\n    import efg.scan as s\n")
    assert [line for line, _ in upward_imports(source)] == [6, 7]
