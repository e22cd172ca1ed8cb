"""The report of ``efg analyze`` (``run.json``) as typed objects, with a JSON round trip.

``efg analyze`` writes its NMR sections through these classes and ``efg scan`` reads runs back
through :meth:`RunReport.read`, so the keys of ``run.json`` are owned here, once, instead of
being string literals on both sides. ``to_json()`` gives exactly the dict that is written (key
order included); ``from_json(d)`` reads it back, and ``X.from_json(x.to_json()) == x``.

Units are in the names: ``_mhz`` MHz, ``_V_per_A2`` V/Å², ``_A`` Å, ``_deg`` degrees, ``_K`` K.
"""
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np

Number = Union[float, List[float]]


@dataclass(frozen=True)
class Estimate:
    """A time average with its error bar (:func:`efg.statistics.estimate_entry`): ``value`` and
    ``error`` (numbers, or lists for vector quantities), the integrated autocorrelation time
    ``tau_frames``, the block length ``block_frames`` and the number of blocks ``n_blocks``."""

    value: Number
    error: Optional[Number]
    tau_frames: Optional[float] = None
    block_frames: Optional[int] = None
    n_blocks: Optional[int] = None

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, entry: dict) -> "Estimate":
        return cls(**{f.name: entry.get(f.name) for f in fields(cls)})

    def largest(self) -> float:
        """The value, or for a vector the largest component."""
        return float(np.max(self.value)) if isinstance(self.value, list) else float(self.value)

    def error_of_largest(self) -> float:
        """The error of :meth:`largest`."""
        if isinstance(self.value, list):
            return float(np.asarray(self.error)[int(np.argmax(self.value))])
        return float(self.error)


#: the averaged NMR quantities of a species, in the order ``run.json`` lists them
SPECIES_ESTIMATES = ("cq_of_mean_tensor_mhz", "abs_cq_of_mean_tensor_mhz", "eta_of_mean_tensor",
                     "mean_cq_mhz", "mean_abs_cq_mhz", "mean_eta", "mean_abs_vzz_V_per_A2")


@dataclass
class SpeciesNMR:
    """NMR parameters of one species (``species.<El>`` of ``run.json``): C_Q and eta of the
    time-averaged tensor (site averages) and averages of the instantaneous values, with errors;
    histograms of the instantaneous C_Q (only with an isotope) and eta (counts, edges)."""

    n_sites: int
    isotope: Optional[str]
    cq_of_mean_tensor_mhz: Estimate
    abs_cq_of_mean_tensor_mhz: Estimate
    eta_of_mean_tensor: Estimate
    mean_cq_mhz: Estimate
    mean_abs_cq_mhz: Estimate
    mean_eta: Estimate
    mean_abs_vzz_V_per_A2: Estimate
    histogram_eta: dict
    histogram_cq_mhz: Optional[dict] = None

    def estimate(self, name: str) -> Estimate:
        """One of :data:`SPECIES_ESTIMATES` by name."""
        if name not in SPECIES_ESTIMATES:
            raise KeyError(f"{name!r} is not a species estimate ({', '.join(SPECIES_ESTIMATES)})")
        return getattr(self, name)

    def to_json(self) -> dict:
        out = {"n_sites": self.n_sites, "isotope": self.isotope}
        out.update({name: getattr(self, name).to_json() for name in SPECIES_ESTIMATES})
        if self.histogram_cq_mhz is not None:
            out["histogram_cq_mhz"] = self.histogram_cq_mhz
        out["histogram_eta"] = self.histogram_eta
        return out

    @classmethod
    def from_json(cls, entry: dict) -> "SpeciesNMR":
        return cls(n_sites=entry["n_sites"], isotope=entry["isotope"],
                   **{name: Estimate.from_json(entry[name]) for name in SPECIES_ESTIMATES},
                   histogram_eta=entry["histogram_eta"], histogram_cq_mhz=entry.get("histogram_cq_mhz"))


@dataclass
class SpeciesNQR:
    """Pure-NQR lines of one quadrupolar species (``nqr.<El>`` of ``run.json``; :mod:`efg.nqr`),
    in MHz, in the order of ``transitions`` (:func:`pyexport.nqr.transition_labels`):

    - ``lines_of_mean_tensor_mhz``: the lines of each site's time-averaged tensor ⟨V⟩ (its signed
      C_Q and eta → :func:`pyexport.nqr.nqr_frequencies_mhz`), averaged over the sites, with
      errors (fast-motion limit: what an NQR spectrum shows when the motion averages V);
    - ``mean_lines_mhz``: the average of the instantaneous lines over frames and sites (the
      static limit);
    - ``site_indices`` (atom indices from 0, in id order) and ``site_lines_of_mean_tensor_mhz``,
      the lines of ⟨V⟩ per site (value and error: sites × lines);
    - ``histogram_lines_mhz``: per line, the distribution of the instantaneous frequency over
      sites × frames (``transition``, ``counts``, ``edges``), the line shape to compare with a
      measured NQR spectrum."""

    isotope: str
    spin: float
    transitions: List[str]
    lines_of_mean_tensor_mhz: Estimate
    mean_lines_mhz: Estimate
    site_indices: List[int]
    site_lines_of_mean_tensor_mhz: Estimate
    histogram_lines_mhz: List[dict]

    def to_json(self) -> dict:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_json() if isinstance(value, Estimate) else value
        return out

    @classmethod
    def from_json(cls, entry: dict) -> "SpeciesNQR":
        return cls(**{f.name: Estimate.from_json(entry[f.name]) if f.type is Estimate else entry[f.name]
                      for f in fields(cls)})


@dataclass
class RunReport:
    """What ``efg scan`` (and anyone) reads from one ``run.json``: the temperature, the NMR
    parameters per species, the structural order parameters (perovskites; empty otherwise), the
    dynamics (MSD, vibrational DOS) and the molecular reorientation section (None without
    molecules); the last two kept as written; the NQR lines per quadrupolar species (empty in
    reports written before they existed)."""

    temperature_K: Optional[float]
    species: Dict[str, SpeciesNMR]
    structure: Dict[str, Estimate] = field(default_factory=dict)
    dynamics: dict = field(default_factory=dict)
    molecules: Optional[dict] = None
    nqr: Dict[str, SpeciesNQR] = field(default_factory=dict)
    path: Optional[str] = None

    @classmethod
    def from_json(cls, report: dict, path: Optional[str] = None) -> "RunReport":
        return cls(temperature_K=report.get("temperature_K"),
                   species={el: SpeciesNMR.from_json(e) for el, e in report["species"].items()},
                   structure={k: Estimate.from_json(e) for k, e in (report.get("structure") or {}).items()},
                   dynamics=report.get("dynamics") or {}, molecules=report.get("molecules"),
                   nqr={el: SpeciesNQR.from_json(e) for el, e in (report.get("nqr") or {}).items()},
                   path=path)

    @classmethod
    def read(cls, path) -> "RunReport":
        """The report of ``efg analyze`` in the JSON file ``path``."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such file")
        text = Path(path).read_text()
        try:
            report = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not a JSON report of efg analyze ({error})") from None
        if not isinstance(report, dict) or report.get("efgmd") != "efg analyze":
            raise ValueError(f"{path}: not a report of efg analyze (no \"efgmd\": \"efg analyze\")")
        return cls.from_json(report, str(path))

    def quadrupolar_species(self) -> List[str]:
        """Species with an isotope (C_Q defined), in report order."""
        return [el for el, entry in self.species.items() if entry.isotope]
