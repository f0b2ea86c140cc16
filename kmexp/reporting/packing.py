"""Several runs of a sweep on one GPU at once: k training processes per device.

A CIFAR ResNet-32 at batch 128 uses a small fraction of an H100 (issue 17: Table I's 30 runs
in under 2 H100-hours needs several runs per GPU). ``python -m kmexp.reproduce TABLE
--runs-per-gpu k`` packs the sweep's runs k to a device:

- locally (``--launcher local``): k ``python -m kmexp.train`` processes per visible GPU run at
  once (``CUDA_VISIBLE_DEVICES`` pins each to its GPU; on a machine without GPUs, k processes
  in all), each with its own run directory, console log ``<logs>/console/<run id>.log`` and
  ``OMP_NUM_THREADS`` = CPUs / processes (unless set);
- on SLURM (``--launcher slurm`` or ``submitit_local``): one job per k runs, holding ONE task and
  one GPU (``tasks_per_node=1``, ``gpus_per_node=1``) with k times the per-run CPUs and memory;
  the job's task starts the k training processes side by side (:class:`PackedTrainJob`).

Every run is the same ``python -m kmexp.train <overrides> hydra.run.dir=<logs>/runs/<identity>``
command as when it runs alone, so its run directory, ``summary.json``, checkpoints and W&B run
are exactly those of a run alone (same seed, same numbers: tests/test_packed_runs.py), and
``kmexp.reproduce status`` reads them as before.

Why processes and one SLURM task, not k SLURM tasks: with ``tasks_per_node=k`` Lightning's SLURM
environment reads the k tasks as k DDP ranks of ONE run, and submitit hands its time-limit /
preemption hook to task 0 only, so the other runs would never save ``last.ckpt`` before a
requeue. Here the one task's hook signals all k processes (each saves, :mod:`kmexp.runs.preemption`),
then requeues the pack; a requeued pack skips what finished (``kmexp.train`` exits at once on a
finished run directory). Why not one process training k seeds as a batched ensemble
(``torch.func.stack_module_state`` + ``vmap``): each run would lose its own Lightning loop,
checkpoints, early-stopping, logger and W&B run, which is what "exactly as if alone" asks for.
With CUDA MPS (``nvidia-cuda-mps-control -d``) the k processes' kernels run concurrently on the
GPU; without it they time-slice, which still fills the gaps a single small run leaves (data
loading, kernel launches, evaluation, checkpointing). ``scripts/bench_gpu.py`` measures
runs/hour for 1 vs k processes per device.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kmexp.errors import ConfigError
from kmexp.reporting.parallel_sweeps import usable_cores
from kmexp.resources import repo_root

SCALED_PER_RUN = ("cpus_per_task", "mem_gb")  # what one task needs k times over for k runs


def packs(runs: list, k: int) -> list[list]:
    """``runs`` in consecutive groups of ``k`` (the last may be smaller)."""
    if k < 1:
        raise ConfigError(f"--runs-per-gpu={k} must be >= 1")
    return [runs[i:i + k] for i in range(0, len(runs), k)]


def pack_by_launcher(runs: list, k: int) -> list[list]:
    """:func:`packs` of the runs that share their launcher settings (one job array each on SLURM)."""
    import json

    groups: dict[str, list] = {}
    for run in runs:
        groups.setdefault(json.dumps(run.launcher, sort_keys=True, default=str), []).append(run)
    return [pack for group in groups.values() for pack in packs(group, k)]


def packed_launcher_params(params: dict, k: int, what: str) -> dict:
    """A single-device run's submitit parameters turned into those of a job running ``k`` such runs:
    one task, one GPU (none for CPU runs), ``k`` x the per-run CPUs and memory."""
    devices = params.get("tasks_per_node", 1) * params.get("nodes", 1)
    if devices != 1 or params.get("gpus_per_node", 0) > 1:
        raise ConfigError(f"{what}: a run on {devices} devices (DDP) cannot share a GPU with others; "
                          "use --runs-per-gpu 1 for it")
    packed = dict(params, tasks_per_node=1, nodes=1)
    for key in SCALED_PER_RUN:
        if key in packed:
            packed[key] = packed[key] * k
    return packed


def train_command(overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "kmexp.train", *overrides]


def run_dir_of(overrides: list[str]) -> Path | None:
    for o in overrides:
        if o.startswith("hydra.run.dir="):
            return Path(o.split("=", 1)[1])
    return None


def _child_env(slot_gpu: int | None, threads: int, launcher: str | None) -> dict:
    env = dict(os.environ)
    if slot_gpu is not None:
        visible = env.get("CUDA_VISIBLE_DEVICES")
        ids = visible.split(",") if visible else None
        env["CUDA_VISIBLE_DEVICES"] = ids[slot_gpu] if ids else str(slot_gpu)
    env.setdefault("OMP_NUM_THREADS", str(threads))
    if launcher:
        env["KMEXP_LAUNCHER"] = launcher
    return env


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def run_locally(runs: list, k: int, log_root: Path, gpus: int | None = None, poll_s: float = 0.5) -> dict[str, int]:
    """Train ``runs`` (:class:`kmexp.reporting.jobs.Run`) here, ``k`` processes per GPU at a time
    (``k`` in all without GPUs); returns each run identity's exit code. Waits for all of them."""
    if k < 1:
        raise ConfigError(f"--runs-per-gpu={k} must be >= 1")
    gpus = visible_gpus() if gpus is None else gpus
    slots = k * max(gpus, 1)
    threads = max(1, usable_cores() // min(slots, max(len(runs), 1)))
    console = log_root / "console"
    console.mkdir(parents=True, exist_ok=True)
    queue = list(runs)
    active: dict[int, tuple] = {}  # slot -> (run, process, log file)
    codes: dict[str, int] = {}
    while queue or active:
        for slot in range(slots):
            if slot not in active and queue:
                run = queue.pop(0)
                log = (console / f"{run.run_id}.log").open("a")
                env = _child_env(slot // k if gpus else None, threads, "kmexp.reproduce/local")
                proc = subprocess.Popen(train_command(list(run.overrides)), cwd=repo_root(), env=env, stdout=log,
                                        stderr=subprocess.STDOUT)
                gpu = f" on GPU {slot // k}" if gpus else ""
                print(f"[kmexp] started {run.table} {run.key}{gpu} (run {run.run_id}, log {log.name})", flush=True)
                active[slot] = (run, proc, log)
        for slot, (run, proc, log) in list(active.items()):
            if proc.poll() is not None:
                log.close()
                codes[run.run_id] = proc.returncode
                state = "finished" if proc.returncode == 0 else f"FAILED (exit {proc.returncode}, see {log.name})"
                print(f"[kmexp] {run.table} {run.key}: {state}", flush=True)
                del active[slot]
        if active:
            time.sleep(poll_s)
    return codes


class PackedTrainJob:
    """What a packed SLURM job runs: the ``kmexp.train`` commands of up to k runs side by side in
    its one task, on its one GPU. Raises (the job fails) if any of them failed, naming each."""

    def __init__(self, runs: list[list[str]], launcher: str):
        self.runs = [list(r) for r in runs]
        self.launcher = launcher

    def __call__(self) -> str:
        threads = max(1, usable_cores() // len(self.runs))
        env = _child_env(None, threads, self.launcher)
        self._procs = [subprocess.Popen(train_command(r), cwd=repo_root(), env=env, stderr=subprocess.PIPE,
                                        text=True) for r in self.runs]
        import threading

        last = [""] * len(self._procs)

        def forward(i: int, proc: subprocess.Popen) -> None:  # the job's log gets every run's stderr
            for line in proc.stderr:
                sys.stderr.write(line)
                if line.strip():
                    last[i] = line.strip()

        readers = [threading.Thread(target=forward, args=(i, p), daemon=True) for i, p in enumerate(self._procs)]
        for t in readers:
            t.start()
        failed = []
        for i, proc in enumerate(self._procs):
            if proc.wait() != 0:
                readers[i].join(timeout=5)
                failed.append(f"{run_dir_of(self.runs[i])}: kmexp.train exited {proc.returncode}: {last[i]}")
        if failed:
            raise RuntimeError("; ".join(failed))
        return "finished"

    def checkpoint(self, *args, **kwargs):
        """submitit's time-limit / preemption hook: every training process saves ``last.ckpt``
        (SIGTERM), then the whole pack is requeued (finished runs exit at once)."""
        import submitit

        procs = [p for p in getattr(self, "_procs", []) if p.poll() is None]
        for p in procs:
            p.send_signal(signal.SIGTERM)
        deadline = time.time() + 90
        for p in procs:
            try:
                p.wait(timeout=max(1.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
        return submitit.helpers.DelayedSubmission(PackedTrainJob(self.runs, self.launcher))

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_procs"}
