# Two commands for a newcomer: `make demo` and `make test`. Both create .venv when missing.
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
# The tested torch. Users keep their own build: the package only requires torch>=2.4.
TORCH   ?= torch==2.13.0

.PHONY: demo test bench venv clean lint examples

$(VPY):
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip

# Stamps, so that a change to pyproject.toml reinstalls. The demo needs only the core package;
# the tests also need the integrations' frameworks (the `test` extra).
$(VENV)/.installed-core: pyproject.toml | $(VPY)
	@$(VPY) -c "import torch" 2>/dev/null || $(VPY) -m pip install -q "$(TORCH)"
	$(VPY) -m pip install -q -e .
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed-core
	$(VPY) -m pip install -q -e ".[test]"
	@touch $@

venv: $(VENV)/.installed-test

demo: $(VENV)/.installed-core
	$(VENV)/bin/layerscope demo

# Two workers: most tests wait on a subprocess (the CLI, torchrun, Chromium), so two keep both
# cores busy. PYTEST_ARGS="-n 0" runs it in one process.
PYTEST_ARGS ?= -n 2
test: $(VENV)/.installed-test
	$(VPY) -m pytest $(PYTEST_ARGS)

# ruff (rules and format) and mypy (the package ships py.typed, so its types must hold).
lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples
	$(VENV)/bin/mypy

# A smoke run of every examples/*.py with a few steps, each in a fresh folder (CI runs it).
EXAMPLE_STEPS ?= 20
examples: $(VENV)/.installed-test
	@set -e; for f in examples/*.py; do \
	  d=$$(mktemp -d); echo "== $$f --steps $(EXAMPLE_STEPS)"; \
	  (cd $$d && "$(CURDIR)/$(VPY)" "$(CURDIR)/$$f" --steps $(EXAMPLE_STEPS) >log.txt 2>&1) \
	    || { cat $$d/log.txt; echo "$$f failed"; exit 1; }; \
	  rm -rf $$d; \
	done

bench: $(VENV)/.installed-core
	$(VPY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) layerscope-demo .pytest_cache build src/*.egg-info
