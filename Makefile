# The study's entry points. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?= params/demo.yaml

.DEFAULT_GOAL := help
.PHONY: help reproduce test unit nbval lab check clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

reproduce: $(STAMP) ## run every notebook of the demo profile into outputs/demo/ (PROFILE=... for another)
	$(PY) -m dflib run $(PROFILE)

test: $(STAMP) ## unit tests, then nbval over the notebooks on the smoke values
	$(PY) -m pytest -q --durations=15 tests
	$(PY) -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env --nbval-cell-timeout=1200 notebooks

unit: $(STAMP) ## unit tests only
	$(PY) -m pytest -q --durations=15 tests

check: $(STAMP) ## validate a profile (PROFILE=params/x.yaml) without running it
	$(PY) -m dflib check $(PROFILE)

# JupyterLab refuses to run as root (containers, cloud machines) unless told it may.
LAB_USER_ID ?= $(shell id -u)
LAB_ARGS ?=
lab: $(STAMP) ## open JupyterLab on the notebooks with the project's environment (LAB_ARGS=... for more options)
	@echo "JupyterLab on notebooks/: open the http://...lab?token=... address it prints below"
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(LAB_USER_ID)),--allow-root) $(LAB_ARGS)

clean: ## remove the virtual environment (run folders under outputs/ are kept)
	rm -rf $(VENV)
