"""``pyexport fit-efg``: train the equivariant EFG model (:func:`pyexport.fit_efg.run_efg_fit`),
write its checkpoint and metrics JSON, print a summary."""
import json
from typing import Dict, Optional

from ..outputs import refuse_overwriting_inputs
from ..training.config import EFGFitConfig, EFGTraining
from .options import MAX_ATOMS_HELP, add_config_argument, element_list, resolve_options, show_defaults
from .reports import format_efg_summary


def _fit_efg_defaults() -> dict:
    """The options of ``pyexport fit-efg`` at the defaults of
    :class:`pyexport.training.config.EFGFitConfig` and ``EFGTraining``, spelled as on the command line."""
    c = EFGFitConfig()
    return {
        "data": [], "output": "efg.ckpt", "metrics": None, "cutoff": c.cutoff, "lmax": c.lmax, "channels": c.channels,
        "product_channels": c.product_channels, "n_radial": c.n_radial, "hidden": c.hidden,
        "epochs": c.training.epochs, "lr": c.training.learning_rate, "batch_size": c.training.batch_frames,
        "patience": c.training.patience, "val_fraction": c.val_fraction, "test_fraction": c.test_fraction,
        "seed": c.seed, "dtype": c.dtype, "elements": c.elements, "max_atoms": c.max_atoms, "species_weights": "inverse-variance",
        "isotopes": None, "threads": None, "progress": c.progress,
    }


#: Defaults of ``pyexport fit-efg``; config-file keys are these names.
FIT_EFG_DEFAULTS = _fit_efg_defaults()


def add_fit_efg_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "fit-efg", help="train the equivariant EFG model on per-atom EFG labels",
        description="Train the e3nn EFG model (one 2e irrep per atom, strictly local) on structures with "
                    "per-atom EFG tensors (V/Å²): OUTCAR with LEFG tables, extxyz with an 'efg' column.")
    p.add_argument("data", nargs="*", help="data files (vasprun.xml, OUTCAR, extxyz, ...)")
    add_config_argument(p)
    p.add_argument("-o", "--output", help="checkpoint to write")
    p.add_argument("--metrics", help="write the metrics JSON here")
    p.add_argument("--cutoff", type=float, help="cutoff radius, Å")
    p.add_argument("--lmax", type=int, help="largest l of the spherical harmonics (2-4)")
    p.add_argument("--channels", type=int, help="channels per l of the neighbour density")
    p.add_argument("--product-channels", type=int, help="channels per l in the tensor product")
    p.add_argument("--n-radial", type=int, help="Bessel radial basis functions")
    p.add_argument("--hidden", type=int, help="width of the radial and gate MLPs")
    p.add_argument("--epochs", type=int, help="maximum Adam epochs")
    p.add_argument("--lr", type=float, help="Adam learning rate (halved on validation plateaus)")
    p.add_argument("--batch-size", type=int, help="structures per optimiser step")
    p.add_argument("--patience", type=int, help="epochs without validation improvement before stopping")
    p.add_argument("--val-fraction", type=float, help="fraction of the structures for validation")
    p.add_argument("--test-fraction", type=float, help="fraction of the structures for the test set")
    p.add_argument("--seed", type=int, help="seed of the split and the initialisation")
    p.add_argument("--dtype", choices=("float64", "float32"), help="dtype of the exported model (training is float64)")
    p.add_argument("--elements", help="comma-separated element order (default: from the data)")
    p.add_argument("--max-atoms", type=int, help=MAX_ATOMS_HELP)
    p.add_argument("--species-weights", help="per-species loss weights, 'inverse-variance' or e.g. 'Cs=1,Pb=1,Br=0.05'")
    p.add_argument("--isotope", dest="isotopes", action="append", metavar="EL=ISO",
                   help="isotope for the C_Q metrics, e.g. Br=81Br (repeatable); other elements get their "
                        "default isotope (pyexport.nmr.DEFAULT_ISOTOPES)")
    p.add_argument("--threads", type=int,
                   help="torch CPU threads (default: torch's choice); for cells of a few dozen atoms one "
                        "thread is usually fastest")
    p.add_argument("--no-progress", dest="progress", action="store_const", const=False, help="no progress bar")
    show_defaults(p, FIT_EFG_DEFAULTS)
    p.set_defaults(func=run_fit_efg)


def parse_species_weights(text: Optional[str]) -> Optional[Dict[str, float]]:
    """``'Cs=1,Br=0.1'`` (or a config table) as {element: weight}; None for 'inverse-variance'."""
    if not text or text == "inverse-variance":
        return None
    if isinstance(text, dict):
        return {k: float(v) for k, v in text.items()}
    out = {}
    for item in text.split(","):
        if "=" not in item:
            raise ValueError(f"--species-weights: expected ELEMENT=WEIGHT items like 'Cs=1,Br=0.1', got {item!r}")
        element, value = (x.strip() for x in item.split("=", 1))
        try:
            out[element] = float(value)
        except ValueError:
            raise ValueError(f"--species-weights: {value!r} is not a number (item {item!r})") from None
    return out


def chosen_isotopes(value) -> Optional[Dict[str, str]]:
    """The ``isotopes`` option as {element: isotope}: the repeated ``--isotope Br=81Br`` values,
    or in --config a table ``{"Br": "81Br"}`` or a list ``["Br=81Br"]``; None when not given.
    Read by :mod:`pyexport.nmr` (its errors name ``--isotope``)."""
    from .. import nmr

    if value is None:
        return None
    if isinstance(value, dict):
        return nmr.parse_isotope_options(f"{element}={isotope}" for element, isotope in value.items())
    return nmr.parse_isotope_options([value] if isinstance(value, str) else value)


def config_from_options(o: dict):
    """A :class:`pyexport.fit_efg.EFGFitConfig` from resolved options."""
    return EFGFitConfig(
        data=list(o["data"]), cutoff=o["cutoff"], lmax=o["lmax"], channels=o["channels"],
        product_channels=o["product_channels"], n_radial=o["n_radial"], hidden=o["hidden"],
        elements=element_list(o["elements"]), max_atoms=None if o["max_atoms"] is None else int(o["max_atoms"]),
        species_weights=parse_species_weights(o["species_weights"]),
        isotopes=chosen_isotopes(o["isotopes"]),
        val_fraction=o["val_fraction"], test_fraction=o["test_fraction"], seed=o["seed"], dtype=o["dtype"],
        training=EFGTraining(epochs=o["epochs"], learning_rate=o["lr"], batch_frames=o["batch_size"],
                             patience=o["patience"]),
        progress=bool(o["progress"]))


def run_fit_efg(args) -> int:
    """``pyexport fit-efg``: train, write the checkpoint (and metrics JSON), print a summary."""
    import torch

    from ..fit_efg import read_efg_structures, run_efg_fit
    from ..training.checkpoints import write_checkpoint

    o = resolve_options(args, FIT_EFG_DEFAULTS)
    config = config_from_options(o)
    if not config.data:
        raise ValueError("no data files: give them as arguments or as 'data' in --config")
    refuse_overwriting_inputs([config.data, args.config], [o["output"], o["metrics"]])
    if o["threads"] is not None:
        if o["threads"] < 1:
            raise ValueError(f"--threads must be >= 1, got {o['threads']}")
        torch.set_num_threads(o["threads"])
    structures = read_efg_structures(config.data)
    ckpt, metrics, _ = run_efg_fit(config, structures)
    write_checkpoint(ckpt, o["output"])
    if o["metrics"]:
        with open(o["metrics"], "w") as fh:
            json.dump(metrics, fh, indent=2, sort_keys=True)
    print(format_efg_summary(metrics, o["output"]))
    return 0
