"""One command per paper table: launch its sweep, then build its table.

    python -m kmexp.reproduce km_table1 --dry-run                 # list the runs (rows x seeds)
    python -m kmexp.reproduce km_table1 --launcher slurm -- hydra.launcher.partition=gpu
    python -m kmexp.reproduce km_table1 --collect-only            # after the jobs finished
    python -m kmexp.reproduce all --profile mini                  # every table, tiny, on bundled data

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

from kmexp.resources import repo_root, results_dir
from kmexp.tables import TABLES, Table

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


def _sweeps(table: Table, mini: bool = False) -> list[tuple[list[str], list[str]]]:
    """(experiments, overrides) pairs, each one Hydra multirun, covering exactly the table's rows.

    Experiments whose rows use the same override combinations are swept together; a set of
    combinations that forms a full grid (e.g. depth in 4..24) becomes one ``k=v1,v2`` sweep.
    """
    combos: dict[str, list[tuple[str, ...]]] = {}
    for row in table.rows:
        combos.setdefault(row.experiment, []).append(row.overrides + (row.mini if mini else ()))
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
    for experiments, overrides in _sweeps(table, mini=profile == "mini"):
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                epilog="Arguments after -- are passed to Hydra (e.g. hydra.launcher.partition=gpu).")
    p.add_argument("table", help=f"'all' or one of: {', '.join(sorted(TABLES))}")
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

    if args.table == "all":
        ids = [t for t in TABLES if not TABLES[t].exclude_from_all]
    elif args.table in TABLES:
        ids = [args.table]
    else:
        print(f"error: unknown table {args.table!r}; choose 'all' or one of {sorted(TABLES)}", file=sys.stderr)
        return 1
    seeds = [int(s) for s in args.seeds.split(",") if s != ""]
    mini = args.profile == "mini"
    log_root = Path(args.logs or ("logs/mini" if mini else "logs/reproduce"))
    out = Path(args.out or (results_dir() / ("mini" if mini else "")))

    from kmexp.results import write_table

    status = 0
    for table_id in ids:
        table = TABLES[table_id]
        if args.rows:
            wanted = args.rows.split(",")
            unknown = sorted(set(wanted) - {r.key for r in table.rows})
            if unknown:
                print(f"error: {table_id} has no rows {unknown}; rows: {[r.key for r in table.rows]}", file=sys.stderr)
                return 1
            table = dataclasses.replace(table, rows=tuple(r for r in table.rows if r.key in wanted), seeds=tuple(seeds))
        else:
            table = dataclasses.replace(table, seeds=tuple(seeds))
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
                proc = subprocess.run(cmd, cwd=repo_root())  # installed: the working directory
                if proc.returncode != 0:
                    print(f"[kmexp] {table_id}: some runs failed (exit {proc.returncode}); the table lists them",
                          file=sys.stderr)
                    status = 1
        provenance = (f"Pipeline check (`python -m kmexp.reproduce {table_id} --profile mini`): bundled data, "
                      f"1 epoch of 1 batch, seeds {seeds}, CPU. Not a reproduction of the paper." if mini else "")
        md = write_table(table_id, log_root / table_id, out, provenance, table=table)
        print(f"[kmexp] {table_id}: wrote {md}")
        if mini or table.plot:
            from kmexp.plots import plot_table

            png = plot_table(table_id, md.with_suffix(".csv"))
            if png:
                print(f"[kmexp] {table_id}: wrote {png}")
    return status


if __name__ == "__main__":
    sys.exit(main())
