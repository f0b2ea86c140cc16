"""One command per table: dry runs list rows x seeds; a real sweep produces a table."""

import pytest

from kmexp.reproduce import main
from kmexp.tables import TABLES


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


# The submitit_local submit -> status -> collect cycle: tests/test_jobs.py
