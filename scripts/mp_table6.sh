#!/usr/bin/env bash
# Model patches Table 6 (Appendix B.1): MobileNetV2 last-layer fine-tuning with batch-norm statistics
# frozen / re-estimated / plus learned scales and biases, on Flowers, Aircraft, Cars, CIFAR-100; every
# preset of configs/experiment/mp_table6/, 5 seeds, one Hydra multirun. Needs torchvision's ImageNet
# MobileNetV2 weights in the torch hub cache and the datasets under data/.
#   bash scripts/mp_table6.sh hydra/launcher=slurm     # extra arguments go to Hydra
#   DRY_RUN=1 bash scripts/mp_table6.sh                # print the command only; SEEDS=0 for one seed
# Then: python -m kmexp.results mp_table6_flowers logs/mp_table6 (also _aircraft, _cars, _cifar100)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
presets=$(ls configs/experiment/mp_table6/*.yaml | sed -E 's#configs/experiment/(.*)\.yaml#\1#' | paste -sd, -)
cmd=($PY -m kmexp.train -m "experiment=$presets" seed=${SEEDS:-0,1,2,3,4} resume=true "$@")
if [[ -n ${DRY_RUN:-} ]]; then
  printf '%q ' "${cmd[@]}"; echo
  exit 0
fi
KMEXP_LOGS=${KMEXP_LOGS:-logs/mp_table6} exec "${cmd[@]}"
