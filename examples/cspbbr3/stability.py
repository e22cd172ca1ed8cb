#!/usr/bin/env python
"""Does a CsPbBr3 potential survive production NPT? Guarded LAMMPS runs at scale, with the
extrapolation-grade guard, and a JSON the README quotes.

    python examples/cspbbr3/stability.py --model examples/cspbbr3/potential.pt \\
        --supercell 8 --temperatures 300:2,400:3,500:3,600:3,700:3,800:4 --ps 10 --gbreak 10 \\
        -o examples/cspbbr3/stability

Every run starts from the relaxed orthorhombic ground state of the reference set, repeated to
n×n×n pseudocubic cells (n = 8: 2,560 atoms), and runs ``in.npt.lmp`` (4 fs, triclinic NPT at
0 bar) with its three guards (temperature, energy, extrapolation grade γ > ``--gbreak``). A run
survives when it reaches its end with no guard firing, no LAMMPS error, max γ below G at every
check and its volume within 20 % of the start's (thermal expansion from the 0 K ground state
alone is 7 % at 600 K and 11 % at 800 K with the shipped potential). The campaign itself (records
per run, resuming, summary, plot, ``--compare-guards``) is ``examples/stability_campaign.py``.
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))        # examples/: the shared campaign
from stability_campaign import Campaign, main  # noqa: E402

ELEMENTS = ["Cs", "Pb", "Br"]     # LAMMPS types 1, 2, 3 of in.npt.lmp


def ground_state_supercell(n: int):
    """The relaxed orthorhombic 40-atom cell of the shipped reference set, repeated to n×n×n
    pseudocubic cells."""
    import ase.io
    from pyexport.data.dataset import decompressed_text

    if n % 2:
        raise SystemExit(f"--supercell {n}: the orthorhombic start needs an even n")
    text = decompressed_text(str(HERE / "reference" / "cspbbr3_7net0.extxyz.xz"))
    ground = next(a for a in ase.io.read(text, index=":", format="extxyz")
                  if a.info.get("config_type") == "phase_min" and a.info.get("phase") == "orthorhombic")
    return ground.repeat((n // 2, n // 2, n // 2))


CAMPAIGN = Campaign(folder=HERE, elements=ELEMENTS, start=ground_state_supercell,
                    temperatures="300:2,400:3,500:3,600:3,700:3,800:4", supercell=8, dt_ps=0.004,
                    ps=10.0, equil_ps=1.0, every=25, volume_limit=0.20)

if __name__ == "__main__":
    sys.exit(main(CAMPAIGN, __doc__.split("\n\n")[0]))
