"""One command per table: dry runs list rows x seeds; a real sweep produces a table."""

import csv

import pytest

from kmexp.reporting.reproduce import main
from kmexp.reporting.tables import TABLES
from tests.conftest import run_cli


@pytest.mark.parametrize("table_id", sorted(TABLES))
def test_dry_run_lists_rows_times_seeds(table_id, capsys):
    assert main([table_id, "--dry-run"]) == 0
    out = capsys.readouterr().out
    table = TABLES[table_id]
    assert f"{len(table.rows)} rows x 5 seeds = {5 * len(table.rows)} runs" in out
    listed = [line.strip() for line in out.splitlines() if line.startswith("  experiment=")]
    expected = [f"experiment={r.experiment}{''.join(' ' + o for o in r.overrides)} seed={s}"
                for r in table.rows for s in range(5)]
    assert listed == expected
    assert "-m experiment=" in out and "resume=true" in out


def test_dry_run_all_covers_every_table(capsys):
    assert main(["all", "--dry-run", "--seeds", "0,1"]) == 0
    out = capsys.readouterr().out
    for table_id, table in TABLES.items():
        if not table.exclude_from_all:
            assert f"{table_id}: {len(table.rows)} rows x 2 seeds" in out


def test_unknown_table_and_rows_are_refused(capsys):
    assert main(["no_such_table", "--dry-run"]) == 1
    assert main(["km_table1", "--rows", "xx", "--dry-run"]) == 1
    assert "has no rows ['xx']" in capsys.readouterr().err


@pytest.mark.slow
def test_two_run_sweep_through_submitit_local_produces_a_table(tmp_path):
    run_cli(["km_table1", "--rows", "bl,km", "--seeds", "0", "--launcher", "submitit_local", "--profile", "mini",
             "--logs", str(tmp_path / "logs"), "--out", str(tmp_path / "out"), "--",
             "backbone=resnet20", "dataset.datamodule.batch_size=8", "hydra.launcher.timeout_min=10"],
            tmp_path, module="kmexp.reproduce", timeout=900)
    rows = {r["row"]: r for r in csv.DictReader((tmp_path / "out" / "km_table1.csv").open())}
    assert set(rows) == {"bl", "km"}
    assert rows["bl"]["runs"] == "1" and rows["km"]["runs"] == "1"
    assert 0.0 <= float(rows["km"]["test/acc_mean"]) <= 1.0
    # ResNet-20: BN 1,376 + classifier 650; KM adds 19 modulators x 162
    assert float(rows["bl"]["params/trainable_mean"]) == 2_026
    assert float(rows["km"]["params/trainable_mean"]) == 2_026 + 19 * 162
    md = (tmp_path / "out" / "km_table1.md").read_text()
    assert "Not a reproduction" in md and "77.60" in md
