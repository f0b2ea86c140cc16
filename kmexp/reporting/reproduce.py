"""One launcher: every paper table runs through ``python -m kmexp.reproduce``.

    python -m kmexp.reproduce table1 --dry-run                 # the runs and the cells they feed (validated)
    python -m kmexp.reproduce table2 --launcher slurm -- hydra.launcher.partition=gpu   # submit, return
    python -m kmexp.reproduce status table2                    # finished / running / failed / missing
    python -m kmexp.reproduce table1 --collect-only            # build the tables from what finished
    python -m kmexp.reproduce all --profile mini               # every table, tiny, on bundled data
    python -m kmexp.reproduce table1 --runs-per-gpu 4          # 4 runs side by side per GPU
    python -m kmexp.reproduce all --profile digits             # the digits-analog tables, converged, 3 seeds

Every run of the selected tables is composed and validated before the first one starts or is
queued (:func:`kmexp.reporting.jobs.preflight`). With ``--launcher slurm`` (or
``submitit_local``) every unique run becomes its own queued job and the command returns at once
(:mod:`kmexp.reporting.jobs`); the default local launcher runs the sweeps here, one after
another, and then builds the tables. ``--runs-per-gpu k`` trains k runs at once per GPU
(:mod:`kmexp.reporting.packing`: k processes per device locally, or one SLURM job of one GPU
per k runs), each with its outputs exactly as if it ran alone.

A table id (``table2_cars``) or its preset folder (``table2``: every table of that folder) or
``all``. A run is trained once: each (row, seed) cell resolves to a run identity
(:mod:`kmexp.reporting.runs`); cells of several tables that resolve to the same training
configuration share one run in ``<logs>/runs/<identity>/``. Each table's new runs form Hydra
multiruns over its rows (experiment presets plus overrides) x seeds, with ``resume=true``: a job
requeued after preemption or a time limit continues from its own last checkpoint, and re-launching
a partly finished sweep only redoes what is missing.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shlex
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from kmexp.errors import KmexpError
from kmexp.reporting.dependencies import resolve_references, with_requirements
from kmexp.reporting.jobs import CLUSTERS
from kmexp.reporting.profiles import MINI_TRAINER, PROFILES, in_profile, profile_overrides  # noqa: F401
from kmexp.reporting.runs import Cell, override_key, plan
from kmexp.reporting.tables import TABLES, Table
from kmexp.resources import repo_root, results_dir

LAUNCHERS = ("local", "submitit_local", "slurm")

def _sweeps(rows, fixed: list[str] = ()) -> list[tuple[list[str], list[str]]]:
    """(experiments, overrides) pairs, each one Hydra multirun, covering exactly ``rows``.

    Row overrides of keys in ``fixed`` (the profile's and the command line's) are left to those.
    Experiments whose rows use the same override combinations are swept together; a set of
    combinations that forms a full grid (e.g. depth in 4..24) becomes one ``k=v1,v2`` sweep.
    """
    fixed_keys = {override_key(o) for o in fixed}
    combos: dict[str, list[tuple[str, ...]]] = {}
    for row in rows:
        own = tuple(o for o in row.overrides if override_key(o) not in fixed_keys)
        combos.setdefault(row.experiment, []).append(own)
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
    if combos == ((),):
        return []
    dicts = [dict(o.split("=", 1) for o in c) for c in combos]
    keys = sorted(dicts[0]) if dicts else []
    if any(sorted(d) != keys for d in dicts):
        return None
    values = {k: list(dict.fromkeys(d[k] for d in dicts)) for k in keys}
    if math.prod(len(v) for v in values.values()) != len(set(combos)):
        return None
    return [f"{k}={','.join(v)}" for k, v in values.items()]


def sweep_commands(rows_by_seeds: dict[tuple[int, ...], list], launcher: str, log_root: Path,
                   fixed: list[str]) -> list[list[str]]:
    """Hydra multirun commands that train the given rows for the given seeds; each job's run
    directory is ``<log_root>/runs/<its run identity>`` (``fixed``: profile + command-line overrides)."""
    cmds = []
    for seeds, rows in rows_by_seeds.items():
        for experiments, overrides in _sweeps(rows, fixed):
            cmds.append([
                sys.executable, "-m", "kmexp.train", "-m",
                "experiment=" + ",".join(experiments),
                "seed=" + ",".join(str(s) for s in seeds),
                *overrides,
                "resume=true",
                f"paths.log_dir={log_root}",
                f"hydra.sweep.dir={log_root / 'runs'}",
                "hydra.sweep.subdir=${kmexp.run_id:}",
                f"hydra/launcher={launcher}",
                *fixed,
            ])
    return cmds


def select(name: str, profile: str | None = None) -> list[str]:
    """Table ids for ``all``, a table id, or a preset folder (every table whose id starts with it);
    ``all`` and folders take the profile's tables (:func:`kmexp.reporting.profiles.in_profile`);
    several, comma-separated (``table2_digits,table3_digits``): each one's tables, in that order."""
    if "," in name:
        return list(dict.fromkeys(t for part in name.split(",") if part for t in select(part, profile)))
    if name == "all":
        return [t for t in TABLES if in_profile(TABLES[t], profile)]
    if name in TABLES:
        return [name]
    group = [t for t in TABLES if t.startswith(name + "_") and in_profile(TABLES[t], profile)]
    if group:
        return group
    groups = sorted({t.rsplit("_", 1)[0] for t in TABLES} - set(TABLES))
    raise KmexpError(f"unknown table {name!r}; known: all, {', '.join(sorted(TABLES))} (or a group: {', '.join(groups)})")


def new_runs(table: Table, cells: list[Cell], launched: set[str]) -> dict[tuple[int, ...], list]:
    """The table's rows whose runs no earlier table launched, grouped by the seeds they still need."""
    need: dict[str, list[int]] = defaultdict(list)
    for c in cells:
        if c.run_id not in launched:
            launched.add(c.run_id)
            need[c.row].append(c.seed)
    grouped: dict[tuple[int, ...], list] = defaultdict(list)
    for row in table.rows:
        if row.key in need:
            grouped[tuple(need[row.key])].append(row)
    return grouped


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                epilog="Arguments after -- are passed to Hydra (e.g. hydra.launcher.partition=gpu).")
    p.add_argument("table", help="'status', 'all', a table id or a preset folder (e.g. table1, table2, ks_fig3), "
                                  "or several, comma-separated")
    p.add_argument("status_table", nargs="?", default=None, help="after 'status': what to report (default: all)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: the papers' 5; digits profile: 0,1,2)")
    p.add_argument("--rows", default=None, help="comma-separated row ids to run (default: every row)")
    p.add_argument("--launcher", default="local", choices=LAUNCHERS)
    p.add_argument("--profile", default=None, choices=sorted(PROFILES),
                   help="mini: tiny budgets on bundled data (pipeline check); digits: the digits-analog tables, "
                        "trained to convergence on scikit-learn digits (kmexp/reporting/profiles.py)")
    p.add_argument("--logs", default=None, help="root of the run directories (default logs/reproduce, or logs/<profile>)")
    p.add_argument("--out", default=None, help="where tables are written (default results/, or results/<profile>)")
    p.add_argument("--dry-run", action="store_true", help="print the runs, the cells they feed and the commands")
    p.add_argument("--collect-only", action="store_true", help="only aggregate finished runs into the tables")
    p.add_argument("--runs-per-gpu", type=int, default=1, metavar="K",
                   help="train K runs side by side per GPU (K processes; one SLURM job of one GPU per K runs)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="local launcher: train up to N sweeps at once, each with cores/N threads "
                        "(default 1; the digits profile: one per core)")
    args, extra = p.parse_known_args(argv)
    extra = [e for e in extra if e != "--"]
    status_only = args.table == "status"
    if args.status_table is not None and not status_only:
        raise KmexpError(f"unexpected argument {args.status_table!r}")

    ids = select(args.status_table or "all", args.profile) if status_only else select(args.table, args.profile)
    selected, ids = set(ids), with_requirements(ids, TABLES)  # pretraining tables run first
    profile = PROFILES.get(args.profile)
    default_seeds = ",".join(map(str, profile.default_seeds)) if profile and profile.default_seeds else "0,1,2,3,4"
    seeds = [int(s) for s in (args.seeds or default_seeds).split(",") if s != ""]
    log_root = Path(args.logs or (profile.logs if profile else "logs/reproduce")).resolve()
    out = Path(args.out or (results_dir() / (profile.results if profile else "")))

    tables: dict[str, Table] = {}
    for table_id in ids:
        table = TABLES[table_id]
        if args.rows and table_id in selected:
            wanted = args.rows.split(",")
            unknown = sorted(set(wanted) - {r.key for r in table.rows})
            if unknown:
                raise KmexpError(f"{table_id} has no rows {unknown}; rows: {[r.key for r in table.rows]}")
            table = dataclasses.replace(table, rows=tuple(r for r in table.rows if r.key in wanted))
        tables[table_id] = table if table.fixed_seeds else dataclasses.replace(table, seeds=tuple(seeds))
    cells: dict[str, list[Cell]] = {}
    for tid, t in tables.items():
        tables[tid] = t = resolve_references(tid, t, cells)
        cells[tid] = plan(tid, t, list(t.seeds), profile_overrides(t, args.profile), extra)
    if status_only:
        return print_status(cells, log_root)
    if args.runs_per_gpu < 1:
        raise KmexpError(f"--runs-per-gpu={args.runs_per_gpu} must be >= 1")
    jobs = default_jobs(args.profile) if args.jobs is None else args.jobs
    if jobs < 1:
        raise KmexpError(f"--jobs={jobs} must be >= 1")
    checked = []
    if not args.collect_only:
        checked = validate_runs(cells, log_root, args.launcher, extra)
        if args.launcher in CLUSTERS and not args.dry_run:
            return submit_runs(checked, cells, log_root, args)
    packed = args.runs_per_gpu > 1 and args.launcher == "local" and not args.collect_only

    launched: set[str] = set()
    commands = {tid: sweep_commands(new_runs(t, cells[tid], launched), args.launcher, log_root,
                                    [*profile_overrides(t, args.profile), *extra])
                for tid, t in tables.items()}
    if args.dry_run:
        print_plan(tables, cells, {} if args.runs_per_gpu > 1 else commands)
        if args.runs_per_gpu > 1:
            print_packs(checked, args.runs_per_gpu, args.launcher)
        return 0

    from kmexp.reporting.jobs import format_status, table_status
    from kmexp.reporting.profiles import provenance
    from kmexp.reporting.results import cell_summaries, write_table

    status = 0
    if packed:
        status = train_packed(checked, log_root, args.runs_per_gpu)
    parallel = jobs > 1 and args.launcher == "local" and not packed and not args.collect_only
    needs = launching_requirements(tables, cells)
    if parallel:
        from kmexp.reporting.parallel_sweeps import run_sweeps

        codes = run_sweeps(commands, needs, jobs, log_root, repo_root())
        for table_id, code in codes.items():
            if code != 0:
                print(f"[kmexp] {table_id}: some runs failed; the table lists them", file=sys.stderr)
                status = 1
    failed: set[str] = set()
    for table_id, table in tables.items():
        if not args.collect_only and not packed and not parallel and commands[table_id]:
            failed_requirements = sorted(failed & set(needs[table_id]))
            if failed_requirements:
                print(f"[kmexp] {table_id}: not launched: a table it starts from failed "
                      f"({', '.join(failed_requirements)})", file=sys.stderr)
                failed.add(table_id)
                status = 1
            else:
                print(f"[kmexp] {table_id}: launching {len(commands[table_id])} sweep(s)", flush=True)
                for cmd in commands[table_id]:
                    proc = subprocess.run(cmd, cwd=repo_root())  # installed: the working directory
                    if proc.returncode != 0:
                        print(f"[kmexp] {table_id}: some runs failed (exit {proc.returncode}); the table lists "
                              "them", file=sys.stderr)
                        failed.add(table_id)
                        status = 1
        header = provenance(table_id, table, args.profile, list(table.seeds),
                            cell_summaries(cells[table_id], log_root / "runs"))
        md = write_table(table_id, cells[table_id], log_root / "runs", out, header, table=table)
        print(f"[kmexp] {table_id}: wrote {md}")
        if args.collect_only:
            print(format_status(table_id, table_status(cells[table_id], log_root)))
        if args.profile or table.plot:
            from kmexp.reporting.plots import plot_table

            png = plot_table(table_id, md.with_suffix(".csv"), profile=args.profile)
            if png:
                print(f"[kmexp] {table_id}: wrote {png}")
        if table.weight_histograms and {"km", "full"} <= {r.key for r in table.rows}:
            status = max(status, draw_weight_histograms(table_id, table, seeds[0], log_root / "runs", out,
                                                        [*profile_overrides(table, args.profile), *extra], args.profile))
    return status


def launching_requirements(tables: dict[str, Table], cells: dict[str, list[Cell]]) -> dict[str, tuple[str, ...]]:
    """For each table, the tables whose sweeps train the runs it starts from.

    A run is launched by the first table (in order) that has it (:func:`new_runs`), which need not be
    the table named in ``Table.requires``: wait for the one that actually trains it."""
    owner: dict[str, str] = {}
    for table_id in tables:
        for c in cells[table_id]:
            owner.setdefault(c.run_id, table_id)
    return {t: tuple(sorted({owner[c.run_id] for r in tables[t].requires for c in cells.get(r, ())} - {t}))
            for t in tables}


def default_jobs(profile: str | None) -> int:
    """Sweeps at once when ``--jobs`` is not given: one per core for the CPU-bound digits profile."""
    if profile == "digits":
        from kmexp.reporting.parallel_sweeps import usable_cores

        return usable_cores()
    return 1


def train_packed(checked: list, log_root: Path, k: int) -> int:
    """Every run that has not finished, ``k`` at a time per GPU, here (:mod:`kmexp.reporting.packing`)."""
    from kmexp.reporting.packing import run_locally
    from kmexp.runs.resume import finished_summary

    todo = [r for r in checked if finished_summary(log_root / "runs" / r.run_id) is None]
    if len(todo) < len(checked):
        print(f"[kmexp] skipping {len(checked) - len(todo)} finished runs")
    if not todo:
        return 0
    print(f"[kmexp] training {len(todo)} runs, {k} at a time per GPU", flush=True)
    codes = run_locally(todo, k, log_root)
    failed = sum(c != 0 for c in codes.values())
    if failed:
        print(f"[kmexp] {failed} of {len(todo)} runs failed; the tables list them", file=sys.stderr)
    return int(failed > 0)


def print_packs(checked: list, k: int, launcher: str) -> None:
    """``--dry-run --runs-per-gpu k``: which runs share a GPU and, on a cluster, each job's resources."""
    from kmexp.reporting.packing import pack_by_launcher, packed_launcher_params, train_command

    for i, pack in enumerate(pack_by_launcher(checked, k)):
        print(f"pack {i} (one GPU): " + ", ".join(f"{r.table}/{r.key} [{r.run_id}]" for r in pack))
        if launcher in CLUSTERS:
            params = packed_launcher_params(pack[0].launcher, k, f"{pack[0].table} {pack[0].key}")
            print("  job: " + " ".join(f"{key}={params[key]}" for key in sorted(params)))
        for r in pack:
            print("  command: " + shlex.join(train_command(list(r.overrides))))


def draw_weight_histograms(table_id: str, table: Table, seed: int, runs: Path, out: Path, overrides: list[str],
                           profile: str | None) -> int:
    """KM Fig. 3 from the table's km and full runs of ``seed``: ``<out>/<table_id>_fig3_weights.png`` (+ .json)."""
    import json

    from kmexp.reporting.profiles import caption
    from kmexp.reporting.weight_histograms import collect, find_run, plot, statistics

    try:
        km_run = find_run(runs, table_id, "km", seed, overrides)
        full_run = find_run(runs, table_id, "full", seed, overrides)
        series = collect(km_run, full_run, ["*"])
    except KmexpError as e:
        print(f"[kmexp] {table_id}: no Fig. 3 weight histograms: {e}", file=sys.stderr)
        return 1
    png = out / f"{table_id}_fig3_weights.png"
    where = caption(table, profile) or table.title
    plot(series, png, title=f"Kernel Modulation Fig. 3: every conv weight of the seed-{seed} KM and full runs\n{where}")
    png.with_suffix(".json").write_text(json.dumps(statistics(series), indent=2) + "\n")
    print(f"[kmexp] {table_id}: wrote {png}")
    return 0


def validate_runs(cells: dict[str, list[Cell]], log_root: Path, launcher: str, extra: list[str]) -> list:
    """Compose and validate every unique run before anything starts (raises ConfigError)."""
    from kmexp.reporting.jobs import preflight, unique_runs

    launcher_extra = [e for e in extra if override_key(e).startswith(("hydra.", "hydra/"))]
    checked = preflight(unique_runs(cells, log_root), launcher, launcher_extra)
    print(f"[kmexp] {len(checked)} runs composed and validated", flush=True)
    return checked


def submit_runs(checked: list, cells: dict[str, list[Cell]], log_root: Path, args) -> int:
    """Queue every run that has not finished and is not queued or running; never wait."""
    from kmexp.reporting.jobs import job_records, submit, table_status

    jobs = job_records(log_root)
    busy = {c.run_id for cs in cells.values()
            for c, st in zip(cs, table_status(cs, log_root, jobs, by_cell=False), strict=True)
            if st.state in ("finished", "running")}
    todo = [r for r in checked if r.run_id not in busy]
    if busy:
        print(f"[kmexp] skipping {len(busy)} runs that finished or are queued/running")
    if todo:
        records = submit(todo, args.launcher, log_root, args.runs_per_gpu)
        n_jobs = len({r["job_id"] for r in records})
        what = (f"{len(records)} runs in {n_jobs} jobs ({args.runs_per_gpu} runs per GPU)" if args.runs_per_gpu > 1
                else f"{n_jobs} jobs")
        print(f"[kmexp] submitted {what} ({records[0]['job_id']} ...); job ids in {log_root / 'jobs.jsonl'}")
    where = f" --logs {log_root}" if args.logs else ""
    print(f"[kmexp] nothing waits for them. Progress: python -m kmexp.reproduce status {args.table}{where}; "
          f"tables: python -m kmexp.reproduce {args.table} --collect-only{where}")
    return 0


def print_status(cells: dict[str, list[Cell]], log_root: Path) -> int:
    """``python -m kmexp.reproduce status [TABLE]``: per table, finished / running / failed / missing."""
    from kmexp.reporting.jobs import format_status, job_records, table_status

    jobs = job_records(log_root)
    for table_id, table_cells in cells.items():
        print(format_status(table_id, table_status(table_cells, log_root, jobs)))
    return 0


def print_plan(tables: dict[str, Table], cells: dict[str, list[Cell]], commands: dict[str, list[list[str]]]) -> None:
    """Each table's cells, then every unique run once with the cells it feeds, then the commands."""
    feeds: dict[str, list[Cell]] = defaultdict(list)
    for tid, table in tables.items():
        print(f"{tid}: {len(table.rows)} rows x {len(table.seeds)} seeds = {len(cells[tid])} cells")
        for c in cells[tid]:
            feeds[c.run_id].append(c)
    n_cells = sum(len(c) for c in cells.values())
    print(f"\n{len(feeds)} unique runs feed {n_cells} table cells:")
    for run_id, fed in feeds.items():
        first = fed[0]
        print(f"run {run_id}: {' '.join(first.overrides)} seed={first.seed}")
        print("  feeds: " + ", ".join(f"{c.table}/{c.row}" for c in fed))
    for tid, cmds in commands.items():
        for cmd in cmds:
            print(f"command ({tid}): " + shlex.join(cmd))


def entry(argv: list[str] | None = None) -> int:
    try:
        return main(argv)
    except KmexpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(entry())
