"""Small, smooth contract models made for the tests: a many-body model (the embedding of a
pair density, EAM-like) and the analytic Morse model that LAMMPS also has natively."""
import torch

from pyexport.contract import PotentialModule, export_model
from pyexport.models.pair import MorsePair, symmetric_table

ELEMENTS = ["Cs", "Pb", "Br"]
CUTOFF = 6.0


class EmbeddedDensity(torch.nn.Module):
    """E_i = Σ_j ½ φ(r_ij) + F_s(ρ_i), ρ_i = Σ_j w_{s_j} f(r_ij), smooth at the cutoff.

    Many-body (E_i depends non-additively on all neighbours), so ghost forces and the virial are
    exercised the way a real ML potential exercises them.
    """

    def __init__(self, cutoff: float, dtype=torch.float64):
        super().__init__()
        self.cutoff = cutoff
        self.register_buffer("w", torch.tensor([0.7, 1.3, 1.0], dtype=dtype))
        self.register_buffer("a", torch.tensor([-0.9, -1.6, -1.1], dtype=dtype))
        self.register_buffer("b", torch.tensor([0.05, 0.12, 0.08], dtype=dtype))
        self.register_buffer("eps", torch.tensor([[0.03, 0.05, 0.04], [0.05, 0.08, 0.06],
                                                  [0.04, 0.06, 0.05]], dtype=dtype))

    def forward(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                n_local: int) -> torch.Tensor:
        r = torch.linalg.norm(edge_vec, dim=1)
        x = r / self.cutoff
        fc = (1.0 - x * x) ** 3          # C² at the cutoff
        si = species.index_select(0, edge_index[0])
        sj = species.index_select(0, edge_index[1])
        phi = self.eps[si, sj] * (3.4 / r) ** 6 * fc
        rho = torch.zeros(n_local, dtype=r.dtype, device=r.device).index_add(
            0, edge_index[0], self.w[sj] * torch.exp(-0.8 * (r - 3.0)) * fc)
        s_local = species[:n_local]
        embed = self.a[s_local] * torch.sqrt(rho + 0.1) + self.b[s_local] * rho * rho
        pair = torch.zeros(n_local, dtype=r.dtype, device=r.device).index_add(0, edge_index[0], 0.5 * phi)
        return pair + embed


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
