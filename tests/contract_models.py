"""Contract models for the tests: a smooth many-body model (EAM-like, for Cs Pb Br) and the
analytic Morse model that LAMMPS also has natively."""
from typing import Dict, List, Tuple

import torch

from pyexport.contract import PotentialModule, export_model
from pyexport.models.pair import EmbeddedDensity, MorsePair, symmetric_table

ELEMENTS = ["Cs", "Pb", "Br"]
CUTOFF = 6.0


MORSE = {
    "d0": {("Cs", "Cs"): 0.10, ("Cs", "Pb"): 0.20, ("Cs", "Br"): 0.15,
           ("Pb", "Pb"): 0.30, ("Pb", "Br"): 0.40, ("Br", "Br"): 0.05},
    "alpha": {("Cs", "Cs"): 1.2, ("Cs", "Pb"): 1.4, ("Cs", "Br"): 1.5,
              ("Pb", "Pb"): 1.1, ("Pb", "Br"): 1.6, ("Br", "Br"): 1.3},
    "r0": {("Cs", "Cs"): 4.1, ("Cs", "Pb"): 3.9, ("Cs", "Br"): 3.6,
           ("Pb", "Pb"): 4.2, ("Pb", "Br"): 3.0, ("Br", "Br"): 3.8},
}


def morse_module(cutoff=CUTOFF, per_atom_virial=True):
    tables = {k: symmetric_table(v, ELEMENTS) for k, v in MORSE.items()}
    return PotentialModule(MorsePair(tables["d0"], tables["alpha"], tables["r0"]), ELEMENTS, cutoff,
                           per_atom_virial=per_atom_virial)


def many_body_module(dtype="float64", per_atom_virial=True):
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    return PotentialModule(EmbeddedDensity(CUTOFF, torch_dtype), ELEMENTS, CUTOFF, dtype=dtype,
                           per_atom_virial=per_atom_virial)


def export(module, path):
    export_model(module, path, provenance={"made_by": "tests/contract_models.py"})
    return str(path)


class LocalPointChargeEFG(torch.nn.Module):
    """EFG of the point charges within the cutoff, smoothly cut: a simple strictly local,
    symmetric traceless EFG model (V/Å²) for testing the efg plumbing against a closed form."""

    def __init__(self, charges, cutoff: float):
        super().__init__()
        self.cutoff = cutoff
        self.register_buffer("charges", torch.tensor(charges, dtype=torch.float64))

    def forward(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                n_local: int) -> torch.Tensor:
        r2 = (edge_vec * edge_vec).sum(dim=1)
        fc = (1.0 - r2 / (self.cutoff * self.cutoff)) ** 3
        q = self.charges.index_select(0, species.index_select(0, edge_index[1]))
        outer = edge_vec.unsqueeze(2) * edge_vec.unsqueeze(1)
        eye = torch.eye(3, dtype=edge_vec.dtype, device=edge_vec.device)
        v = 14.399645 * (q * fc / r2.pow(2.5)).view(-1, 1, 1) * (3.0 * outer - r2.view(-1, 1, 1) * eye)
        return torch.zeros((n_local, 3, 3), dtype=edge_vec.dtype, device=edge_vec.device).index_add(
            0, edge_index[0], v)


def point_charge_efg_module(cutoff=5.5):
    from pyexport.contract import EFGModule
    return EFGModule(LocalPointChargeEFG([1.0, 2.0, -1.0], cutoff), ELEMENTS, cutoff)


def labelled_by(energy_model, atoms, elements, cutoff):
    """A copy of ``atoms`` with the energy (eV), forces (eV/Å) and stress (eV/Å³) of a float64
    per-atom ``energy_model`` (a fit's reference truth), as the fit's own batch path computes them."""
    import numpy as np
    from ase.calculators.singlepoint import SinglePointCalculator

    from pyexport.training.batches import batch_forward, make_batch
    from pyexport.training.data import Structure, prepare
    from pyexport.units import GPA_PER_EV_A3

    blank = Structure(atoms=atoms, energy=0.0, forces=np.zeros((len(atoms), 3)), stress=np.zeros(6), source="")
    e, f, s = batch_forward(energy_model, make_batch(prepare([blank], elements, cutoff)))
    out = atoms.copy()
    out.calc = SinglePointCalculator(out, energy=float(e[0].detach()), free_energy=float(e[0].detach()),
                                     forces=f.detach().numpy(), stress=s[0].detach().numpy() / GPA_PER_EV_A3)
    return out


class OwnedRowsForces(torch.nn.Module):
    """A potential that breaks the contract: ``forces`` for the owned rows only, (n_local, 3)
    instead of (N, 3). For testing that LAMMPS refuses it instead of reading past the tensor."""

    contract_version: int
    kind: str
    elements: List[str]
    cutoff: float
    dtype: str
    units: str

    def __init__(self, potential: torch.nn.Module):
        super().__init__()
        self.potential = potential
        for key in ("contract_version", "kind", "elements", "cutoff", "dtype", "units"):
            setattr(self, key, getattr(potential, key))

    def forward(self, pos: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                n_local: int) -> Dict[str, torch.Tensor]:
        out = self.potential(pos, species, edge_index, n_local)
        out["forces"] = out["forces"][:n_local]
        return out


class DensityWithNeighbourSum(torch.nn.Module):
    """The EAM-like many-body energy plus one strictly local feature per atom,
    Σ_j exp(−r_ij / Å) over its neighbours within the cutoff (``energy_and_features``)."""

    def __init__(self):
        super().__init__()
        self.energy = EmbeddedDensity(CUTOFF, torch.float64)

    def forward(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                n_local: int) -> torch.Tensor:
        return self.energy(edge_vec, species, edge_index, n_local)

    def energy_and_features(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                            n_local: int) -> Tuple[torch.Tensor, torch.Tensor]:
        r = torch.linalg.norm(edge_vec, dim=1)
        neighbour_sum = torch.zeros(n_local, dtype=edge_vec.dtype).index_add(0, edge_index[0], torch.exp(-r))
        return self.energy(edge_vec, species, edge_index, n_local), neighbour_sum.unsqueeze(1)


class FirstFeatureGrade(torch.nn.Module):
    """A stand-in for :class:`pyexport.models.grade.ExtrapolationGrade`: γ_i is the first feature.
    With ``announce`` it prints a line each time it runs (to count the steps that pay for it)."""

    size: int
    announce: bool

    def __init__(self, size: int = 7, announce: bool = False):
        super().__init__()
        self.size = size
        self.announce = announce

    def forward(self, features: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        if self.announce:
            print("efgmd-test: extrapolation grade evaluated")
        return features[:, 0]


def graded_module(announce: bool = False):
    """A potential with an extrapolation grade γ_i = Σ_j exp(−r_ij) (strictly local)."""
    from pyexport.contract import GradedPotentialModule
    return GradedPotentialModule(DensityWithNeighbourSum(), FirstFeatureGrade(announce=announce), ELEMENTS, CUTOFF)
