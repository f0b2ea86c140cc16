"""The digits profile's budget search: train candidate budgets on the VALIDATION split, print val/acc.

Each table of the digits profile (``python -m kmexp.reproduce ... --profile digits``) runs with one
budget (epochs, learning rate, batch size) chosen once by this search on seed 0: the budget with the
best final ``val/acc`` (ties: the cheaper one). The test split is never read here (the runs test at
the end, as every run does, but this script prints only validation numbers), and the chosen budget
is written into the table's config comment.

    python scripts/digits_budget_search.py --log /tmp/search \\
        --base "dataset=digits_0to4 backbone=resnet20_gn method=full" \\
        --grid "optim.lr=0.05,0.1" "trainer.max_epochs=10,20"
"""

from __future__ import annotations

import argparse
import csv
import itertools
import shlex
import subprocess
import sys
import time
from pathlib import Path


def val_curve(run_dir: Path) -> list[float]:
    """Every logged ``val/acc`` of a run (its csv logger), in order."""
    values = []
    for path in run_dir.rglob("metrics.csv"):
        with path.open() as f:
            values += [float(row["val/acc"]) for row in csv.DictReader(f) if row.get("val/acc")]
    return values


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="overrides every candidate shares")
    p.add_argument("--grid", nargs="*", default=[], help="key=v1,v2 ...: the product is searched")
    p.add_argument("--log", required=True, help="where the candidate runs go")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--curve", action="store_true", help="also print val/acc after every epoch (with a constant "
                   "learning rate, epoch k of the longest run is the k-epoch candidate)")
    args = p.parse_args(argv)
    axes = [[f"{g.split('=', 1)[0]}={v}" for v in g.split("=", 1)[1].split(",")] for g in args.grid]
    for i, combo in enumerate(itertools.product(*axes) if axes else [()]):
        run_dir = Path(args.log) / f"candidate{i}"
        cmd = [sys.executable, "-m", "kmexp.train", *shlex.split(args.base), *combo, f"seed={args.seed}",
               "logger=csv", "callbacks.progress_bar=none", "trainer.accelerator=cpu",
               f"paths.log_dir={args.log}", f"hydra.run.dir={run_dir}"]
        start = time.time()
        done = subprocess.run(cmd, capture_output=True, text=True)
        curve = val_curve(run_dir) if done.returncode == 0 else []
        shown = f"{100 * curve[-1]:.1f}" if curve else f"failed: {done.stderr.strip().splitlines()[-1:]}"
        # with a constant learning rate, epoch k of this run is the k-epoch candidate
        each = f"\tper epoch {' '.join(f'{100 * v:.1f}' for v in curve)}" if args.curve and curve else ""
        print(f"{' '.join(combo) or '(base)'}\tval/acc {shown}\t{time.time() - start:.0f} s{each}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
