"""Sweep aggregation: mean +- std over seeds, run counts, failures and missing seeds."""

import csv
import json
import statistics

from kmexp.reporting.results import main, write_table


def _write(root, experiment, seed, acc, status="finished", ratio=None, trainable=7944):
    d = root / f"{experiment.replace('/', '-')}_seed{seed}"
    d.mkdir(parents=True)
    s = {"status": status, "experiment": experiment, "seed": seed}
    if status == "finished":
        s.update({"test/acc": acc, "test/recovered_accuracy_ratio": ratio, "params/trainable": trainable,
                  "params/total": 469176})
    else:
        s["error"] = "boom"
    (d / "summary.json").write_text(json.dumps(s))


def test_table_mean_std_counts_and_problems(tmp_path):
    sweep = tmp_path / "sweep"
    km = [0.70, 0.72, 0.75]
    for seed, acc in enumerate(km):
        _write(sweep, "table1/km", seed, acc, ratio=acc / 0.928)
    for seed in range(5):
        _write(sweep, "table1/bl", seed, 0.5 + 0.01 * seed, ratio=(0.5 + 0.01 * seed) / 0.928, trainable=2922)
    _write(sweep, "table1/km", 3, None, status="failed")

    md = write_table("km_table1", sweep, tmp_path / "out").read_text()
    km_line = next(line for line in md.splitlines() if line.startswith("| KM "))
    mean, std = statistics.fmean(km) * 100, statistics.stdev(km) * 100
    assert f"{mean:.2f} ± {std:.2f}" in km_line
    assert "| 3 |" in km_line  # finished runs
    assert "77.60 ± 0.44" in km_line  # the paper's number beside it
    assert "7,944" in km_line
    assert "table1/km seed 3: failed: boom" in md
    assert "table1/km: missing seeds [3, 4]" in md
    assert "table1/full: missing seeds [0, 1, 2, 3, 4]" in md

    rows = {r["row"]: r for r in csv.DictReader((tmp_path / "out" / "km_table1.csv").open())}
    assert float(rows["bl"]["test/acc_mean"]) == statistics.fmean([0.5, 0.51, 0.52, 0.53, 0.54])
    assert rows["bl"]["runs"] == "5" and rows["full"]["runs"] == "0"


def test_ratio_falls_back_to_the_tables_reference_row(tmp_path):
    sweep = tmp_path / "sweep"
    for seed in range(3):
        _write(sweep, "digits/table1_full", seed, 0.9)
        _write(sweep, "digits/table1_bl", seed, 0.45)
    write_table("km_table1_digits", sweep, tmp_path / "out")
    rows = {r["row"]: r for r in csv.DictReader((tmp_path / "out" / "km_table1_digits.csv").open())}
    assert float(rows["bl"]["test/recovered_accuracy_ratio_mean"]) == 0.5
    assert float(rows["full"]["test/recovered_accuracy_ratio_mean"]) == 1.0


def test_cli_rejects_a_missing_sweep_dir(tmp_path, capsys):
    assert main(["km_table1", str(tmp_path / "nope")]) == 1
    assert "is not a directory" in capsys.readouterr().err
