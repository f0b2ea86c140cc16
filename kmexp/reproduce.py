"""One command per paper table: launch its sweep, then build its table.

    python -m kmexp.reproduce km_table1 --dry-run                 # list and validate the runs (rows x seeds)
    python -m kmexp.reproduce km_table1 --launcher slurm -- hydra.launcher.partition=gpu   # submit, return
    python -m kmexp.reproduce status km_table1                    # finished / running / failed / missing
    python -m kmexp.reproduce km_table1 --collect-only            # build the table from what finished
    python -m kmexp.reproduce all --profile mini                  # every table, tiny, on bundled data

Every run of the selected tables is composed and validated before the first one starts or
is queued (kmexp.jobs.preflight). With ``--launcher slurm`` (or ``submitit_local``) every
run becomes its own queued job and the command returns at once (kmexp.jobs); the default
local launcher runs the sweeps here, one after another, and then builds the tables.

Each table is a Hydra multirun over its rows (experiment presets) x seeds. Every run
has ``resume=true`` and a run directory named by its overrides (table, row, seed), so
a job requeued after preemption or a time limit continues from its own last checkpoint,
and re-launching a partly finished sweep only redoes what is missing.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shlex
import subprocess
import sys
from pathlib import Path

from kmexp.tables import TABLES, Table

REPO = Path(__file__).resolve().parents[1]
LAUNCHERS = ("local", "submitit_local", "slurm")

# The mini profile: every table end to end on bundled data with tiny budgets. A
# pipeline check, never a reproduction: its tables go to results/mini/.
MINI_TRAINER = (
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.accelerator=cpu",
    "logger=csv",
    "callbacks.progress_bar=none",
)


def runs(table: Table, seeds: list[int]) -> list[tuple]:
    return [(row, seed) for row in table.rows for seed in seeds]


def _sweeps(table: Table) -> list[tuple[list[str], list[str]]]:
    """(experiments, overrides) pairs, each one Hydra multirun, covering exactly the table's rows.

    Experiments whose rows use the same override combinations are swept together; a set of
    combinations that forms a full grid (e.g. depth in 4..24) becomes one ``k=v1,v2`` sweep.
    """
    combos: dict[str, list[tuple[str, ...]]] = {}
    for row in table.rows:
        combos.setdefault(row.experiment, []).append(row.overrides)
    by_combos: dict[frozenset, tuple[tuple, list[str]]] = {}
    for experiment, overrides in combos.items():
        ordered = tuple(dict.fromkeys(overrides))
        by_combos.setdefault(frozenset(ordered), (ordered, []))[1].append(experiment)
    sweeps = []
    for overrides, experiments in by_combos.values():
        grid = _as_grid(overrides)
        if grid is not None:
            sweeps.append((experiments, grid))
        else:
            sweeps.extend((experiments, list(o)) for o in overrides)
    return sweeps


def _as_grid(combos: tuple[tuple[str, ...], ...]) -> list[str] | None:
    """``["k1=a,b", "k2=c"]`` if ``combos`` is the full product of per-key values, else None."""
    dicts = [dict(o.split("=", 1) for o in c) for c in combos]
    keys = sorted(dicts[0]) if dicts else []
    if any(sorted(d) != keys for d in dicts):
        return None
    values = {k: list(dict.fromkeys(d[k] for d in dicts)) for k in keys}
    if math.prod(len(v) for v in values.values()) != len(set(combos)):
        return None
    return [f"{k}={','.join(v)}" for k, v in values.items()]


def sweep_commands(table_id: str, table: Table, seeds: list[int], launcher: str, log_root: Path,
                   profile: str | None, extra: list[str]) -> list[list[str]]:
    """The Hydra multirun commands that run every row of ``table`` for every seed."""
    cmds = []
    for experiments, overrides in _sweeps(table):
        cmd = [
            sys.executable, "-m", "kmexp.train", "-m",
            "experiment=" + ",".join(experiments),
            "seed=" + ",".join(str(s) for s in seeds),
            *overrides,
            "resume=true",
            f"paths.log_dir={log_root / table_id}",
            f"hydra/launcher={launcher}",
        ]
        if profile == "mini":
            cmd += [*MINI_TRAINER, *table.mini]
        cmds.append(cmd + extra)
    return cmds


def run_list(table_id: str, table: Table, seeds: list[int], log_root: Path, profile: str | None,
             extra: list[str]) -> list:
    """Every run of ``table`` as a :class:`kmexp.jobs.Run` with its complete command line."""
    from kmexp.jobs import Run

    mini = [*MINI_TRAINER, *table.mini] if profile == "mini" else []
    return [Run(table_id, row.key, seed, (f"experiment={row.experiment}", f"seed={seed}", *row.overrides,
                                          "resume=true", f"paths.log_dir={log_root / table_id}", *mini, *extra))
            for row, seed in runs(table, seeds)]


def _select_tables(name: str | None, log_root: Path) -> list[str]:
    """Tables to report: the one named, every table of 'all', or (None) those with runs under ``log_root``."""
    if name is None:
        return [t for t in TABLES if (log_root / t).is_dir()]
    if name == "all":
        return [t for t in TABLES if not TABLES[t].exclude_from_all]
    return [name]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                epilog="Arguments after -- are passed to Hydra (e.g. hydra.launcher.partition=gpu).")
    p.add_argument("table", help=f"'status', 'all' or one of: {', '.join(sorted(TABLES))}")
    p.add_argument("status_table", nargs="?", default=None, help="after 'status': the table (default: all)")
    p.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds (default: the papers' 5)")
    p.add_argument("--rows", default=None, help="comma-separated row ids to run (default: every row)")
    p.add_argument("--launcher", default="local", choices=LAUNCHERS)
    p.add_argument("--profile", default=None, choices=["mini"], help="mini: tiny budgets on bundled data")
    p.add_argument("--logs", default=None, help="root of the sweep directories (default logs/reproduce, or logs/mini)")
    p.add_argument("--out", default=None, help="where tables are written (default results/, or results/mini)")
    p.add_argument("--dry-run", action="store_true", help="print the runs and the command, launch nothing")
    p.add_argument("--collect-only", action="store_true", help="only aggregate finished runs into the table")
    args, extra = p.parse_known_args(argv)
    extra = [e for e in extra if e != "--"]
    launcher_extra = [e for e in extra if e.lstrip("+~").startswith("hydra")]  # launcher settings
    job_extra = [e for e in extra if e not in launcher_extra]
    if args.table == "status":
        return status_main(args)
    if args.status_table is not None:
        print(f"error: unexpected argument {args.status_table!r}", file=sys.stderr)
        return 1

    if args.table == "all":
        ids = [t for t in TABLES if not TABLES[t].exclude_from_all]
    elif args.table in TABLES:
        ids = [args.table]
    else:
        print(f"error: unknown table {args.table!r}; choose 'all' or one of {sorted(TABLES)}", file=sys.stderr)
        return 1
    seeds = [int(s) for s in args.seeds.split(",") if s != ""]
    mini = args.profile == "mini"
    log_root = Path(args.logs or (REPO / "logs" / ("mini" if mini else "reproduce"))).resolve()
    out = Path(args.out or (REPO / "results" / ("mini" if mini else "")))

    from kmexp.errors import ConfigError
    from kmexp.jobs import format_status, preflight, submit, table_status
    from kmexp.results import write_table

    tables = {}
    for table_id in ids:
        table = selected_table(table_id, args.rows, seeds)
        if table is None:
            return 1
        tables[table_id] = table
    if not args.collect_only:  # compose and validate every run before the first starts or is queued
        all_runs = [r for t_id, t in tables.items() for r in run_list(t_id, t, seeds, log_root, args.profile, job_extra)]
        try:
            checked = preflight(all_runs, args.launcher, launcher_extra)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"[kmexp] {len(checked)} runs of {len(tables)} table(s) composed and validated", flush=True)
        if args.launcher in ("slurm", "submitit_local") and not args.dry_run:
            for table_id, table in tables.items():
                # never queue a run twice: skip what finished or is still queued / running
                busy = {(st.run, st.state) for st in table_status(table_id, table, seeds, log_root / table_id)
                        if st.state in ("finished", "running")}
                skip = {run for run, _ in busy}
                mine = [r for r in checked if r.table == table_id and (r.row, r.seed) not in skip]
                if skip:
                    print(f"[kmexp] {table_id}: skipping {len(skip)} runs that finished or are queued/running")
                if not mine:
                    continue
                records = submit(mine, args.launcher, log_root / table_id)
                print(f"[kmexp] {table_id}: submitted {len(records)} jobs ({records[0]['job_id']} ...); "
                      f"job ids in {log_root / table_id / 'jobs.jsonl'}")
            where = f" --logs {log_root}" if args.logs else ""
            print(f"[kmexp] nothing waits for them. Progress: python -m kmexp.reproduce status {args.table}{where}; "
                  f"tables: python -m kmexp.reproduce {args.table} --collect-only{where}")
            return 0

    status = 0
    for table_id, table in tables.items():
        todo = runs(table, seeds)
        cmds = sweep_commands(table_id, table, seeds, args.launcher, log_root, args.profile, extra)
        if args.dry_run:
            print(f"{table_id}: {len(table.rows)} rows x {len(seeds)} seeds = {len(todo)} runs")
            for row, seed in todo:
                print(f"  experiment={row.experiment}{''.join(' ' + o for o in row.overrides)} seed={seed}")
            for cmd in cmds:
                print("  command: " + shlex.join(cmd))
            continue
        if not args.collect_only:
            print(f"[kmexp] {table_id}: launching {len(todo)} runs", flush=True)
            for cmd in cmds:
                proc = subprocess.run(cmd, cwd=REPO)
                if proc.returncode != 0:
                    print(f"[kmexp] {table_id}: some runs failed (exit {proc.returncode}); the table lists them",
                          file=sys.stderr)
                    status = 1
        provenance = (f"Pipeline check (`python -m kmexp.reproduce {table_id} --profile mini`): bundled data, "
                      f"1 epoch of 1 batch, seeds {seeds}, CPU. Not a reproduction of the paper." if mini else "")
        md = write_table(table_id, log_root / table_id, out, provenance, table=table)
        print(f"[kmexp] {table_id}: wrote {md}")
        if args.collect_only:
            print(format_status(table_id, table_status(table_id, table, seeds, log_root / table_id)))
        if mini or table.plot:
            from kmexp.plots import plot_table

            png = plot_table(table_id, md.with_suffix(".csv"))
            if png:
                print(f"[kmexp] {table_id}: wrote {png}")
    return status


def selected_table(table_id: str, rows: str | None, seeds: list[int]) -> Table | None:
    """The table restricted to ``rows`` (comma-separated ids) with ``seeds``; None (after an
    error line) when a row does not exist."""
    table = TABLES[table_id]
    if rows:
        wanted = rows.split(",")
        unknown = sorted(set(wanted) - {r.key for r in table.rows})
        if unknown:
            print(f"error: {table_id} has no rows {unknown}; rows: {[r.key for r in table.rows]}", file=sys.stderr)
            return None
        table = dataclasses.replace(table, rows=tuple(r for r in table.rows if r.key in wanted))
    return dataclasses.replace(table, seeds=tuple(seeds))


def status_main(args) -> int:
    """``python -m kmexp.reproduce status [TABLE]``: per table, finished / running / failed / missing."""
    from kmexp.jobs import format_status, table_status

    mini = args.profile == "mini"
    log_root = Path(args.logs or (REPO / "logs" / ("mini" if mini else "reproduce"))).resolve()
    name = args.status_table
    if name not in (None, "all") and name not in TABLES:
        print(f"error: unknown table {name!r}; choose 'all' or one of {sorted(TABLES)}", file=sys.stderr)
        return 1
    seeds = [int(s) for s in args.seeds.split(",") if s != ""]
    for table_id in _select_tables(name, log_root):
        table = selected_table(table_id, args.rows, seeds)
        if table is None:
            return 1
        statuses = table_status(table_id, table, seeds, log_root / table_id)
        print(format_status(table_id, statuses))
    return 0


if __name__ == "__main__":
    sys.exit(main())
