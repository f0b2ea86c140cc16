#!/usr/bin/env bash
# Model patches Table 3 (right column, Sec. 5.1): ImageNet from a random MobileNetV2; rows last layer,
# S/B + last layer, S/B only, all params; every preset of configs/experiment/mp_table3/, 5 seeds, one Hydra
# multirun. Needs ImageNet under data/imagenet/{train,val}/ (configs/dataset/imagenet.yaml).
#   bash scripts/mp_table3.sh hydra/launcher=slurm     # extra arguments go to Hydra
#   DRY_RUN=1 bash scripts/mp_table3.sh                # print the command only; SEEDS=0 for one seed
# Then: python -m kmexp.results mp_table3 logs/mp_table3
set -euo pipefail
exec bash "$(dirname "$0")/preset_sweep.sh" mp_table3 "$@"
