#!/usr/bin/env bash
# Model patches Table 4 (Sec. 5.3): multi-task MobileNetV2 on ImageNet + Places-365 with a private
# S/B patch + last layer or a private last layer, and the two independently trained models; every
# preset of configs/experiment/mp_table4/, 5 seeds, one Hydra multirun. Needs ImageNet and Places-365
# under data/ (configs/dataset/{imagenet,places365}.yaml).
#   bash scripts/mp_table4.sh hydra/launcher=slurm     # extra arguments go to Hydra
#   DRY_RUN=1 bash scripts/mp_table4.sh                # print the command only; SEEDS=0 for one seed
# Then: python -m kmexp.results mp_table4_sb_patch_last_layer logs/mp_table4 (also mp_table4_last_layer,
# mp_table4_independent)
set -euo pipefail
exec bash "$(dirname "$0")/preset_sweep.sh" mp_table4 "$@"
