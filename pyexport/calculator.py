"""ASE calculator over an exported efgmd potential (a ``.pt`` file of the model contract).

It evaluates exactly what ``pair_style mlff`` evaluates: the same TorchScript file on the same
contract inputs, built here from the periodic cell with image atoms
(:func:`pyexport.contract.build_inputs`) instead of LAMMPS ghost atoms.
"""
import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from .contract import build_inputs, check_outputs, fold_to_atoms, load_model


class MLFFCalculator(Calculator):
    """ASE calculator for an exported ``potential`` model.

    Properties: ``energy`` / ``free_energy`` (eV), ``energies`` (eV per atom), ``forces``
    (eV/Å), ``stress`` (eV/Å³, ASE Voigt order xx yy zz yz xz xy, = -virial/V) and, when the
    model outputs ``atom_virial``, ``stresses`` (per-atom, eV/Å³, -atom_virial/V so that they
    sum to ``stress``; computed only when asked for where the model has the
    ``compute_atom_virial`` switch). For a committee model (``pyexport committee fit``) the energy, forces
    and stresses are the committee mean's, and ``force_uncertainty`` (n_atoms,) eV/Å is the
    members' force deviation σ_i (:func:`pyexport.committee.force_deviation`). For a model with an
    active set (``pyexport fit`` stores one by default), ``extrapolation_grade`` (n_atoms,) is each
    atom's γ (≤ 1 inside the training data, ≫ 2 far outside; :mod:`pyexport.models.grade`),
    computed only when asked for.

    Parameters
    ----------
    model_path : str or Path
        Exported model (``pyexport export``).
    device : str
        ``"cpu"`` or ``"cuda"``.
    threads : int, optional
        torch intra-op threads (default: leave torch's setting alone).
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "stresses"]

    def __init__(self, model_path, device: str = "cpu", threads: int = None, **kwargs):
        super().__init__(**kwargs)
        self.model_path = str(model_path)
        self.model, self.metadata = load_model(model_path, kind="potential", device=device)
        self.device = device
        self.elements = list(self.metadata["elements"])
        self.cutoff = float(self.metadata["cutoff"])
        self.committee_size = self.metadata.get("committee_size")
        if self.committee_size is not None:
            self.implemented_properties = self.implemented_properties + ["force_uncertainty"]
        self.has_grade = int(self.metadata.get("active_set_size", 0)) > 0
        if self.has_grade:
            self.implemented_properties = self.implemented_properties + ["extrapolation_grade"]
        if threads is not None:
            torch.set_num_threads(int(threads))

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        inputs = build_inputs(atoms, self.cutoff, self.elements)
        args = (inputs.pos.to(self.device), inputs.species.to(self.device),
                inputs.edge_index.to(self.device), inputs.n_local)
        want_grade = self.has_grade and "extrapolation_grade" in properties
        if hasattr(self.model, "compute_atom_virial"):
            self.model.compute_atom_virial = "stresses" in properties
        if want_grade:
            self.model.compute_extrapolation_grade = True
        try:
            out = self.model(*args)
        finally:
            if want_grade:
                self.model.compute_extrapolation_grade = False
        out = {k: v.detach().cpu() for k, v in out.items()}
        check_outputs(out, "potential", inputs.pos.shape[0], inputs.n_local, self.committee_size)
        n = len(atoms)
        energy = float(out["energy"])
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["energies"] = out["atom_energy"].numpy().copy()
        self.results["forces"] = fold_to_atoms(out["forces"].numpy(), inputs.image_of, n)
        if want_grade:
            self.results["extrapolation_grade"] = out["extrapolation_grade"].numpy().copy()
        if self.committee_size is not None:
            from .committee import fold_committee_forces, force_deviation

            members = fold_committee_forces(out["committee_forces"].numpy(), inputs.image_of, n)
            self.results["force_uncertainty"] = force_deviation(members)
        if atoms.cell.rank == 3 and atoms.pbc.all():
            volume = atoms.get_volume()
            w = out["virial"].numpy()
            w = 0.5 * (w + w.T)
            self.results["stress"] = -np.array([w[0, 0], w[1, 1], w[2, 2], w[1, 2], w[0, 2], w[0, 1]]) / volume
            if "atom_virial" in out:
                # contract order xx yy zz xy xz yz -> ASE Voigt xx yy zz yz xz xy
                av = fold_to_atoms(out["atom_virial"].numpy(), inputs.image_of, n)
                self.results["stresses"] = -av[:, [0, 1, 2, 5, 4, 3]] / volume
