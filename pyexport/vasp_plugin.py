"""efgmd models inside a VASP run, through VASP's Python plugin interface (VASP ≥ 6.5).

- :func:`force_and_stress` adds the energy, forces and stress of an exported potential (e.g. a
  learned correction on top of DFT) to VASP's at every ionic step (``PLUGINS/FORCE_AND_STRESS``).
- :func:`structure` evaluates an exported EFG model on the structure of every ionic step and
  appends the tensors to a log file (``PLUGINS/STRUCTURE``); the structure is not changed.

Use: in the VASP run folder, a file ``vasp_plugin.py`` holding the one line ::

    from pyexport.vasp_plugin import force_and_stress, structure

the INCAR lines ::

    PLUGINS/FORCE_AND_STRESS = .TRUE.
    PLUGINS/STRUCTURE = .TRUE.

and the models named by the environment (``EFGMD_VASP_POTENTIAL``, ``EFGMD_VASP_EFG_MODEL``)
or by ``efgmd_plugin.json`` in the run folder (:func:`read_config`). VASP must be built with
plugin support and its embedded Python must be the environment efgmd is installed in.

The interface, as VASP documents it (wiki pages PLUGINS/FORCE_AND_STRESS and PLUGINS/STRUCTURE,
and the ``vasp`` Python package that VASP ships, which calls these functions):

- VASP imports ``vasp_plugin`` from the run folder and calls ``force_and_stress(constants,
  additions)`` and ``structure(constants, additions)`` at the end of each ionic step, for the
  ``PLUGINS/...`` tags set to ``.TRUE.``; an exception is printed and reported to VASP as an
  error of the plugin.
- ``constants`` is a frozen dataclass whose arrays VASP has made read-only; this module never
  writes to it. Fields used here: ``lattice_vectors`` (3, 3) Å, rows a, b, c; ``positions``
  (N, 3) fractional (direct) coordinates; ``ion_types`` (N,) the 0-based type of each ion
  (VASP converts them from Fortran's 1-based numbering before the call); ``atomic_numbers``
  (n_types,) per type; ``number_ions``; and, for ``structure``, ``total_energy`` (eV).
- ``additions`` of ``force_and_stress`` has exactly three writable fields: ``total_energy``
  (eV, a float that VASP reads back after the call), ``forces`` (N, 3) eV/Å and ``stress``
  (3, 3). The two arrays are views of VASP's own memory, so they are changed in place
  (``+=``); assigning a new array to the field would change nothing in VASP. With
  ``PLUGINS/ML_MODE = none`` (default) VASP adds them to its DFT values; with ``run`` they
  replace them.
- ``stress`` is in eV with VASP's sign: ``-σ·V`` (σ the physical stress, ASE's sign, V the cell
  volume), i.e. the ``Total`` line of OUTCAR's ``FORCE on cell =-STRESS`` block, whose ``in kB``
  line is the same tensor divided by V and converted to kbar. VASP's own ASE adapter
  (``vasp.force_field.AseForceField``) converts ASE stresses the same way (factor
  ``-J·V/(m³·Pa)`` = -V in ASE units). For a contract model, -σ·V is its virial (eV).
- ``additions`` of ``structure`` (``lattice_vectors``, ``positions``) could move the ions;
  :func:`structure` leaves it untouched.

The EFG log (``efgmd_efg.dat`` by default) is started afresh by the first call of a VASP run,
like VASP's own OUTCAR, and flushed after every step. Per ionic step: a line
``# step <k> total_energy <E> eV``, then one row per ion: step, ion (1-based, POSCAR order),
element, V_xx V_yy V_zz V_xy V_xz V_yz (V/Å², Cartesian, VASP's OUTCAR order), the principal
V_zz (|V_zz| ≥ |V_yy| ≥ |V_xx|), eta, the isotope used for C_Q and C_Q (MHz; ``nan`` with isotope
``-`` for elements without a quadrupolar isotope in :mod:`pyexport.nmr`).
"""
import json
import os
from dataclasses import dataclass, field, fields
from typing import Dict, Mapping, Optional

import numpy as np

__all__ = ["force_and_stress", "structure", "read_config", "PluginConfig", "PluginError",
           "atoms_from_vasp", "vasp_stress", "reset", "CONFIG_FILE", "ENV_POTENTIAL", "ENV_EFG_MODEL"]

CONFIG_FILE = "efgmd_plugin.json"
ENV_POTENTIAL = "EFGMD_VASP_POTENTIAL"
ENV_EFG_MODEL = "EFGMD_VASP_EFG_MODEL"
ENV_EFG_LOG = "EFGMD_VASP_EFG_LOG"
DEFAULT_EFG_LOG = "efgmd_efg.dat"


class PluginError(RuntimeError):
    """The plugin cannot run: no model configured, a bad config file, or arguments that do not
    look like VASP's."""


@dataclass(frozen=True)
class PluginConfig:
    """What the plugin functions use; see :func:`read_config`.

    potential: exported ``potential`` (.pt) for :func:`force_and_stress`.
    efg_model: exported ``efg`` model (.pt) for :func:`structure`.
    efg_log: file the EFG predictions go to.
    device: torch device of both models ("cpu" or "cuda").
    threads: torch intra-op threads. Default 1: the plugin runs inside an MPI job whose ranks
        already occupy the cores.
    isotopes: element -> isotope for the C_Q column (default :func:`pyexport.nmr.default_isotope`).
    """

    potential: Optional[str] = None
    efg_model: Optional[str] = None
    efg_log: str = DEFAULT_EFG_LOG
    device: str = "cpu"
    threads: Optional[int] = 1
    isotopes: Dict[str, str] = field(default_factory=dict)


_CONFIG_KEYS = {f.name for f in fields(PluginConfig)}


def read_config(run_dir: str = ".", environ: Optional[Mapping[str, str]] = None) -> PluginConfig:
    """The plugin configuration of the VASP run in ``run_dir``.

    ``run_dir/efgmd_plugin.json`` (optional) holds any of the keys of :class:`PluginConfig`,
    e.g. ``{"potential": "correction.pt", "efg_model": "efg.pt", "isotopes": {"Br": "81Br"}}``;
    relative paths in it are relative to ``run_dir``. The environment variables
    ``EFGMD_VASP_POTENTIAL``, ``EFGMD_VASP_EFG_MODEL`` and ``EFGMD_VASP_EFG_LOG`` override the
    file's entries. An unknown key or malformed JSON raises :class:`PluginError` naming the file.
    """
    environ = os.environ if environ is None else environ
    values: dict = {}
    path = os.path.join(run_dir, CONFIG_FILE)
    if os.path.isfile(path):
        values = _read_config_file(path)
        for key in ("potential", "efg_model", "efg_log"):
            if values.get(key):
                values[key] = os.path.normpath(os.path.join(run_dir, os.path.expanduser(values[key])))
    for key, name in (("potential", ENV_POTENTIAL), ("efg_model", ENV_EFG_MODEL), ("efg_log", ENV_EFG_LOG)):
        if environ.get(name):
            values[key] = os.path.expanduser(environ[name])
    if values.get("efg_log") is None:
        values["efg_log"] = os.path.join(run_dir, DEFAULT_EFG_LOG)
    return PluginConfig(**values)


def _read_config_file(path: str) -> dict:
    try:
        with open(path) as fh:
            values = json.load(fh)
    except json.JSONDecodeError as exc:
        raise PluginError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(values, dict):
        raise PluginError(f"{path}: expected a JSON object with keys {sorted(_CONFIG_KEYS)}")
    unknown = sorted(set(values) - _CONFIG_KEYS)
    if unknown:
        raise PluginError(f"{path}: unknown key(s) {unknown}; known: {sorted(_CONFIG_KEYS)}")
    for key in ("potential", "efg_model", "efg_log", "device"):
        if values.get(key) is not None and not isinstance(values[key], str):
            raise PluginError(f"{path}: {key!r} must be a string, got {values[key]!r}")
    threads = values.get("threads", 1)
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise PluginError(f"{path}: 'threads' must be a positive integer or null, got {threads!r}")
    isotopes = values.get("isotopes", {})
    if not isinstance(isotopes, dict) or not all(isinstance(v, str) for v in isotopes.values()):
        raise PluginError(f"{path}: 'isotopes' must map elements to isotope names, e.g. {{\"Br\": \"81Br\"}}")
    from .nmr import parse_isotope_options

    try:
        values["isotopes"] = parse_isotope_options((f"{el}={iso}" for el, iso in isotopes.items()),
                                                   f"{path}: isotopes")
    except ValueError as exc:
        raise PluginError(str(exc)) from None
    return values


# --------------------------------------------------------------------------------------------
# State of one VASP run (one Python interpreter): configuration, loaded models, EFG log
# --------------------------------------------------------------------------------------------
class _State:
    def __init__(self):
        self.config: Optional[PluginConfig] = None
        self.calculator = None
        self.efg_model = None
        self.efg_step = 0
        self.efg_log_started = False


_STATE = _State()


def reset() -> None:
    """Forget the configuration, the loaded models and the EFG step count (the next call
    re-reads the configuration and starts a new EFG log). VASP never needs this; tests and
    long-lived Python processes driving several runs do."""
    global _STATE
    _STATE = _State()


def _config() -> PluginConfig:
    if _STATE.config is None:
        _STATE.config = read_config(os.getcwd())
    return _STATE.config


def _set_threads(config: PluginConfig) -> None:
    if config.threads is not None:
        import torch
        torch.set_num_threads(int(config.threads))


def _calculator():
    if _STATE.calculator is None:
        config = _config()
        if not config.potential:
            raise PluginError(f"PLUGINS/FORCE_AND_STRESS is on but no potential is configured: set "
                              f"{ENV_POTENTIAL} or 'potential' in {CONFIG_FILE} in the run folder")
        from .calculator import MLFFCalculator
        _set_threads(config)
        _STATE.calculator = MLFFCalculator(config.potential, device=config.device)
    return _STATE.calculator


def _efg_model():
    if _STATE.efg_model is None:
        config = _config()
        if not config.efg_model:
            raise PluginError(f"PLUGINS/STRUCTURE is on but no EFG model is configured: set "
                              f"{ENV_EFG_MODEL} or 'efg_model' in {CONFIG_FILE} in the run folder")
        from .contract import load_model
        _set_threads(config)
        _STATE.efg_model, _ = load_model(config.efg_model, kind="efg", device=config.device)
    return _STATE.efg_model


# --------------------------------------------------------------------------------------------
# Conversions between VASP's arguments and ASE
# --------------------------------------------------------------------------------------------
def atoms_from_vasp(constants):
    """The structure of VASP's ``constants`` as a periodic ``ase.Atoms`` (positions in Å, not
    wrapped). Checks the shapes and that ``ion_types`` is 0-based, as VASP hands it over."""
    from ase import Atoms

    n = int(constants.number_ions)
    cell = np.array(constants.lattice_vectors, dtype=np.float64)
    fractional = np.array(constants.positions, dtype=np.float64)
    ion_types = np.array(constants.ion_types, dtype=np.int64)
    numbers_per_type = np.array(constants.atomic_numbers, dtype=np.int64)
    if cell.shape != (3, 3):
        raise PluginError(f"constants.lattice_vectors has shape {cell.shape}, expected (3, 3)")
    if fractional.shape != (n, 3):
        raise PluginError(f"constants.positions has shape {fractional.shape}, expected ({n}, 3)")
    if ion_types.shape != (n,):
        raise PluginError(f"constants.ion_types has shape {ion_types.shape}, expected ({n},)")
    if n and (ion_types.min() < 0 or ion_types.max() >= len(numbers_per_type)):
        raise PluginError(f"constants.ion_types range {ion_types.min()}..{ion_types.max()} does not "
                          f"index the {len(numbers_per_type)} ion types (VASP passes them 0-based)")
    return Atoms(numbers=numbers_per_type[ion_types], cell=cell, scaled_positions=fractional, pbc=True)


def vasp_stress(ase_stress, volume: float) -> np.ndarray:
    """VASP's plugin stress (3, 3) in eV, ``-σ·V``, from an ASE stress σ in eV/Å³ (Voigt
    xx yy zz yz xz xy, or (3, 3)) and the cell volume V in Å³."""
    s = np.asarray(ase_stress, dtype=np.float64)
    if s.shape == (6,):
        xx, yy, zz, yz, xz, xy = s
        s = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    elif s.shape != (3, 3):
        raise ValueError(f"stress: expected Voigt (6,) or (3, 3), got shape {s.shape}")
    return -float(volume) * s


# --------------------------------------------------------------------------------------------
# The plugin functions
# --------------------------------------------------------------------------------------------
def force_and_stress(constants, additions) -> None:
    """``PLUGINS/FORCE_AND_STRESS``: add the configured potential's energy (eV), forces (eV/Å)
    and stress (eV, VASP's -σ·V) to ``additions``, in place. Touches nothing else."""
    atoms = atoms_from_vasp(constants)
    calculator = _calculator()
    atoms.calc = calculator
    energy = float(atoms.get_potential_energy())
    forces = atoms.get_forces()
    stress = vasp_stress(atoms.get_stress(voigt=True), atoms.get_volume())
    if np.shape(additions.forces) != forces.shape:
        raise PluginError(f"additions.forces has shape {np.shape(additions.forces)}, expected {forces.shape}")
    if np.shape(additions.stress) != (3, 3):
        raise PluginError(f"additions.stress has shape {np.shape(additions.stress)}, expected (3, 3)")
    additions.forces += forces
    additions.stress += stress
    additions.total_energy += energy
    print(f"efgmd plugin: added {os.path.basename(calculator.model_path)}: E = {energy:.6f} eV, "
          f"max |F| = {np.linalg.norm(forces, axis=1).max(initial=0.0):.4f} eV/A", flush=True)


def structure(constants, additions) -> None:
    """``PLUGINS/STRUCTURE``: append the configured EFG model's tensors for the structure of
    this ionic step to the EFG log. ``additions`` (the structure VASP continues with) is left
    untouched."""
    from . import nmr

    from .efg_eval import predict_efg

    atoms = atoms_from_vasp(constants)
    model = _efg_model()
    efg = predict_efg(model, [atoms])[0]
    config = _config()
    _STATE.efg_step += 1
    mode = "a" if _STATE.efg_log_started else "w"
    with open(config.efg_log, mode) as fh:
        if not _STATE.efg_log_started:
            fh.write(_EFG_LOG_HEADER)
            _STATE.efg_log_started = True
        fh.write(f"# step {_STATE.efg_step} total_energy {float(constants.total_energy):.8f} eV\n")
        symbols = atoms.get_chemical_symbols()
        v6 = nmr.to_voigt6(efg)
        vzz = nmr.vzz(efg)
        eta = nmr.eta(efg)
        isotopes = _isotopes(symbols, config)
        for k, symbol in enumerate(symbols):
            isotope = isotopes.get(symbol, "-")
            cq = float(nmr.cq_mhz(efg[k], isotope)) if isotope != "-" else float("nan")
            fh.write(f"{_STATE.efg_step:6d} {k + 1:6d} {symbol:>3s} "
                     + " ".join(f"{x:14.6e}" for x in v6[k])
                     + f" {vzz[k]:14.6e} {eta[k]:8.5f} {isotope:>6s} {cq:12.6f}\n")


_EFG_LOG_HEADER = (
    "# efgmd EFG model predictions per VASP ionic step (pyexport.vasp_plugin)\n"
    "# V in V/A^2 (Cartesian, VASP order xx yy zz xy xz yz); Vzz principal, |Vzz|>=|Vyy|>=|Vxx|;"
    " eta=(Vxx-Vyy)/Vzz; Cq = e Q Vzz / h in MHz\n"
    "# columns: step ion element V_xx V_yy V_zz V_xy V_xz V_yz V_zz_principal eta isotope C_Q_MHz\n")


def _isotopes(symbols, config: PluginConfig) -> Dict[str, str]:
    """element -> isotope of the C_Q column for the elements of this structure: the configured
    ones (those of other elements are ignored), the defaults of :mod:`pyexport.nmr` otherwise."""
    from .nmr import resolve_isotopes

    return resolve_isotopes(symbols, {el: iso for el, iso in config.isotopes.items() if el in symbols})
