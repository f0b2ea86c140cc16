#!/usr/bin/env bash
# Every preset of configs/experiment/<group>/ x seeds as one Hydra multirun; the per-table scripts
# call this. Runs land in logs/<group>/ (KMEXP_LOGS overrides); resume=true continues preempted runs.
#   bash scripts/preset_sweep.sh table3 hydra/launcher=slurm   # extra arguments go to Hydra
#   DRY_RUN=1 bash scripts/preset_sweep.sh table3              # print the command only
#   SEEDS=0 bash scripts/preset_sweep.sh table3                # one seed (default 0,1,2,3,4)
set -euo pipefail
cd "$(dirname "$0")/.."
group=${1:?usage: bash scripts/preset_sweep.sh <configs/experiment group> [hydra overrides...]}
shift
[[ -d configs/experiment/$group ]] || { echo "error: no presets folder configs/experiment/$group" >&2; exit 2; }
PY=${PY:-.venv/bin/python}
presets=$(ls configs/experiment/"$group"/*.yaml | sed -E 's#configs/experiment/(.*)\.yaml#\1#' | paste -sd, -)
cmd=($PY -m kmexp.train -m "experiment=$presets" seed=${SEEDS:-0,1,2,3,4} resume=true "$@")
if [[ -n ${DRY_RUN:-} ]]; then
  printf '%q ' "${cmd[@]}"; echo
  exit 0
fi
KMEXP_LOGS=${KMEXP_LOGS:-logs/$group} exec "${cmd[@]}"
