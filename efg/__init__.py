"""efgmd NMR side: electric-field-gradient (EFG) tensors of trajectories and the NMR quantities
derived from them (principal values, V_zz, eta, C_Q), the point-charge baseline, temperature scans
and harmonic-versus-anharmonic reports. Units: Å, eV, V/Å² (EFG), MHz (C_Q); the NMR conventions are in :mod:`pyexport.nmr`."""
