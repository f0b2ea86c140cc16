#!/usr/bin/env bash
# Kernel Modulation Table I: every row (full, BL, KM, SN, LD, TBN) on CIFAR-10, 5 seeds. Extra arguments go
# to Hydra, e.g. hydra/launcher=slurm. Then: python -m kmexp.results km_table1 logs/table1
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
KMEXP_LOGS=${KMEXP_LOGS:-logs/table1} exec $PY -m kmexp.train -m \
  experiment=table1/full,table1/bl,table1/km,table1/sn,table1/ld,table1/tbn seed=0,1,2,3,4 resume=true "$@"
