#!/usr/bin/env bash
# Kernel-sharing paper, Fig. 5 (SE-ResNet): d = 2, 3, 4, 6, 8, 10 blocks per stage; no sharing,
# sharing in all stages, in stages 2-3 and in stage 3; CIFAR-10 and CIFAR-100; 5 seeds each.
# Extra arguments go to Hydra, e.g. bash scripts/ks_fig5.sh hydra/launcher=slurm
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
runs=$(ls configs/experiment/ks_fig5/*.yaml | xargs -n1 basename | sed 's/.yaml$//; s|^|ks_fig5/|' | paste -sd, -)
KMEXP_LOGS=${KMEXP_LOGS:-logs/ks_fig5} exec $PY -m kmexp.train -m "experiment=$runs" \
  backbone.depth=2,3,4,6,8,10 seed=0,1,2,3,4 resume=true "$@"
