"""How far the labels' k-mesh (Monkhorst–Pack 2×2×2) is from a converged one (Γ-centred 3×3×3,
within 1 % of 8³ on the cubic cell) on a real MD frame: per atom, V_zz and η of the same frame on
both meshes, written to kpoint_check.json.

    # the 300 K orthorhombic MD frame (4th of cells_0.extxyz) on the converged mesh, ~25 CPU-min:
    python - <<'EOF'
    import ase.io; ase.io.write("kcheck_in.extxyz", [ase.io.read("examples/cspbbr3/dft_efg/cells_0.extxyz", 3)])
    EOF
    OMP_NUM_THREADS=1 pyexport label kcheck_in.extxyz -o examples/cspbbr3/dft_efg/kpoint_check_gamma333.extxyz \
        --efg --ecut 400 --kpts 3,3,3
    python examples/cspbbr3/dft_efg/kpoint_check.py

The frame's Monkhorst–Pack label is the one in labels_0.extxyz (matched by its structure
fingerprint, ``label_structure``).
"""
import json
import sys
from pathlib import Path

import ase.io
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from pyexport.nmr import eta, vzz  # noqa: E402


def main() -> int:
    converged = ase.io.read(HERE / "kpoint_check_gamma333.extxyz", ":")
    labels = {a.info["label_structure"]: a for f in sorted(HERE.glob("labels_*.extxyz"))
              for a in ase.io.read(f, ":")}
    record = {"frames": []}
    for frame in converged:
        mp = labels.get(frame.info["label_structure"])
        if mp is None:
            raise SystemExit(f"frame {frame.info['label_structure']} is not labelled in labels_*.extxyz yet")
        symbols = np.array(frame.get_chemical_symbols())
        V_g, V_mp = (a.arrays["efg"].reshape(-1, 3, 3) for a in (frame, mp))
        entry = {"phase": frame.info.get("phase"), "temperature_K": frame.info.get("temperature_K"),
                 "kpts": {"converged": list(map(int, frame.info["dft_kpts"])), "labels": list(map(int, mp.info["dft_kpts"]))},
                 "species": {}}
        for element in ("Br", "Cs", "Pb"):
            idx = np.flatnonzero(symbols == element)
            vz_g = np.array([vzz(V_g[i]) for i in idx])
            vz_mp = np.array([vzz(V_mp[i]) for i in idx])
            e_g = np.array([eta(V_g[i]) for i in idx])
            e_mp = np.array([eta(V_mp[i]) for i in idx])
            ratio = vz_mp / vz_g
            rms_difference = float(np.sqrt(np.mean((V_mp[idx] - V_g[idx]) ** 2)))
            rms = float(np.sqrt(np.mean(V_g[idx] ** 2)))
            entry["species"][element] = {
                "n": int(len(idx)), "vzz_converged_V_per_A2": vz_g.tolist(), "vzz_labels_V_per_A2": vz_mp.tolist(),
                "ratio_mean": float(ratio.mean()), "ratio_min": float(ratio.min()), "ratio_max": float(ratio.max()),
                "eta_converged": e_g.tolist(), "eta_labels": e_mp.tolist(),
                "eta_max_abs_difference": float(np.abs(e_g - e_mp).max()),
                "component_rms_difference_V_per_A2": rms_difference, "component_rms_V_per_A2": rms,
                "relative_component_rms_difference": rms_difference / rms}
            rel = rms_difference / rms
            # V_zz of a site with η near 1 changes sign under a small change: its ratio says nothing there
            print(f"{element}: tensor components differ by {100 * rel:.1f} % (RMS, relative); V_zz(MP 2^3)/V_zz(Γ 3^3) "
                  f"= {ratio.mean():.4f} ({ratio.min():.4f}–{ratio.max():.4f}), |Δη| ≤ {np.abs(e_g - e_mp).max():.3f}")
        record["frames"].append(entry)
    (HERE / "kpoint_check.json").write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
