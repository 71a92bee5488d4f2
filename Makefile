# simxray: `make demo` installs everything into .venv and runs the main job;
# `make test` runs the test suite. Both are idempotent.
PY        ?= python3.11
VENV      := .venv
VPY       := $(VENV)/bin/python
STAMP_SYS := $(VENV)/.sys-ok
STAMP_PY  := $(VENV)/.install-ok
DEMO_OUT  ?= demo_output

.PHONY: demo test venv sysdeps lint bench clean

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
	$(VENV)/bin/simxray demo --out $(DEMO_OUT)

test: venv
	$(VPY) -m pytest -q tests

lint: venv
	$(VPY) -m ruff check simxray tests benchmarks simulations training

bench: venv
	$(VPY) benchmarks/run.py

clean:
	rm -rf $(VENV) $(DEMO_OUT)
