#!/usr/bin/env bash
# Kernel Modulation Table III: MAML, ANIL and KM on Omniglot 20-way 1/5-shot and mini-ImageNet
# 5-way 1/5-shot (every preset of configs/experiment/table3/), 5 seeds, one Hydra multirun of 60
# runs of 60,000 meta-iterations. Needs the data under $KMEXP_DATA or data/ (omniglot-py/,
# mini-imagenet-cache-{train,validation,test}.pkl; configs/dataset/{omniglot,mini_imagenet}.yaml).
#   bash scripts/table3.sh                     # extra arguments go to Hydra, e.g. hydra/launcher=slurm
#   DRY_RUN=1 bash scripts/table3.sh           # print the command only; SEEDS=0 for one seed
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
presets=$(ls configs/experiment/table3/*.yaml | sed -E 's#configs/experiment/(.*)\.yaml#\1#' | paste -sd, -)
cmd=($PY -m kmexp.train -m "experiment=$presets" seed=${SEEDS:-0,1,2,3,4} resume=true "$@")
if [[ -n ${DRY_RUN:-} ]]; then
  printf '%q ' "${cmd[@]}"; echo
  exit 0
fi
KMEXP_LOGS=${KMEXP_LOGS:-logs/table3} exec "${cmd[@]}"
