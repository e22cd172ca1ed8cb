"""DFT labelling of structures with an open PAW code (GPAW): energies, forces, stresses and EFG
tensors in the dataset convention of :mod:`pyexport.data`.

- :mod:`pyexport.dft.gpaw_efg`: EFG tensors at the nuclei from a converged GPAW calculation
  (the PAW method of Petrilli et al. 1998, as VASP's ``LEFG``);
- :mod:`pyexport.dft.label`: the labelling driver behind ``pyexport label``.

GPAW is optional (``pip install efgmd[gpaw]`` or ``make gpaw``); these modules import it only
when they run.
"""
