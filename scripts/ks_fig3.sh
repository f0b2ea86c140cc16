#!/usr/bin/env bash
# Kernel-sharing paper, Fig. 3 (iso-channel study): ConvMixer-384/N for N = 4, 8, ..., 24 on
# CIFAR-10 and CIFAR-100; baseline, two-, four- and eight-kernel sharing; 5 seeds each. The
# eight-kernel model is not run at N = 4, where it equals the baseline (as in the paper).
# Extra arguments go to Hydra, e.g. bash scripts/ks_fig3.sh hydra/launcher=slurm
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export KMEXP_LOGS=${KMEXP_LOGS:-logs/ks_fig3}
SEEDS=seed=0,1,2,3,4
$PY -m kmexp.train -m \
  experiment=ks_fig3/cifar10_baseline,ks_fig3/cifar10_kernels2,ks_fig3/cifar10_kernels4,ks_fig3/cifar100_baseline,ks_fig3/cifar100_kernels2,ks_fig3/cifar100_kernels4 \
  backbone.depth=4,8,12,16,20,24 $SEEDS resume=true "$@"
$PY -m kmexp.train -m experiment=ks_fig3/cifar10_kernels8,ks_fig3/cifar100_kernels8 \
  backbone.depth=8,12,16,20,24 $SEEDS resume=true "$@"
