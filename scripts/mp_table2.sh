#!/usr/bin/env bash
# Model patches Table 2: InceptionV3 transfer to Flowers, Cars, Aircraft; rows last layer, S/B + last
# layer, S/B only (random last layer), all; every preset of configs/experiment/mp_table2/, 5 seeds, one
# Hydra multirun. Needs torchvision's ImageNet InceptionV3 weights in the torch hub cache (or
# backbone.weights_path=...) and the datasets under data/ (configs/dataset/*_mp.yaml).
#   bash scripts/mp_table2.sh                          # extra arguments go to Hydra, e.g. hydra/launcher=slurm
#   DRY_RUN=1 bash scripts/mp_table2.sh                # print the command only; SEEDS=0 for one seed
# Then: python -m kmexp.results mp_table2_flowers logs/mp_table2 (also _cars, _aircraft)
set -euo pipefail
exec bash "$(dirname "$0")/preset_sweep.sh" mp_table2 "$@"
