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


def final_val_acc(run_dir: Path) -> float | None:
    """The last logged ``val/acc`` of a run (its csv logger), or None."""
    value = None
    for path in run_dir.rglob("metrics.csv"):
        with path.open() as f:
            for row in csv.DictReader(f):
                if row.get("val/acc"):
                    value = float(row["val/acc"])
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="overrides every candidate shares")
    p.add_argument("--grid", nargs="*", default=[], help="key=v1,v2 ...: the product is searched")
    p.add_argument("--log", required=True, help="where the candidate runs go")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    axes = [[f"{g.split('=', 1)[0]}={v}" for v in g.split("=", 1)[1].split(",")] for g in args.grid]
    for i, combo in enumerate(itertools.product(*axes) if axes else [()]):
        run_dir = Path(args.log) / f"candidate{i}"
        cmd = [sys.executable, "-m", "kmexp.train", *shlex.split(args.base), *combo, f"seed={args.seed}",
               "logger=csv", "callbacks.progress_bar=none", "trainer.accelerator=cpu",
               f"paths.log_dir={args.log}", f"hydra.run.dir={run_dir}"]
        start = time.time()
        done = subprocess.run(cmd, capture_output=True, text=True)
        acc = final_val_acc(run_dir) if done.returncode == 0 else None
        shown = f"{100 * acc:.1f}" if acc is not None else f"failed: {done.stderr.strip().splitlines()[-1:]}"
        print(f"{' '.join(combo) or '(base)'}\tval/acc {shown}\t{time.time() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
