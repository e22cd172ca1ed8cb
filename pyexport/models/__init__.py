"""Model zoo: per-atom energy models (potentials) and per-atom EFG models, all strictly local and
exported through :mod:`pyexport.contract`."""
