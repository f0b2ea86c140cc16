#!/usr/bin/env bash
# Kernel-sharing paper, Fig. 4 (iso-depth study, CIFAR-100): ConvMixer-C/20 for C = 128, 256,
# ..., 1152, baseline and kernel-shared (two kernels), 5 seeds each.
# Extra arguments go to Hydra, e.g. bash scripts/ks_fig4.sh hydra/launcher=slurm
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
KMEXP_LOGS=${KMEXP_LOGS:-logs/ks_fig4} exec $PY -m kmexp.train -m experiment=ks_fig4/baseline,ks_fig4/shared \
  backbone.dim=128,256,384,512,640,768,896,1024,1152 seed=0,1,2,3,4 resume=true "$@"
