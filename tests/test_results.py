"""Aggregation: each cell reads its run's summary; mean +- std over seeds, run counts, failures and
missing seeds."""

import csv
import json
import statistics

from kmexp.reporting.results import main, write_table
from kmexp.reporting.runs import Cell
from kmexp.reporting.tables import TABLES


def _cells(table_id, seeds=range(5)):
    """Cells with made-up run ids (``<row>-<seed>``): results only reads ``<runs>/<run_id>/summary.json``."""
    return [Cell(table_id, r.key, s, (), f"{r.key}-{s}") for r in TABLES[table_id].rows for s in seeds]


def _write(runs, row, seed, acc, status="finished", ratio=None, trainable=7944):
    d = runs / f"{row}-{seed}"
    d.mkdir(parents=True)
    s = {"status": status, "seed": seed}
    if status == "finished":
        s.update({"test/acc": acc, "test/recovered_accuracy_ratio": ratio, "params/trainable": trainable,
                  "params/total": 469176})
    else:
        s["error"] = "boom"
    (d / "summary.json").write_text(json.dumps(s))


def test_table_mean_std_counts_and_problems(tmp_path):
    runs = tmp_path / "runs"
    km = [0.70, 0.72, 0.75]
    for seed, acc in enumerate(km):
        _write(runs, "km", seed, acc, ratio=acc / 0.928)
    for seed in range(5):
        _write(runs, "bl", seed, 0.5 + 0.01 * seed, ratio=(0.5 + 0.01 * seed) / 0.928, trainable=2922)
    _write(runs, "km", 3, None, status="failed")
    _write(runs, "ld", 9, 0.9)  # seed 9 is no cell of this sweep: not counted

    md = write_table("table1", _cells("table1"), runs, tmp_path / "out").read_text()
    km_line = next(line for line in md.splitlines() if line.startswith("| KM "))
    mean, std = statistics.fmean(km) * 100, statistics.stdev(km) * 100
    assert f"{mean:.2f} ± {std:.2f}" in km_line
    assert "| 3 |" in km_line  # finished runs
    assert "77.60 ± 0.44" in km_line  # the paper's number beside it
    assert "7,944" in km_line
    assert "km seed 3: failed: boom" in md
    assert "km (experiment=table1/cifar10 method=km save_init_checkpoint=true): missing seeds [3, 4]" in md
    assert "full (experiment=table1/cifar10 method=full): missing seeds [0, 1, 2, 3, 4]" in md

    rows = {r["row"]: r for r in csv.DictReader((tmp_path / "out" / "table1.csv").open())}
    assert float(rows["bl"]["test/acc_mean"]) == statistics.fmean([0.5, 0.51, 0.52, 0.53, 0.54])
    assert rows["bl"]["runs"] == "5" and rows["full"]["runs"] == "0" and rows["ld"]["runs"] == "0"


def test_ratio_falls_back_to_the_tables_reference_row(tmp_path):
    runs = tmp_path / "runs"
    for seed in range(3):
        _write(runs, "full", seed, 0.9)
        _write(runs, "bl", seed, 0.45)
    write_table("table1_digits", _cells("table1_digits", range(3)), runs, tmp_path / "out")
    rows = {r["row"]: r for r in csv.DictReader((tmp_path / "out" / "table1_digits.csv").open())}
    assert float(rows["bl"]["test/recovered_accuracy_ratio_mean"]) == 0.5
    assert float(rows["full"]["test/recovered_accuracy_ratio_mean"]) == 1.0


def test_cli_rejects_a_missing_runs_dir(tmp_path, capsys):
    assert main(["table1", str(tmp_path / "nope")]) == 1
    assert "is not a directory" in capsys.readouterr().err
