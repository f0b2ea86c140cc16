"""Several local sweeps at once: ``python -m kmexp.reproduce ... --jobs N``.

The local launcher trains a table's rows as Hydra multiruns (one process per sweep, its jobs one
after another, so imports and data loading are paid once per sweep). On a CPU machine a small
network does not keep every core busy from one process: N sweep processes side by side, each
with ``cores // N`` threads, finish sooner (the digits profile's default is one sweep per core).

Ordering: a table's sweeps start only after every sweep of the tables it requires (recursively,
``Table.requires``: e.g. a pretraining run whose checkpoint the transfer runs load) has ended,
and are not launched at all when one of those failed; everything else starts as soon as a slot
is free, in the tables' order. A run is in exactly one
sweep (``kmexp.reporting.reproduce.new_runs``), so two processes never share a run directory.
Each sweep's output goes to ``<logs>/sweeps/<table>-<i>.log``; a failed sweep's last lines are
printed when it ends.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
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


def usable_cores(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """Cores this process may use: its CPU affinity, capped by a container's CPU quota (cgroup v2
    ``cpu.max`` or v1 ``cpu.cfs_quota_us``), which a pod or a SLURM job with a quota sets while
    the affinity still lists every core of the node."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota(cgroup)
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def _cgroup_cpu_quota(cgroup: Path) -> float | None:
    """The CPU quota in cores, or None where none is set or it cannot be read."""
    try:
        if (cgroup / "cpu.max").exists():
            quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        else:
            quota = (cgroup / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (cgroup / "cpu" / "cpu.cfs_period_us").read_text().strip()
        if quota in ("max", "-1") or float(period) <= 0:
            return None
        return float(quota) / float(period)
    except (OSError, ValueError):
        return None


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
    """Run every table's sweep commands, up to ``jobs`` at once; return each table's exit code
    (0, or the first non-zero exit code of its sweeps; negative: killed by that signal)."""
    pool = _SweepPool(commands, requires, jobs, log_root, cwd)
    if not pool.total:
        return pool.codes
    previous = _sigterm_raises() if threading.current_thread() is threading.main_thread() else None
    try:
        pool.run(poll_s)
    except BaseException:  # Ctrl-C, or this process is told to stop: the sweeps checkpoint and stop too
        pool.stop()
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return pool.codes


def _sigterm_raises():
    """SIGTERM (a scheduler stopping this launcher) raises SystemExit, so the running sweeps are stopped too."""

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, stop)


class _SweepPool:
    def __init__(self, commands: dict[str, list[list[str]]], requires: dict[str, tuple[str, ...]], jobs: int,
                 log_root: Path, cwd: Path):
        self.commands, self.jobs, self.cwd = commands, jobs, cwd
        self.waiting = deque(Sweep(t, i, cmd, log_root / "sweeps" / f"{t}-{i}.log")
                             for t, cmds in commands.items() for i, cmd in enumerate(cmds))
        self.total = len(self.waiting)
        self.running: list[Sweep] = []
        self.pending_of = {t: len(cmds) for t, cmds in commands.items()}
        self.needs = {t: _all_required(t, requires) & set(commands) for t in commands}
        self.codes = {t: 0 for t in commands}
        self.env = dict(os.environ)
        self.env.setdefault("OMP_NUM_THREADS", str(threads_per_sweep(jobs)))
        self.log_dir = log_root / "sweeps"

    def run(self, poll_s: float) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        started_at = time.time()
        print(f"[kmexp] {self.total} sweeps, up to {self.jobs} at once ({self.env['OMP_NUM_THREADS']} thread(s) "
              f"each); their output: {self.log_dir}", flush=True)
        while self.waiting or self.running:
            self._reap(started_at)
            self._start_ready()
            if self.running:
                time.sleep(poll_s)

    def _reap(self, started_at: float) -> None:
        for sweep in [s for s in self.running if s.proc.poll() is not None]:
            self.running.remove(sweep)
            code = sweep.proc.returncode
            self.pending_of[sweep.table] -= 1
            self.codes[sweep.table] = self.codes[sweep.table] or code
            done = self.total - len(self.waiting) - len(self.running)
            outcome = "finished" if code == 0 else f"FAILED (exit {code})"
            print(f"[kmexp] {sweep.table}: sweep {sweep.index + 1} of {len(self.commands[sweep.table])} {outcome} "
                  f"[{done}/{self.total}, {time.time() - started_at:.0f} s]", flush=True)
            if code != 0:
                print(_tail(sweep.log), file=sys.stderr, flush=True)

    def _start_ready(self) -> None:
        for sweep in list(self.waiting):
            if len(self.running) >= self.jobs:
                return
            if any(self.pending_of[t] for t in self.needs[sweep.table]):
                continue  # a required table is still training
            failed = sorted(t for t in self.needs[sweep.table] if self.codes[t])
            if failed:  # never fine-tune from a pretraining run that did not finish
                self.waiting.remove(sweep)
                self.pending_of[sweep.table] -= 1
                self.codes[sweep.table] = self.codes[sweep.table] or 1
                print(f"[kmexp] {sweep.table}: sweep {sweep.index + 1} not launched: a table it starts from "
                      f"failed ({', '.join(failed)})", file=sys.stderr, flush=True)
                continue
            self.waiting.remove(sweep)
            with open(sweep.log, "w") as out:  # the child keeps its own handle
                sweep.proc = subprocess.Popen(sweep.command, cwd=self.cwd, env=self.env, stdout=out,
                                              stderr=subprocess.STDOUT)
            self.running.append(sweep)

    def stop(self, grace_s: float = 120.0) -> None:
        """SIGTERM every running sweep (kmexp.train saves ``last.ckpt`` and exits), then wait for them.
        A second Ctrl-C while waiting kills them at once (checkpoint saves are atomic, see
        :mod:`kmexp.runs.atomic_io`), so no sweep is left training behind the launcher."""
        for sweep in self.running:
            if sweep.proc.poll() is None:
                sweep.proc.terminate()
        deadline = time.time() + grace_s
        try:
            for sweep in self.running:
                try:
                    sweep.proc.wait(timeout=max(0.0, deadline - time.time()))
                except subprocess.TimeoutExpired:
                    sweep.proc.kill()
        except KeyboardInterrupt:
            print("[kmexp] interrupted again: killing the running sweeps", file=sys.stderr, flush=True)
            self._kill_all()
            raise
        self._kill_all()

    def _kill_all(self) -> None:
        for sweep in self.running:
            if sweep.proc.poll() is None:
                sweep.proc.kill()
            sweep.proc.wait()
