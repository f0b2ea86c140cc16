#!/usr/bin/env bash
# Every GPU measurement of the speed work, as one prepared run for a machine with one CUDA GPU
# (about 8 minutes on an H100-class GPU; each step has its own time limit). What each step
# measures, and the targets it is read against, are in the README's "Benchmarks" section.
#
#   bash scripts/gpu_checks.sh [OUT_DIR]     # default results/gpu-<UTC date>; PY=... picks the Python
#
# Steps: (1) scripts/bench_gpu.py: CIFAR loader torchvision vs on-device, KM ResNet-32 step fp32 vs
# bf16, 1 vs k runs per GPU (processes and the vmap ensemble), Table I GPU-hours from the measured
# step rate; (2) scripts/bench_km_cost.py: KM / full on ResNet-50 (224 px / batch 8, 64 px / batch 16);
# (3) scripts/bench_fewshot.py: kmexp's inner loop (sequential and vmap-batched tasks) vs learn2learn;
# (4) a short default training job with trainer=gpu (bf16, channels-last) and compile=true.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-results/gpu-$(date -u +%Y%m%d)}
export WANDB_MODE=disabled MPLBACKEND=Agg

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "error: no CUDA device visible to $PY; run scripts/gpu_checks.sh on a GPU machine" >&2
    exit 1
fi
mkdir -p "$OUT"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
status=0
step() {  # step NAME SECONDS COMMAND...: output to $OUT/NAME.txt, one line per step in summary.txt
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*" | tee -a "$OUT/summary.txt"
    timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
    local rc=$?
    echo "   exit $rc ($(date -u +%FT%TZ))" | tee -a "$OUT/summary.txt"
    [ "$rc" -eq 0 ] || status=1
}
step bench_gpu 200 "$PY" scripts/bench_gpu.py --step-dtypes --ensemble --images 50000 --rounds 3 --json "$OUT/bench_gpu.json"
step bench_km_cost 100 "$PY" scripts/bench_km_cost.py --device cuda --rounds 5 --json "$OUT/bench_km_cost.json"
step bench_fewshot 100 "$PY" scripts/bench_fewshot.py --device cuda --batched
step train_gpu 100 "$PY" -m kmexp.train trainer=gpu compile=true trainer.max_epochs=2 logger=csv \
    callbacks.progress_bar=none "paths.log_dir=$OUT/logs"
exit $status
