"""Several local sweeps at once: ``python -m kmexp.reproduce ... --jobs N``.

The local launcher trains a table's rows as Hydra multiruns (one process per sweep, its jobs one
after another, so imports and data loading are paid once per sweep). On a CPU machine a small
network does not keep every core busy from one process: N sweep processes side by side, each
with ``cores // N`` threads, finish sooner (the digits profile's default is one sweep per core).

Ordering: a table's sweeps start only after every sweep of the tables it requires (recursively,
``Table.requires``: e.g. a pretraining run whose checkpoint the transfer runs load) has ended;
everything else starts as soon as a slot is free, in the tables' order. A run is in exactly one
sweep (``kmexp.reporting.reproduce.new_runs``), so two processes never share a run directory.
Each sweep's output goes to ``<logs>/sweeps/<table>-<i>.log``; a failed sweep's last lines are
printed when it ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Sweep:
    table: str
    index: int
    command: list[str]
    log: Path
    proc: subprocess.Popen | None = None
    returncode: int | None = None


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_sweep(jobs: int) -> int:
    return max(1, usable_cores() // max(1, jobs))


def _all_required(table: str, requires: dict[str, tuple[str, ...]]) -> set[str]:
    seen: set[str] = set()
    todo = list(requires.get(table, ()))
    while todo:
        t = todo.pop()
        if t not in seen:
            seen.add(t)
            todo.extend(requires.get(t, ()))
    return seen


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_sweeps(commands: dict[str, list[list[str]]], requires: dict[str, tuple[str, ...]], jobs: int,
               log_root: Path, cwd: Path, poll_s: float = 0.2) -> dict[str, int]:
    """Run every table's sweep commands, up to ``jobs`` at once; return each table's worst exit code."""
    sweeps = deque(Sweep(t, i, cmd, log_root / "sweeps" / f"{t}-{i}.log")
                   for t, cmds in commands.items() for i, cmd in enumerate(cmds))
    if not sweeps:
        return {}
    (log_root / "sweeps").mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(threads_per_sweep(jobs)))
    pending_of = {t: len(cmds) for t, cmds in commands.items()}
    needs = {t: _all_required(t, requires) & set(commands) for t in commands}
    running: list[Sweep] = []
    codes: dict[str, int] = {t: 0 for t in commands}
    total, started_at = len(sweeps), time.time()
    print(f"[kmexp] {total} sweeps, up to {jobs} at once ({env['OMP_NUM_THREADS']} thread(s) each); "
          f"their output: {log_root / 'sweeps'}", flush=True)
    while sweeps or running:
        for sweep in list(running):
            if sweep.proc.poll() is None:
                continue
            running.remove(sweep)
            sweep.returncode = sweep.proc.returncode
            pending_of[sweep.table] -= 1
            codes[sweep.table] = max(codes[sweep.table], sweep.returncode)
            done = total - len(sweeps) - len(running)
            print(f"[kmexp] {sweep.table}: sweep {sweep.index + 1} of {len(commands[sweep.table])} "
                  f"{'finished' if sweep.returncode == 0 else f'FAILED (exit {sweep.returncode})'} "
                  f"[{done}/{total}, {time.time() - started_at:.0f} s]", flush=True)
            if sweep.returncode != 0:
                print(_tail(sweep.log), file=sys.stderr, flush=True)
        for sweep in list(sweeps):
            if len(running) >= jobs:
                break
            if any(pending_of[t] for t in needs[sweep.table]):
                continue  # a required table is still training
            sweeps.remove(sweep)
            with open(sweep.log, "w") as out:
                sweep.proc = subprocess.Popen(sweep.command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
            running.append(sweep)
        if running:
            time.sleep(poll_s)
    return codes
