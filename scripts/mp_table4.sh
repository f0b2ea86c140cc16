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
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
presets=$(ls configs/experiment/mp_table4/*.yaml | sed -E 's#configs/experiment/(.*)\.yaml#\1#' | paste -sd, -)
cmd=($PY -m kmexp.train -m "experiment=$presets" seed=${SEEDS:-0,1,2,3,4} resume=true "$@")
if [[ -n ${DRY_RUN:-} ]]; then
  printf '%q ' "${cmd[@]}"; echo
  exit 0
fi
KMEXP_LOGS=${KMEXP_LOGS:-logs/mp_table4} exec "${cmd[@]}"
