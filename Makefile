# kmexp: the README's commands. Everything runs inside .venv, created by `make setup`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# a new .venv holds torch with its CUDA libraries: ~6.2 GB
SETUP_MIN_FREE_MB ?= 6600
STAMP := $(VENV)/.kmexp-setup-$(shell cat requirements.txt pyproject.toml scripts/install_learn2learn.sh 2>/dev/null | sha1sum | cut -c1-12)

.PHONY: setup train test test-fast bench lint clean clean-logs

setup: $(STAMP)

$(STAMP):
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (kmexp needs Python 3.11; set PYTHON=...)"; exit 1; }
	@free_kb=$$(df -Pk . | awk 'NR==2 {print $$4}'); need_kb=$$(($(SETUP_MIN_FREE_MB) * 1024)); \
	  if [ ! -x $(PY) ] && [ "$$free_kb" -lt "$$need_kb" ]; then \
	    echo "error: setup needs about $(SETUP_MIN_FREE_MB) MB free here for .venv (torch with its CUDA libraries); $$((free_kb / 1024)) MB free in $$(df -P . | awk 'NR==2 {print $$6}')"; exit 1; fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel setuptools
	$(PY) -m pip install --quiet --no-cache-dir -r requirements.txt
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
