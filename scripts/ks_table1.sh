#!/usr/bin/env bash
# Kernel-sharing paper, Table 1 (iso-parameter study, CIFAR-10): baseline ConvMixer-128/4 and
# -128/8, kernel-shared (two kernels) ConvMixer-283/4 and -410/8, 5 seeds each (200 epochs).
# Extra arguments go to Hydra, e.g. bash scripts/ks_table1.sh hydra/launcher=slurm
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
KMEXP_LOGS=${KMEXP_LOGS:-logs/ks_table1} exec $PY -m kmexp.train -m \
  experiment=ks_table1/baseline_128_4,ks_table1/shared_283_4,ks_table1/baseline_128_8,ks_table1/shared_410_8 \
  seed=0,1,2,3,4 resume=true "$@"
