#!/usr/bin/env bash
# Model patches Table 5 (Sec. 5.4): one MobileNetV2 at 5 resolutions with a private S/B patch each,
# all shared, and 5 independently trained models; every preset of configs/experiment/mp_table5/,
# 5 seeds, one Hydra multirun. Needs ImageNet under data/imagenet/{train,val}/.
#   bash scripts/mp_table5.sh hydra/launcher=slurm     # extra arguments go to Hydra
#   DRY_RUN=1 bash scripts/mp_table5.sh                # print the command only; SEEDS=0 for one seed
# Then: python -m kmexp.results mp_table5 logs/mp_table5 (also mp_table5_independent)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
presets=$(ls configs/experiment/mp_table5/*.yaml | sed -E 's#configs/experiment/(.*)\.yaml#\1#' | paste -sd, -)
cmd=($PY -m kmexp.train -m "experiment=$presets" seed=${SEEDS:-0,1,2,3,4} resume=true "$@")
if [[ -n ${DRY_RUN:-} ]]; then
  printf '%q ' "${cmd[@]}"; echo
  exit 0
fi
KMEXP_LOGS=${KMEXP_LOGS:-logs/mp_table5} exec "${cmd[@]}"
