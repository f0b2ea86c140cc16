#!/usr/bin/env bash
# Kernel Modulation Table III: MAML, ANIL and KM on Omniglot 20-way 1/5-shot and mini-ImageNet
# 5-way 1/5-shot (every preset of configs/experiment/table3/), 5 seeds, one Hydra multirun of 60
# runs of 60,000 meta-iterations. Needs the data under $KMEXP_DATA or data/ (omniglot-py/,
# mini-imagenet-cache-{train,validation,test}.pkl; configs/dataset/{omniglot,mini_imagenet}.yaml).
#   bash scripts/table3.sh                     # extra arguments go to Hydra, e.g. hydra/launcher=slurm
#   DRY_RUN=1 bash scripts/table3.sh           # print the command only; SEEDS=0 for one seed
set -euo pipefail
exec bash "$(dirname "$0")/preset_sweep.sh" table3 "$@"
