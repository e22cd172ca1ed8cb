"""pyexport: DFT data in, machine-learned potentials and EFG models out, exported as TorchScript
files under the efgmd model contract (see :mod:`pyexport.contract`)."""

__version__ = "0.1.0"
