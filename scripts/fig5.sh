#!/usr/bin/env bash
# Kernel Modulation Fig. 5: every modulator ablation (activation, init, depth) on
# ResNet-32 / CIFAR-10, 5 seeds each. Extra arguments go to Hydra, e.g.
#   bash scripts/fig5.sh hydra/launcher=slurm hydra.launcher.partition=gpu
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
runs=$(ls configs/experiment/fig5/*.yaml | xargs -n1 basename | sed 's/.yaml$//; s|^|fig5/|' | paste -sd, -)
KMEXP_LOGS=${KMEXP_LOGS:-logs/fig5} exec $PY -m kmexp.train -m "experiment=$runs" seed=0,1,2,3,4 resume=true "$@"
