# simxray: `make demo` installs everything into .venv and runs the main job;
# `make test` runs the test suite. Both are idempotent.
PY        ?= python3.11
VENV      := .venv
VPY       := $(VENV)/bin/python
STAMP_SYS := $(VENV)/.sys-ok
STAMP_PY  := $(VENV)/.install-ok
DEMO_OUT  ?= demo_output

.PHONY: demo test test-fast test-faults venv sysdeps lint bench clean test-matrix check-wheel

# System packages Sherpa needs to build from source (root or sudo).
$(STAMP_SYS):
	@mkdir -p $(VENV)
	@bash scripts/install_sysdeps.sh
	@touch $@

$(STAMP_PY): pyproject.toml $(STAMP_SYS)
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip setuptools wheel
	# torch first: the CPU wheel on disk; a bare 'torch' would pull a CUDA build.
	$(VPY) -m pip install -q torch==2.13.0
	$(VPY) -m pip install -q numpy
	$(VPY) -m pip install -q -e '.[all]'
	@touch $@

venv: $(STAMP_PY)

demo: venv
	$(VENV)/bin/simxray demo --out $(DEMO_OUT) --overwrite

test: venv
	$(VPY) -m pytest -q tests

# The quick tier (under 2 minutes on 2 cores): no slow tests, 120 s per test at most.
test-fast: venv
	$(VPY) -m pytest -q tests -m "not slow" --timeout=120

# The fault-injection tier alone (truncated/corrupted inputs, bad outputs, kill -9, races).
test-faults: venv
	$(VPY) -m pytest -q tests -m faults

lint: venv
	$(VPY) -m ruff check simxray tests benchmarks simulations training

bench: venv
	$(VPY) benchmarks/run.py

# `make docs` executes the notebooks (jupytext percent-format .py files that open in Jupyter)
# with their small default sizes and regenerates their figures into $(DOCS_OUT), a build
# folder; nothing is written into notebooks/.
DOCS_OUT  ?= build/docs
NOTEBOOKS := $(filter-out notebooks/sherpa_ngc4258.py,$(wildcard notebooks/*.py))
.PHONY: docs
docs: venv
	@mkdir -p $(DOCS_OUT)
	@set -e; for nb in $(NOTEBOOKS); do \
		echo "== $$nb"; \
		MPLBACKEND=Agg OMP_NUM_THREADS=1 SIMXRAY_DOCS_OUT=$(abspath $(DOCS_OUT)) $(VPY) $$nb; \
	done

# The fast tier under other Pythons (default 3.10 and 3.12; .venv-py310/.venv-py312, git-ignored;
# docs/install.md records which versions pass). WITH_SHERPA=1 also builds Sherpa (minutes each).
PYVERSIONS ?= 3.10 3.12
test-matrix:
	bash scripts/test_python_versions.sh $(PYVERSIONS)

# Build the wheel, install it with its dependencies into a fresh venv, run `simxray demo`
# outside the checkout (docs/install.md has the measured time).
check-wheel:
	bash scripts/check_wheel_install.sh

clean:
	rm -rf $(VENV) $(DEMO_OUT)
