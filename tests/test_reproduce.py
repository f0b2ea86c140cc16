"""One launcher: dry runs list every unique run once with the table cells it feeds; ids are table
ids or preset folders; a real sweep produces a table."""

import re

import pytest

from kmexp.reporting.reproduce import entry as main
from kmexp.reporting.tables import TABLES


def _plan(out: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """run id -> its overrides line, and run id -> the cells it feeds (``table/row@seed``), from a dry run."""
    runs, feeds, current = {}, {}, None
    for line in out.splitlines():
        if m := re.match(r"run (\w+): (.*)", line):
            current = m.group(1)
            assert current not in runs, f"run {current} listed twice"
            runs[current] = m.group(2)
        elif line.startswith("  feeds: "):
            seed = runs[current].rsplit("seed=", 1)[1]
            feeds[current] = [f"{c}@{seed}" for c in line.removeprefix("  feeds: ").split(", ")]
    return runs, feeds


@pytest.fixture(scope="module")
def dry_run_all():
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["all", "--dry-run", "--seeds", "0,1"]) == 0
    return buf.getvalue()


@pytest.mark.slow
def test_all_lists_every_run_once_and_every_cell_maps_to_one_run(dry_run_all):
    runs, feeds = _plan(dry_run_all)
    in_all = {t: table for t, table in TABLES.items() if not table.exclude_from_all}
    for table_id, table in in_all.items():
        assert f"{table_id}: {len(table.rows)} rows x 2 seeds = {2 * len(table.rows)} cells" in dry_run_all
    fed = [cell for cells in feeds.values() for cell in cells]
    assert len(fed) == len(set(fed)) == 2 * sum(len(t.rows) for t in in_all.values())  # each cell fed by one run
    assert set(feeds) == set(runs)
    assert f"{len(runs)} unique runs feed {len(fed)} table cells" in dry_run_all
    by_cell = {c.removesuffix("@0"): r for r, cells in feeds.items() for c in cells if c.endswith("@0")}
    # the same training configuration is one run, whichever tables need it
    assert by_cell["table2_cars/tkm2"] == by_cell["fig4_cars/tkm2"]
    assert by_cell["table1/km"] == by_cell["fig5/activation_tanh"] == by_cell["fig5/depth_2"]
    assert by_cell["mp_table4_independent/independent"] == by_cell["mp_table5_independent/independent_res224"]
    assert by_cell["mp_table6_cars/last_layer"] == by_cell["mp_fig3_cars/mobilenet_v2_last_layer_lr0.045"]
    assert by_cell["table2_cars/tkm1"] != by_cell["table2_aircraft/tkm1"]
    # a shared run is launched by the first table only
    commands = [line for line in dry_run_all.splitlines() if line.startswith("command (fig4_cars)")]
    assert commands and all("method=last_layer" in c and "method.norm_stats=update" in c and "method=km" not in c
                            for c in commands)


def test_a_table_lists_its_cells_and_its_distinct_runs(capsys):
    assert main(["fig5", "--dry-run", "--seeds", "0"]) == 0
    out = capsys.readouterr().out
    runs, feeds = _plan(out)
    assert "fig5: 13 rows x 1 seeds = 13 cells" in out
    assert len(runs) == 11  # tanh, default init and depth 2 are one configuration (the KM defaults)
    assert sorted(c for cells in feeds.values() for c in cells) == sorted(f"fig5/{r.key}@0" for r in TABLES["fig5"].rows)
    assert "'hydra.sweep.subdir=${kmexp.run_id:}'" in out and "resume=true" in out


def test_a_preset_folder_selects_its_tables(capsys):
    assert main(["table3", "--dry-run", "--seeds", "0"]) == 0
    out = capsys.readouterr().out
    # the folder's paper tables; table3_digits belongs to the digits profile only
    assert [t for t in TABLES if t.startswith("table3_") and not TABLES[t].exclude_from_all] == [
        line.split(":")[0] for line in out.splitlines() if line.startswith("table3_")]
    assert "table3_digits" in TABLES and "table3_digits:" not in out


def test_unknown_table_and_rows_are_refused(capsys):
    assert main(["no_such_table", "--dry-run"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown table 'no_such_table'; known: all, ")
    assert "table1" in err[0] and "mp_fig3_cars" in err[0]
    assert main(["table1", "--rows", "xx", "--dry-run"]) == 1
    assert "has no rows ['xx']" in capsys.readouterr().err


# The submitit_local submit -> status -> collect cycle: tests/test_jobs.py
