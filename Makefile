# Every target sets up what it needs itself: a fresh clone needs only Python 3,
# gcc and make (plus apt-get for the system packages some tests use).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
PYX    := $(shell find fastsock -name '*.pyx' -o -name '*.pxd' 2>/dev/null)

.PHONY: all setup build sysdeps test run bench c10k loadgen clean

all: build

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel

# Re-install when the dependency list changes.
.stamp-install: $(PY) pyproject.toml setup.py
	$(PIP) install -q "Cython>=3.0.10"
	$(PIP) install -q -e ".[test,bench]"
	touch $@

# Re-build the Cython extensions in place when a .pyx/.pxd changes.
.stamp-build: .stamp-install $(PYX)
	$(PY) setup.py -q build_ext --inplace
	touch $@

setup: .stamp-build
build: .stamp-build

# System packages that tests use as real peers (Node's ws, redis-server...).
sysdeps:
	@bash scripts/ensure-system-deps.sh

loadgen:
	@$(MAKE) -s -C benchmarks/loadgen

test: build sysdeps
	$(PY) -m pytest -q $(PYTEST_ARGS)

run: build
	$(PY) -m fastsock serve demo

bench: build loadgen
	$(PY) -m benchmarks.run $(BENCH_ARGS)

c10k: build loadgen
	$(PY) -m benchmarks.c10k $(C10K_ARGS)

clean:
	rm -rf build dist *.egg-info .pytest_cache .benchmarks .hypothesis .stamp-*
	find fastsock -name '*.so' -delete
	find fastsock -name '*.c' -delete
	find . -name __pycache__ -prune -exec rm -rf {} +
	-@$(MAKE) -s -C benchmarks/loadgen clean 2>/dev/null || true
