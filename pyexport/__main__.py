"""``python -m pyexport``: the ``pyexport`` command line (:mod:`pyexport.cli`)."""
import sys

from .cli import main

sys.exit(main())
