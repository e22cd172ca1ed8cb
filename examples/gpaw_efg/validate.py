"""Validation of the GPAW EFG labeller (``pyexport label --efg``, :mod:`pyexport.dft.gpaw_efg`)
against known values, through the same code path the command runs (``label_frame``):

1. HBr molecule, PBE, r = 1.4145 Å (experimental bond length), 8 Å cubic box, 500 eV, Γ only:
   C_Q(79Br); measured 532.3 MHz (gas phase), PAW-PBE reference ≈ 527 MHz. Also the small
   setting of the unit test (300 eV, 6 Å box), so that the test's number is tied to this one,
   and the two mixed settings (500 eV / 6 Å, 300 eV / 8 Å) that show what each change does.
2. Cubic CsPbBr3, a = 5.87 Å, 5 atoms, PBE, 500 eV: V_zz(Br) on Γ-centred n³ k-meshes;
   PAW-PBE reference 98 / 187 / 200 / 199 V/Å² for n = 2 / 4 / 6 / 8.
3. The cutoff of the shipped CsPbBr3 labels (``examples/cspbbr3/dft_efg``, 400 eV): the same cell on
   the 6³ mesh (the k density of their 3³ mesh on 40-atom cells) at 400 eV beside 500 eV.

Writes the numbers, the settings and the wall times to a JSON file (default next to this script:
validation.json; the parts run replace theirs in an existing file, the others stay). Serial GPAW;
the times are those of the machine it ran on (load average recorded).

    OMP_NUM_THREADS=1 python examples/gpaw_efg/validate.py [--parts hbr cspbbr3 cutoff] [--kmeshes 2 4 6 8] [--out FILE]
"""
import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from ase import Atoms

from pyexport.dft.label import LabelSettings, label_frame
from pyexport.nmr import cq_mhz, eta, vzz
from pyexport.structures import cspbbr3

HERE = Path(__file__).resolve().parent

#: HBr bond length, Å (experimental r_e).
HBR_BOND_A = 1.4145
HBR_REFERENCE = {"cq_79Br_MHz_paw_pbe": 527.0, "cq_79Br_MHz_measured": 532.3}
CSPBBR3_REFERENCE_VZZ = {2: 98.0, 4: 187.0, 6: 200.0, 8: 199.0}


def hbr(box_A: float) -> Atoms:
    """HBr along z in the middle of a periodic cubic box of side ``box_A`` Å."""
    atoms = Atoms("HBr", positions=[(0, 0, 0), (0, 0, HBR_BOND_A)], cell=[box_A] * 3, pbc=True)
    atoms.center()
    return atoms


def run_hbr(ecut_eV: float, box_A: float) -> dict:
    start, cpu = time.perf_counter(), time.process_time()
    labelled = label_frame(hbr(box_A), LabelSettings(ecut_eV=ecut_eV, kpts=(1, 1, 1), efg=True))
    V = labelled.arrays["efg"].reshape(-1, 3, 3)
    return {"ecut_eV": ecut_eV, "box_A": box_A, "kpts": [1, 1, 1],
            "vzz_Br_V_per_A2": float(vzz(V[1])), "eta_Br": float(eta(V[1])),
            "cq_79Br_MHz": float(cq_mhz(V[1], "79Br")), "vzz_H_V_per_A2": float(vzz(V[0])),
            "energy_eV": float(labelled.get_potential_energy()),
            "wall_s": round(time.perf_counter() - start, 1), "cpu_s": round(time.process_time() - cpu, 1)}


def run_cspbbr3(n: int, ecut_eV: float = 500.0) -> dict:
    start, cpu = time.perf_counter(), time.process_time()
    labelled = label_frame(cspbbr3(repeat=(1, 1, 1)), LabelSettings(ecut_eV=ecut_eV, kpts=(n, n, n), efg=True))
    V = labelled.arrays["efg"].reshape(-1, 3, 3)
    symbols = labelled.get_chemical_symbols()
    br = [i for i, s in enumerate(symbols) if s == "Br"]
    return {"kmesh": n, "ecut_eV": ecut_eV, "gpaw_symmetry": labelled.info["dft_symmetry"],
            "vzz_Br_V_per_A2": [float(vzz(V[i])) for i in br],
            "eta_Br": [float(eta(V[i])) for i in br],
            "cq_79Br_MHz": [float(cq_mhz(V[i], "79Br")) for i in br],
            "max_abs_V_Cs_Pb_V_per_A2": float(np.abs(V[[0, 1]]).max()),
            "reference_vzz_Br_V_per_A2": CSPBBR3_REFERENCE_VZZ.get(n),
            "energy_eV": float(labelled.get_potential_energy()),
            "wall_s": round(time.perf_counter() - start, 1), "cpu_s": round(time.process_time() - cpu, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kmeshes", type=int, nargs="*", default=[2, 4, 6, 8],
                        help="CsPbBr3 Γ-centred n×n×n meshes (default: 2 4 6 8)")
    parser.add_argument("--parts", nargs="*", choices=("hbr", "cspbbr3", "cutoff"),
                        default=["hbr", "cspbbr3", "cutoff"], help="what to run (default: all)")
    parser.add_argument("--out", default=str(HERE / "validation.json"), help="JSON file to write")
    args = parser.parse_args(argv)
    import gpaw

    out = Path(args.out)
    record = json.loads(out.read_text()) if out.exists() else {}
    common = {"gpaw": gpaw.__version__, "python": platform.python_version(),
              "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "cpus": os.cpu_count(),
              "settings": "LabelSettings defaults (PBE, fermi-dirac 0.05 eV, density 1e-6) unless stated"}

    def save():
        out.write_text(json.dumps(record, indent=1) + "\n")

    if "hbr" in args.parts:
        record["hbr"] = {**common, "load_average_start": os.getloadavg(), "reference": HBR_REFERENCE}
        for ecut, box in ((500.0, 8.0), (300.0, 6.0), (500.0, 6.0), (300.0, 8.0)):
            result = run_hbr(ecut, box)
            record["hbr"][f"{ecut:g}eV_{box:g}A"] = result
            print(f"HBr {ecut:g} eV, {box:g} Å box: C_Q(79Br) = {result['cq_79Br_MHz']:.1f} MHz, "
                  f"V_zz = {result['vzz_Br_V_per_A2']:.2f} V/Å² ({result['wall_s']} s)", flush=True)
            save()
    if "cspbbr3" in args.parts:
        # meshes run now replace their earlier entries; the others stay
        earlier = [r for r in record.get("cspbbr3", {}).get("kseries", []) if r["kmesh"] not in args.kmeshes]
        record["cspbbr3"] = {**common, "a_A": 5.87, "load_average_start": os.getloadavg(), "kseries": earlier}
        for n in args.kmeshes:
            result = run_cspbbr3(n)
            record["cspbbr3"]["kseries"].append(result)
            record["cspbbr3"]["kseries"].sort(key=lambda r: r["kmesh"])
            print(f"CsPbBr3 {n}³: V_zz(Br) = {np.mean(result['vzz_Br_V_per_A2']):.1f} V/Å² "
                  f"(reference {result['reference_vzz_Br_V_per_A2']}), {result['wall_s']} s", flush=True)
            save()
        record["cspbbr3"]["load_average_end"] = os.getloadavg()
        save()
    if "cutoff" in args.parts:
        record["cspbbr3_cutoff"] = {**common, "a_A": 5.87, "kmesh": 6, "load_average_start": os.getloadavg(),
                                    "runs": [run_cspbbr3(6, ecut) for ecut in (400.0, 500.0)]}
        low, high = (np.mean(r["vzz_Br_V_per_A2"]) for r in record["cspbbr3_cutoff"]["runs"])
        record["cspbbr3_cutoff"]["vzz_400_over_500"] = float(low / high)
        print(f"CsPbBr3 6³: V_zz(Br) = {low:.2f} (400 eV) / {high:.2f} V/Å² (500 eV)", flush=True)
        save()
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
