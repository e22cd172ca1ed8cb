"""EFG tensors over harmonic samples: the EFG model on displaced supercells, and per site and
per species ⟨V⟩, C_Q(⟨V⟩), eta(⟨V⟩), ⟨C_Q⟩, ⟨|C_Q|⟩, ⟨eta⟩ with jackknife / standard errors,
under the keys ``efg analyze`` uses for MD frames.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import numpy as np
from ase import Atoms

from pyexport.nmr import (cq_mhz, eta, from_voigt6, quadrupole_moment_mb, resolve_isotopes,
                          to_voigt6, vzz)

from efg.statistics import jackknife
from .force_constants import SiteMap


def sample_estimate(per_sample: np.ndarray, statistic=None) -> dict:
    """``{"value", "error", "n_samples"}`` of ``statistic(mean over samples)`` (identity by
    default), the error by the jackknife over the independent samples (the schema of
    ``efg analyze``, whose blocks of frames are the samples here)."""
    per_sample = np.asarray(per_sample, dtype=float)
    statistic = statistic or (lambda m: m)
    return {"value": statistic(per_sample.mean(axis=0)), "error": jackknife(per_sample, statistic),
            "n_samples": int(per_sample.shape[0])}


def efg_statistics(efg: np.ndarray, sites: SiteMap, isotopes: Dict[str, Optional[str]]) -> dict:
    """NMR averages of the EFG tensors of harmonic samples, per site of the input structure and
    per species, under the keys ``efg analyze`` uses for MD frames.

    ``efg`` (n_samples, N_sc, 3, 3) V/Å²; ``isotopes`` {element: isotope or None}. Each sample is
    first averaged over the supercell images of a site (images of one sample are not
    independent); errors are jackknife errors over the samples. Per site: ⟨V⟩ (VASP Voigt order
    xx yy zz xy xz yz), C_Q(⟨V⟩), eta(⟨V⟩), ⟨C_Q⟩, ⟨|C_Q|⟩, ⟨eta⟩. Per species: the mean over its
    sites of C_Q(⟨V⟩), |C_Q(⟨V⟩)| and eta(⟨V⟩), and ⟨C_Q⟩, ⟨|C_Q|⟩, ⟨eta⟩, ⟨|V_zz|⟩ over its
    atoms, with histograms of the instantaneous C_Q and eta. C_Q entries are None for elements
    without a quadrupolar isotope.
    """
    symbols = np.array(sites.symbols)
    q_mb = np.array([quadrupole_moment_mb(isotopes[s]) if isotopes.get(s) else 0.0 for s in symbols])
    has_q = np.array([bool(isotopes.get(s)) for s in symbols])
    w = sites.averaging_matrix()
    cq_inst = cq_mhz(efg, q_mb[sites.unit_of_supercell])                  # (n, N_sc)
    eta_inst = eta(efg)
    v6 = np.einsum("sn,knc->ksc", w, to_voigt6(efg))                      # (n, n_sites, 6)
    cq = np.einsum("sn,kn->ks", w, cq_inst)
    abs_cq = np.einsum("sn,kn->ks", w, np.abs(cq_inst))
    eta_s = np.einsum("sn,kn->ks", w, eta_inst)
    abs_vzz = np.einsum("sn,kn->ks", w, np.abs(vzz(efg)))

    def cq_of_mean(mean6, q=q_mb):
        return cq_mhz(from_voigt6(mean6), q)

    def cq_only(estimate: dict, mask) -> dict:
        for key in ("value", "error"):
            values = np.asarray(estimate[key], dtype=float)
            estimate[key] = np.where(mask, values, np.nan) if values.ndim else (values if mask else None)
        return estimate

    site_stats = {
        "symbols": list(symbols),
        "mean_tensor_voigt6": sample_estimate(v6),
        "cq_of_mean_tensor_mhz": cq_only(sample_estimate(v6, cq_of_mean), has_q),
        "eta_of_mean_tensor": sample_estimate(v6, lambda m: eta(from_voigt6(m))),
        "mean_cq_mhz": cq_only(sample_estimate(cq), has_q),
        "mean_abs_cq_mhz": cq_only(sample_estimate(abs_cq), has_q),
        "mean_eta": sample_estimate(eta_s),
    }
    species = {}
    for element in dict.fromkeys(symbols):
        idx = np.flatnonzero(symbols == element)
        atoms = np.isin(sites.unit_of_supercell, idx)
        has = bool(has_q[idx[0]])
        q = q_mb[idx]
        entry = {"n_sites": int(len(idx)), "isotope": isotopes.get(element)}
        entry["cq_of_mean_tensor_mhz"] = cq_only(sample_estimate(v6[:, idx], lambda m: cq_of_mean(m, q).mean()), has)
        entry["abs_cq_of_mean_tensor_mhz"] = cq_only(
            sample_estimate(v6[:, idx], lambda m: np.abs(cq_of_mean(m, q)).mean()), has)
        entry["eta_of_mean_tensor"] = sample_estimate(v6[:, idx], lambda m: eta(from_voigt6(m)).mean())
        entry["mean_cq_mhz"] = cq_only(sample_estimate(cq[:, idx].mean(axis=1)), has)
        entry["mean_abs_cq_mhz"] = cq_only(sample_estimate(abs_cq[:, idx].mean(axis=1)), has)
        entry["mean_eta"] = sample_estimate(eta_s[:, idx].mean(axis=1))
        entry["mean_abs_vzz_V_per_A2"] = sample_estimate(abs_vzz[:, idx].mean(axis=1))
        if has:
            counts, edges = np.histogram(cq_inst[:, atoms].ravel(), bins=60)
            entry["histogram_cq_mhz"] = {"counts": counts, "edges": edges}
        counts, edges = np.histogram(eta_inst[:, atoms].ravel(), bins=40, range=(0.0, 1.0))
        entry["histogram_eta"] = {"counts": counts, "edges": edges}
        species[element] = entry
    return {"n_samples": int(efg.shape[0]), "isotopes": dict(isotopes), "sites": site_stats,
            "species": species}


def site_isotopes(symbols: Sequence[str], isotopes: Optional[Mapping[str, str]] = None
                  ) -> Dict[str, Optional[str]]:
    """{element: isotope or None} for the elements of ``symbols``: the isotope chosen in
    ``isotopes`` {element: isotope}, else the default one (:func:`pyexport.nmr.resolve_isotopes`),
    else None (no quadrupolar isotope known: no C_Q). An isotope of an element the structure
    lacks, or one without a known quadrupole moment, is an error."""
    elements = list(dict.fromkeys(symbols))
    chosen = resolve_isotopes(elements, isotopes)
    return {element: chosen.get(element) for element in elements}


def evaluate_efg(model, supercell: Atoms, displacements: np.ndarray, batch_atoms: int = 4000) -> np.ndarray:
    """EFG tensors (n_samples, N_sc, 3, 3) V/Å² of the displaced supercells."""
    from pyexport.efg_eval import predict_efg

    frames = []
    for u in displacements:
        atoms = supercell.copy()
        atoms.positions = supercell.positions + u
        frames.append(atoms)
    return np.stack(predict_efg(model, frames, batch_atoms=batch_atoms))
