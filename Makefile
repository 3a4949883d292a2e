# Entry points. On a fresh machine with Python >= 3.11 and pip:
#   make demo   installs emseg and runs the built-in example
#   make test   installs emseg with its test extras and runs the whole test suite
PYTHON ?= python3
PIP = $(PYTHON) -m pip --disable-pip-version-check

.PHONY: install install-test demo test bench

install:
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e .

install-test: install
	$(PIP) install --quiet -e ".[test]"

demo: install
	$(PYTHON) -m emseg demo --out demo-out

test: install-test
	$(PYTHON) -m pytest -q

bench: install
	$(PYTHON) benchmarks/bench_io.py
