# Entry points. On a fresh machine with Python >= 3.11 and pip:
#   make demo   installs emseg and runs the built-in example
#   make test   installs emseg with its test extras and runs the whole test suite
PYTHON ?= python3
PIP = $(PYTHON) -m pip --disable-pip-version-check

.PHONY: install install-test demo test bench

install:
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e .

# the napari test draws in a real viewer on a virtual X screen: Xvfb and Qt's X libraries, from Debian's
# packages when this is a root shell with apt-get (else that one test is skipped)
XLIBS = xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-image0 libxcb-render-util0 libxkbcommon-x11-0 \
	libxcb-randr0 libxcb-shape0 libxcb-xfixes0 libxcb-xkb1 libgl1 libegl1

install-test: install
	$(PIP) install --quiet -e ".[test]"
	-@command -v Xvfb >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(XLIBS) >/dev/null 2>&1; } || \
		echo "Xvfb could not be installed: the napari viewer test will be skipped"

demo: install
	$(PYTHON) -m emseg demo --out demo-out

test: install-test
	$(PYTHON) -m pytest -q

bench: install
	$(PYTHON) benchmarks/bench_io.py
