"""The options of every fit, with their defaults: the one place they are written.

Light on purpose (no torch): the command line reads its defaults from these dataclasses
(:mod:`pyexport.cli.fit`, :mod:`pyexport.cli.fit_efg`) to parse and to show them in ``--help``.

- :class:`FitConfig` (``pyexport fit``, ``committee fit``) with :class:`LossWeights` (the loss,
  :mod:`pyexport.training.loss`) and :class:`NNTraining` (``cluster-nn``,
  :mod:`pyexport.training.nn`); :data:`DEFAULT_LAMBDAS` (the ridge grid, :mod:`pyexport.training.ridge`);
- :class:`EFGFitConfig` (``pyexport fit-efg``) with :class:`EFGTraining`.
"""
import math
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

#: Default cutoff radius of the fitted models (potential and EFG), Å.
DEFAULT_CUTOFF_A = 6.0


@dataclass
class LossWeights:
    """Weights of the energy (per atom, eV), force (eV/Å) and stress (GPa) terms of the loss."""

    energy: float = 1000.0
    forces: float = 1.0
    stress: float = 0.1

    def __post_init__(self):
        for name in ("energy", "forces", "stress"):
            value = float(getattr(self, name))
            if not value >= 0.0 or not math.isfinite(value):
                raise ValueError(f"weight {name!r} must be a finite number >= 0, got {getattr(self, name)}")
            setattr(self, name, value)
        if self.energy == self.forces == self.stress == 0.0:
            raise ValueError("at least one loss weight must be positive")


@dataclass
class NNTraining:
    """Options of the ``cluster-nn`` training (Adam with early stopping, then optional L-BFGS)."""

    hidden: Tuple[int, ...] = (64, 64)
    epochs: int = 200
    learning_rate: float = 1e-3
    batch_atoms: int = 400
    patience: int = 20
    lbfgs_steps: int = 0
    train_linear: bool = False


#: The ridge λ grid: 1e-15 ... 1, one per decade.
DEFAULT_LAMBDAS = tuple(10.0 ** k for k in range(-15, 1))


@dataclass
class FitConfig:
    """Everything ``pyexport fit`` needs (config file keys = these names)."""

    data: List[str] = field(default_factory=list)
    model: str = "cluster"
    basis: str = "medium"
    cutoff: float = DEFAULT_CUTOFF_A
    basis_overrides: Dict[str, float] = field(default_factory=dict)
    pair_cutoffs: Dict[str, float] = field(default_factory=dict)   # "A-B" -> Å (ClusterBasis)
    elements: Optional[List[str]] = None
    weights: LossWeights = field(default_factory=LossWeights)
    split: Tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    dtype: str = "float64"
    lambdas: Tuple[float, ...] = DEFAULT_LAMBDAS
    lambda_tolerance: float = 0.02
    nn: NNTraining = field(default_factory=NNTraining)
    max_atoms: Optional[int] = None  # leave out structures of more atoms (training.data.at_most_atoms)
    core_repulsion: bool = True      # CoreRepulsion below the data's shortest pair distances
    # eV. 100 let 2,560-atom CsPbBr3 MD at 800 K slide into a Pb-Br hole at 2.0 Å (core radius
    # 2.45 Å) where 7net-0 pushes with 15-20 eV/Å; 1000 dominates within ~0.1 r_core (issue #20).
    core_strength: float = 1000.0
    active_set: bool = True          # extrapolation grade (MaxVol active set of the training atoms)
    active_set_rtol: float = 1e-6    # principal directions kept: singular value > rtol × largest (grade.py)
    output: str = "model.ckpt"
    metrics: Optional[str] = None
    progress: bool = True


@dataclass
class EFGTraining:
    """Options of the Adam training with early stopping."""

    epochs: int = 300
    learning_rate: float = 1e-2
    batch_frames: int = 1
    patience: int = 40
    min_learning_rate: float = 1e-5

    def __post_init__(self):
        if self.epochs < 0 or self.batch_frames < 1 or self.patience < 1:
            raise ValueError(f"epochs >= 0, batch size >= 1 and patience >= 1 needed, got {self}")
        if not self.learning_rate > 0.0:
            raise ValueError(f"learning rate must be positive, got {self.learning_rate}")


@dataclass
class EFGFitConfig:
    """Everything ``pyexport fit-efg`` needs."""

    data: Sequence[str] = ()
    cutoff: float = DEFAULT_CUTOFF_A
    lmax: int = 3
    channels: int = 8
    product_channels: int = 8
    n_radial: int = 8
    hidden: int = 32
    elements: Optional[Sequence[str]] = None
    species_weights: Optional[Mapping[str, float]] = None
    #: isotopes chosen for the C_Q metrics {element: isotope} (``--isotope Br=81Br``); the other
    #: elements get their default (:func:`pyexport.fit_efg.metric_isotopes`)
    isotopes: Optional[Mapping[str, str]] = None
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    dtype: str = "float64"
    training: Optional[EFGTraining] = None
    max_atoms: Optional[int] = None  # leave out structures of more atoms (training.data.at_most_atoms)
    progress: bool = True

    def __post_init__(self):
        if self.training is None:
            self.training = EFGTraining()
        if self.dtype not in ("float64", "float32"):
            raise ValueError(f"dtype must be 'float64' or 'float32', got {self.dtype!r}")
