#!/usr/bin/env bash
# Table I's full / BL / KM rows on the bundled digits data with a short CPU schedule
# (configs/experiment/digits/), 2 seeds, then the table in results/digits/.
# A pipeline check on a different, much easier dataset: NOT a reproduction of Table I.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
LOGS=${KMEXP_LOGS:-logs/digits_table1}
SEEDS=${SEEDS:-0,1}
start=$(date +%s)
KMEXP_LOGS=$LOGS $PY -m kmexp.train -m seed=$SEEDS experiment=digits/table1_full,digits/table1_bl,digits/table1_km \
  logger=csv trainer.accelerator=cpu callbacks.progress_bar=none resume=true "$@"
mins=$(( ($(date +%s) - start) / 60 ))
$PY -m kmexp.results km_table1_digits "$LOGS" --out results/digits --seeds "$SEEDS" \
  --provenance "Ran: \`bash scripts/table1_digits.sh\` — ResNet-32 on scikit-learn digits (1,197 train / 300 val / 300 test, 32x32), 5 epochs, SGD lr 0.05 cosine, batch 32, seeds {$SEEDS}, CPU ($(nproc) cores), ${mins} min in all, $(date -u +%Y-%m-%d)."
