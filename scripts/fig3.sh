#!/usr/bin/env bash
# Kernel Modulation Fig. 3: conv weight distributions of Table I's KM run (random, modulated before and
# after training; the table1/km preset saves checkpoints/init.ckpt) and of the fully trained run.
# Needs the runs of scripts/table1.sh; writes <km run dir>/fig3_weights.png and .json.
# SEED picks the runs (default 0); extra arguments go to kmexp.weight_histograms, e.g. --layers 'layer3.*'
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
exec $PY -m kmexp.weight_histograms --sweep "${KMEXP_LOGS:-logs/table1}" --seed "${SEED:-0}" "$@"
