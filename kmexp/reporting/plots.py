"""Figures of aggregated tables (matplotlib, PNG next to the table's CSV).

``plot_table(table_id, csv_path, profile)`` draws the table's figure kind (``Table.plot``):
``ablation`` / ``bar`` (accuracy per row with std error bars), ``params`` (accuracy vs
trainable parameters, log x: KM Fig. 4), ``scaling`` (accuracy vs a row's x value, dot
size = FLOPs: kernel-sharing Figs. 3-5). Rows without finished runs are skipped.
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from kmexp.reporting.tables import TABLES  # noqa: E402


def _float(v: str | None) -> float | None:
    try:
        return float(v) if v not in (None, "") else None
    except ValueError:
        return None


def plot_table(table_id: str, csv_path: str | Path, profile: str | None = None) -> Path | None:
    """Draw ``csv_path``'s figure beside it; under a profile the title's first line says which
    profile and data it shows (:func:`kmexp.reporting.profiles.caption`)."""
    from kmexp.reporting.profiles import caption

    table = TABLES[table_id]
    csv_path = Path(csv_path)
    rows = [r for r in csv.DictReader(csv_path.open()) if _float(r.get("test/acc_mean")) is not None]
    if not rows:
        return None
    kind = table.plot or "bar"
    labels = {row.key: row.label for row in table.rows}
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(rows) + 2), 3.5), dpi=120)
    acc = [100 * _float(r["test/acc_mean"]) for r in rows]
    err = [100 * (_float(r.get("test/acc_std")) or 0.0) for r in rows]
    if kind == "params" and all(_float(r.get("params/trainable_mean")) for r in rows):
        x = [_float(r["params/trainable_mean"]) for r in rows]
        ax.errorbar(x, acc, yerr=err, fmt="o")
        for xi, yi, r in zip(x, acc, rows, strict=True):
            ax.annotate(labels.get(r["row"], r["row"]), (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("trainable parameters")
    elif kind == "scaling" and all(_float(r.get("x")) is not None for r in rows):
        series = {row.key: row.series or "runs" for row in table.rows}
        for name in dict.fromkeys(series[r["row"]] for r in rows):
            pts = sorted((_float(r["x"]), a, _float(r.get("params/gflops_mean")) or 0.0)
                         for r, a in zip(rows, acc, strict=True) if series[r["row"]] == name)
            xs, ys, gf = zip(*pts, strict=True)
            line = ax.plot(xs, ys, "-", lw=1, label=name)[0]
            ax.scatter(xs, ys, s=[15 + 25 * g for g in gf], color=line.get_color())  # dot size = FLOPs
        ax.legend(fontsize=7)
        ax.set_xlabel(table.x_label or "x")
    else:
        ax.bar(range(len(rows)), acc, yerr=err, capsize=3)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([labels.get(r["row"], r["row"]) for r in rows], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("test accuracy (%)")
    import textwrap

    width = int(fig.get_figwidth() * 13)  # characters of 8-point text that fit the figure
    title = textwrap.fill(table.title, width)
    where = caption(table, profile)
    ax.set_title(f"{where.upper()}\n{title}" if where else title, fontsize=8)
    fig.tight_layout()
    png = csv_path.with_suffix(".png")
    fig.savefig(png)
    plt.close(fig)
    return png
