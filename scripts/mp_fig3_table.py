"""Model patches Fig. 3 (accuracy vs. trainable parameters) and Fig. 8/9 (accuracy vs. learning
rate) from the sweep of ``bash scripts/mp_fig3.sh``.

    python scripts/mp_fig3_table.py logs/mp_fig3 [--out results]

Writes ``<out>/mp_fig3.csv`` and ``.md`` (one line per network x approach x dataset x learning
rate: mean and std of test accuracy over seeds, number of runs, trainable parameters) and the two
figures ``mp_fig3_lr.png`` (accuracy vs. learning rate, one panel per dataset) and
``mp_fig3_params.png`` (each approach at its best learning rate vs. its trainable parameters).
The paper prints no values for these figures (results/paper/mp_fig3.csv has the sweep's range).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kmexp.results import collect, mean_std  # noqa: E402


def aggregate(sweep_dir: Path) -> list[dict]:
    groups = defaultdict(list)
    for s in collect(sweep_dir):
        if s.get("status") != "finished":
            continue
        lr = ((s.get("config") or {}).get("optim") or {}).get("lr")
        groups[(s.get("backbone"), s.get("method"), s.get("dataset"), lr)].append(s)
    rows = []
    for (backbone, method, dataset, lr), runs in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        acc, std = mean_std([float(r["test/acc"]) for r in runs])
        rows.append({"backbone": backbone, "method": method, "dataset": dataset, "lr": lr, "runs": len(runs),
                     "test_acc_mean": acc, "test_acc_std": std,
                     "params_trainable": int(runs[0].get("params/trainable", 0))})
    return rows


def plot(rows: list[dict], out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    datasets = sorted({r["dataset"] for r in rows})
    fig, axes = plt.subplots(1, len(datasets), figsize=(4 * len(datasets), 3.5), dpi=120, squeeze=False)
    best = {}
    for ax, ds in zip(axes[0], datasets, strict=True):
        curves = defaultdict(list)
        for r in rows:
            if r["dataset"] == ds:
                curves[(r["backbone"], r["method"])].append(r)
        for (backbone, method), pts in sorted(curves.items()):
            pts.sort(key=lambda r: r["lr"])
            ax.errorbar([p["lr"] for p in pts], [100 * p["test_acc_mean"] for p in pts],
                        yerr=[100 * p["test_acc_std"] for p in pts], marker="o", label=f"{backbone} {method}")
            top = max(pts, key=lambda p: p["test_acc_mean"])
            best[(backbone, method, ds)] = top
        ax.set_xscale("log")
        ax.set_title(ds, fontsize=9)
        ax.set_xlabel("initial learning rate")
        ax.set_ylabel("test accuracy (%)")
    axes[0][-1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "mp_fig3_lr.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for (backbone, method, ds), r in sorted(best.items()):
        ax.scatter(r["params_trainable"], 100 * r["test_acc_mean"], label=f"{backbone} {method} {ds}")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel("test accuracy (%) at the best learning rate")
    ax.legend(fontsize=5)
    fig.tight_layout()
    fig.savefig(out / "mp_fig3_params.png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep_dir")
    p.add_argument("--out", default=str(REPO / "results"))
    args = p.parse_args(argv)
    if not Path(args.sweep_dir).is_dir():
        print(f"error: {args.sweep_dir} is not a directory", file=sys.stderr)
        return 1
    rows = aggregate(Path(args.sweep_dir))
    if not rows:
        print(f"error: no finished runs under {args.sweep_dir}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "mp_fig3.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = ["# Model patches Fig. 3 / 8 / 9: accuracy per approach, dataset and learning rate", "",
             "| network | approach | dataset | lr | runs | accuracy (%) | # trainable |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['backbone']} | {r['method']} | {r['dataset']} | {r['lr']} | {r['runs']} | "
              f"{100 * r['test_acc_mean']:.2f} ± {100 * r['test_acc_std']:.2f} | {r['params_trainable']:,} |" for r in rows]
    (out / "mp_fig3.md").write_text("\n".join(lines) + "\n")
    plot(rows, out)
    print(f"[kmexp] wrote {out / 'mp_fig3.csv'}, {out / 'mp_fig3.md'} and the figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
