#!/usr/bin/env bash
# Model patches Table 6 (Appendix B.1): MobileNetV2 last-layer fine-tuning with batch-norm statistics
# frozen / re-estimated / plus learned scales and biases, on Flowers, Aircraft, Cars, CIFAR-100; every
# preset of configs/experiment/mp_table6/, 5 seeds, one Hydra multirun. Needs torchvision's ImageNet
# MobileNetV2 weights in the torch hub cache and the datasets under data/.
#   bash scripts/mp_table6.sh hydra/launcher=slurm     # extra arguments go to Hydra
#   DRY_RUN=1 bash scripts/mp_table6.sh                # print the command only; SEEDS=0 for one seed
# Then: python -m kmexp.results mp_table6_flowers logs/mp_table6 (also _aircraft, _cars, _cifar100)
set -euo pipefail
exec bash "$(dirname "$0")/preset_sweep.sh" mp_table6 "$@"
