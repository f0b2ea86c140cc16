#!/usr/bin/env bash
# Model patches Table 5 (Sec. 5.4): one MobileNetV2 at 5 resolutions with a private S/B patch each,
# all shared, and 5 independently trained models; every preset of configs/experiment/mp_table5/,
# 5 seeds, one Hydra multirun. Needs ImageNet under data/imagenet/{train,val}/.
#   bash scripts/mp_table5.sh hydra/launcher=slurm     # extra arguments go to Hydra
#   DRY_RUN=1 bash scripts/mp_table5.sh                # print the command only; SEEDS=0 for one seed
# Then: python -m kmexp.results mp_table5 logs/mp_table5 (also mp_table5_independent)
set -euo pipefail
exec bash "$(dirname "$0")/preset_sweep.sh" mp_table5 "$@"
