# kmexp: the README's commands. Everything runs inside .venv, created by `make setup`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kmexp-setup-$(shell cat requirements.txt pyproject.toml scripts/install_learn2learn.sh 2>/dev/null | sha1sum | cut -c1-12)

.PHONY: setup train test test-fast bench lint clean clean-logs

setup: $(STAMP)

$(STAMP):
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (kmexp needs Python 3.11; set PYTHON=...)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel setuptools
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	bash scripts/install_learn2learn.sh $(PY)
	@rm -f $(VENV)/.kmexp-setup-* && touch $@
	@echo "setup done: $(VENV)"

train: setup
	$(PY) -m kmexp.train $(ARGS)

test: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 $(ARGS)

test-fast: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 -m "not slow" $(ARGS)

bench: setup
	$(PY) scripts/bench.py $(ARGS)
	$(PY) scripts/bench_fewshot.py --profile

lint: setup
	$(PY) -m ruff check kmexp tests scripts

# caches only; runs and checkpoints stay
clean:
	rm -rf .pytest_cache .ruff_cache
	find kmexp tests scripts -name __pycache__ -type d -prune -exec rm -rf {} +

# every run, checkpoint and sweep directory: explicit, never part of `clean`
clean-logs:
	rm -rf logs outputs multirun
