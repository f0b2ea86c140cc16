"""Figures are drawn from aggregated tables (one PNG per table)."""

import csv

import pytest

from kmexp.reporting.plots import plot_table
from kmexp.reporting.tables import TABLES


def _fake_csv(path, table, acc=0.5):
    rows = [{"row": r.key, "x": r.x, "test/acc_mean": acc + 0.01 * i, "test/acc_std": 0.01,
             "params/trainable_mean": 1000 * (i + 1), "params/gflops_mean": 0.1 * i}
            for i, r in enumerate(table.rows)]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


@pytest.mark.parametrize("table_id", ["table1", "fig5", "ks_fig3_cifar10", "ks_fig4", "mp_fig3_cars"])
def test_plot_writes_a_png(tmp_path, table_id):
    path = tmp_path / f"{table_id}.csv"
    _fake_csv(path, TABLES[table_id])
    png = plot_table(table_id, path)
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_finished_rows_no_png(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("row,test/acc_mean\nfull,\n")
    assert plot_table("table1", path) is None
