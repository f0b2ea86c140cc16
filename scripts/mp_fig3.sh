#!/usr/bin/env bash
# Model patches Fig. 3 (accuracy vs. #params of each fine-tuning approach) and Fig. 8/9 (accuracy vs.
# learning rate): every approach x dataset at initial learning rates 0.0045 ... 0.45, 5 seeds.
#   MobileNetV2: configs/experiment/mp_fig3/ (last layer, S/B, S/B + last, DW, DW + last, all x
#                Flowers, Cars, Aircraft, CIFAR-100)
#   InceptionV3: the Table 2 presets (configs/experiment/mp_table2/; it has no depthwise convolutions)
# The caption's "from 0.0045 to 0.45 with factor 3" cannot be a factor of exactly 3 (0.0045 x 3^k never
# reaches 0.45, nor the paper's default 0.045): the five rates are equally spaced in log scale, a
# factor of sqrt(10) = 3.16 apart. Two Hydra multiruns; extra arguments go to Hydra.
#   bash scripts/mp_fig3.sh hydra/launcher=slurm
#   DRY_RUN=1 bash scripts/mp_fig3.sh                  # print the commands only
#   LRS=0.045 SEEDS=0 bash scripts/mp_fig3.sh          # a smaller sweep
# Then: python scripts/mp_fig3_table.py logs/mp_fig3 (accuracy per approach, dataset and learning rate).
set -euo pipefail
cd "$(dirname "$0")/.."
LRS=${LRS:-0.0045,0.01423,0.045,0.1423,0.45}
export KMEXP_LOGS=${KMEXP_LOGS:-logs/mp_fig3}
for table in mp_fig3 mp_table2; do
  bash scripts/preset_sweep.sh "$table" "optim.lr=$LRS" "$@"
done
