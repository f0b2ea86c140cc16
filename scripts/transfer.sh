#!/usr/bin/env bash
# Kernel Modulation transfer learning (Sec. IV-B): every preset of Table II or Fig. 4
# (configs/experiment/<table>/<method>_<dataset>.yaml), 5 seeds, one Hydra multirun.
#
#   bash scripts/transfer.sh table2                          # NC, TTL, TKM-1, TKM-2, TBL-2 x 4 datasets
#   bash scripts/transfer.sh fig4                            # TBL-1, TKM-1, TKM-2, TBL-2 x 4 datasets
#   bash scripts/transfer.sh table2 hydra/launcher=slurm     # extra arguments go to Hydra
#   DRY_RUN=1 bash scripts/transfer.sh table2                # print the command only
#
# Needs the ImageNet ResNet-50 weights in the torch hub cache (or backbone.weights_path=...)
# and the datasets under data/ (configs/dataset/{aircraft,cars,flowers,food}.yaml).
# Fig. 4's TKM-1 / TKM-2 / TBL-2 presets are the same configurations as Table II's.
# Runs land in logs/<table>/ (KMEXP_LOGS overrides); resume=true continues preempted runs.
# Patch storage of the finished runs: python -m kmexp.storage logs/table2/train/<run dir> ...
set -euo pipefail
cd "$(dirname "$0")/.."
table=${1:?usage: bash scripts/transfer.sh table2|fig4 [hydra overrides...]}
shift
[[ $table == table2 || $table == fig4 ]] || { echo "error: unknown table '$table' (table2 or fig4)" >&2; exit 2; }
exec bash scripts/preset_sweep.sh "$table" "$@"
