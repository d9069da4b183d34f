# Every target installs what it needs into .venv first (python3 -m venv + pip), so a fresh
# machine with only Python 3.11+ and make can run them. `make demo` installs the package alone;
# the other targets add the extras (EXTRAS) and the development dependency groups (GROUPS, PEP 735,
# hence pip >= 25.1).
VENV   ?= .venv
PY     := $(VENV)/bin/python
EXTRAS ?= all,service
GROUPS ?= dev
# the demo needs no extra (`cps-engine` loads the service's FastAPI only for `serve`): 168 MB
DEMO_EXTRAS ?=
RUN    := $(VENV)/.installed-run
DEV    := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck docs bench install clean

$(VENV)/.installed-%: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=25.1"
	$(PY) -m pip install --quiet $(if $(filter dev,$*),-e ".[$(EXTRAS)]" $(addprefix --group ,$(GROUPS)),$(if $(DEMO_EXTRAS),-e ".[$(DEMO_EXTRAS)]",-e .))
	touch $@

install: $(DEV)

demo: $(RUN)
	$(VENV)/bin/cps-engine demo

lint: $(DEV)
	$(PY) -m ruff check src tests examples docs/_hooks.py docs/_griffe_rest.py $(wildcard benchmarks) $(wildcard tools)

typecheck: $(DEV)
	$(PY) -m mypy

# the documentation site, strict: a broken link or a stale API reference fails (offline, into site/)
docs: $(DEV)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet

test: lint typecheck
	$(PY) -m pytest
	$(MAKE) --no-print-directory docs

bench: $(DEV)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) site .pytest_cache .mypy_cache .ruff_cache .hypothesis
