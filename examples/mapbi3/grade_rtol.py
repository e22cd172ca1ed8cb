#!/usr/bin/env python
"""How the extrapolation grade's subspace threshold (``pyexport fit --active-set-rtol``) ranks a
potential's errors on frames it did not see (the choice in ``model_settings.py``).

    python examples/mapbi3/grade_rtol.py TRAIN.extxyz HELD_OUT.extxyz POTENTIAL.pt \\
        --rtol 1e-6,1e-5,1e-4,1e-3 -o grade_rtol.json

The active set is rebuilt from the training split of TRAIN (the split, basis and pair cutoffs of
``pyexport fit`` with this example's settings) at each rtol; γ of every atom of HELD_OUT (frames
labelled after the fit, e.g. the stops of an active-learning round) is binned against the
potential's force error there, |F_potential − F_label| (eV/Å). Prints and writes, per rtol: the
rank per species, max γ over the training atoms (1 by construction) and the held-out atoms, the
median error per γ bin, and the rank correlation of γ with the error.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from model_settings import ELEMENTS, PAIR_CUTOFFS  # noqa: E402

BINS = [(0, 1), (1, 2), (2, 5), (5, 10), (10, np.inf)]


def ranks(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("train", help="the potential's training set (extxyz)")
    p.add_argument("held_out", help="labelled frames the potential did not see (extxyz with forces)")
    p.add_argument("potential", help="the exported potential fitted to TRAIN with this example's settings")
    p.add_argument("--basis", default="small")
    p.add_argument("--cutoff", type=float, default=6.0)
    p.add_argument("--rtol", default="1e-6,1e-5,1e-4,1e-3")
    p.add_argument("-o", "--output", type=Path, default=Path("grade_rtol.json"))
    args = p.parse_args(argv)

    import ase.io
    from pyexport.calculator import MLFFCalculator
    from pyexport.cli.fit import parse_pair_cutoffs
    from pyexport.fit import fit_inputs
    from pyexport.models.cluster_basis import ClusterDescriptor
    from pyexport.models.grade import build_active_set, grade_numpy
    from pyexport.training.config import FitConfig
    from pyexport.training.data import prepare, read_structures
    from pyexport.training.extrapolation import species_features

    config = FitConfig(data=[args.train], basis=args.basis, cutoff=args.cutoff, elements=ELEMENTS,
                       pair_cutoffs=parse_pair_cutoffs(PAIR_CUTOFFS))
    _, _, elements, basis, splits, prepared = fit_inputs(config)
    descriptor = ClusterDescriptor(len(elements), basis, elements)
    train = species_features(descriptor, [prepared[i] for i in splits["train"]])
    held = species_features(descriptor, prepare(read_structures([args.held_out]), elements, basis.cutoff))

    calc = MLFFCalculator(args.potential)
    errors = [[] for _ in elements]
    for atoms in ase.io.read(args.held_out, index=":"):
        label = atoms.get_forces().copy()
        frame = atoms.copy()
        frame.calc = calc
        error = np.linalg.norm(frame.get_forces() - label, axis=1)
        symbols = np.array(atoms.get_chemical_symbols())
        for s, element in enumerate(elements):
            errors[s].append(error[symbols == element])
    error = np.concatenate([np.concatenate(e) for e in errors])      # species-major, as `held`

    out = {"train": args.train, "held_out": args.held_out, "potential": args.potential, "rtol": {}}
    for rtol in (float(x) for x in args.rtol.split(",")):
        active = build_active_set(train, elements, rtol)
        grade = np.concatenate([grade_numpy(h, np.full(len(h), s), active) for s, h in enumerate(held)])
        train_grade = max(float(grade_numpy(t, np.full(len(t), s), active).max()) for s, t in enumerate(train))
        bins = []
        for lo, hi in BINS:
            inside = (grade >= lo) & (grade < hi)
            bins.append({"gamma_from": lo, "atoms": int(inside.sum()),
                         "median_force_error_eV_per_A": float(np.median(error[inside])) if inside.any() else None})
        entry = {"rank": {e: v["rank"] for e, v in active["species"].items()},
                 "max_gamma_train": train_grade, "max_gamma_held_out": float(grade.max()), "bins": bins,
                 "rank_correlation": float(np.corrcoef(ranks(grade), ranks(error))[0, 1])}
        out["rtol"][f"{rtol:g}"] = entry
        ladder = " ".join("-" if b["median_force_error_eV_per_A"] is None else f"{b['median_force_error_eV_per_A']:.3f}"
                          for b in bins)
        print(f"rtol {rtol:g}: max γ {entry['max_gamma_held_out']:.1f}, median |ΔF| by γ bin {ladder}, "
              f"rank corr. {entry['rank_correlation']:.2f}", flush=True)
    args.output.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
