#!/usr/bin/env bash
# Model patches Table 2: InceptionV3 transfer to Flowers, Cars, Aircraft; rows last layer, S/B + last
# layer, S/B only (random last layer), all; every preset of configs/experiment/mp_table2/, 5 seeds, one
# Hydra multirun. Needs torchvision's ImageNet InceptionV3 weights in the torch hub cache (or
# backbone.weights_path=...) and the datasets under data/ (configs/dataset/*_mp.yaml).
#   bash scripts/mp_table2.sh                          # extra arguments go to Hydra, e.g. hydra/launcher=slurm
#   DRY_RUN=1 bash scripts/mp_table2.sh                # print the command only; SEEDS=0 for one seed
# Then: python -m kmexp.results mp_table2_flowers logs/mp_table2 (also _cars, _aircraft)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
presets=$(ls configs/experiment/mp_table2/*.yaml | sed -E 's#configs/experiment/(.*)\.yaml#\1#' | paste -sd, -)
cmd=($PY -m kmexp.train -m "experiment=$presets" seed=${SEEDS:-0,1,2,3,4} resume=true "$@")
if [[ -n ${DRY_RUN:-} ]]; then
  printf '%q ' "${cmd[@]}"; echo
  exit 0
fi
KMEXP_LOGS=${KMEXP_LOGS:-logs/mp_table2} exec "${cmd[@]}"
