# Every target sets up what it needs itself: a fresh clone needs only Python 3,
# gcc and make (plus apt-get for the system packages some tests use).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
# the build requirement pinned in pyproject.toml (the one place for lower bounds)
CYTHON_REQ := $(shell sed -n 's/.*"\(Cython[^"]*\)".*/\1/p' pyproject.toml | head -n 1)
PYX    := $(shell find fastsock -name '*.pyx' -o -name '*.pxd' 2>/dev/null)

.PHONY: all setup build sysdeps test run bench c10k loadgen docs clean

all: build

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel

# Re-install when the dependency list changes.
.stamp-install: $(PY) pyproject.toml setup.py
	$(PIP) install -q "$(CYTHON_REQ)"
	$(PIP) install -q -e ".[test,bench,docs]"
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

# sysdeps first: it installs libssl-dev, whose headers the _tls extension
# needs (without them setup.py builds everything else and warns).
test: sysdeps build
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The documentation site (mkdocs.yml) into site/; --strict as in the tests.
docs: build
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

run: build
	$(PY) -m fastsock serve demo

bench: build loadgen
	$(PY) -m benchmarks.run $(BENCH_ARGS)

c10k: build loadgen
	$(PY) -m benchmarks.c10k $(C10K_ARGS)

clean:
	rm -rf build dist site *.egg-info .pytest_cache .benchmarks .hypothesis .stamp-*
	find fastsock -name '*.so' -delete
	find fastsock -name '*.c' -delete
	find . -name __pycache__ -prune -exec rm -rf {} +
	-@$(MAKE) -s -C benchmarks/loadgen clean 2>/dev/null || true
