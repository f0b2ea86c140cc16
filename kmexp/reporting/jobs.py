"""Submit a table's runs to SLURM (or submitit's local executor) and walk away; ask later.

``python -m kmexp.reproduce TABLE --launcher slurm`` composes and validates every run of the
selected tables first (:func:`preflight`: a typo refuses everything before one job is
queued), then submits each unique run (:mod:`kmexp.reporting.runs`: one per run identity) as
its own submitit job — one SLURM job array per launcher setting — and returns at once. The
job ids go to ``<logs>/jobs.jsonl``. Each job runs ``python -m kmexp.train <the run's
overrides> resume=true hydra.run.dir=<logs>/runs/<identity>`` with one task per device
(``tasks_per_node`` follows ``trainer.devices``), so Lightning's SLURM environment makes the
tasks DDP ranks; a job requeued after a time limit or preemption reruns the same command
and continues from its run directory's ``last.ckpt``.

``python -m kmexp.reproduce status [TABLE]`` (:func:`table_status`) then reports per table
which runs finished, are queued or running, failed (with the error's last line), or are
missing, from the runs' ``summary.json`` files and the scheduler.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from kmexp.errors import ConfigError, KmexpError
from kmexp.resources import config_dir, repo_root

JOBS_FILE = "jobs.jsonl"
CLUSTERS = {"slurm": "slurm", "submitit_local": "local"}
# Hydra-submitit launcher keys that submitit's AutoExecutor takes as they are (others get the
# cluster prefix, e.g. partition -> slurm_partition; local jobs ignore them)
GENERIC_KEYS = {"timeout_min", "cpus_per_task", "gpus_per_node", "tasks_per_node", "mem_gb", "nodes", "name",
                "stderr_to_stdout"}
ACTIVE_SLURM_STATES = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED",
                       "REQUEUE_HOLD", "REQUEUE_FED"}


@dataclass(frozen=True)
class Run:
    """One unique run (a run identity), named by the first table cell it feeds, with the
    complete ``kmexp.train`` command line."""

    table: str
    row: str
    seed: int
    overrides: tuple[str, ...]
    run_id: str = ""
    launcher: dict = field(default_factory=dict, compare=False)

    @property
    def key(self) -> str:
        return f"{self.row} seed={self.seed}"


def unique_runs(cells: dict[str, list], log_root: Path) -> list[Run]:
    """One :class:`Run` per run identity of the cells (``{table: [Cell]}``), in table order."""
    runs, seen = [], set()
    for cell in (c for cs in cells.values() for c in cs):
        if cell.run_id in seen:
            continue
        seen.add(cell.run_id)
        runs.append(Run(cell.table, cell.row, cell.seed, (
            *cell.overrides, f"seed={cell.seed}", "resume=true", f"paths.log_dir={log_root}",
            f"hydra.run.dir={log_root / 'runs' / cell.run_id}"), cell.run_id))
    return runs


# --------------------------------------------------------------------------- validate
def preflight(runs: list[Run], launcher: str | None, launcher_overrides: list[str]) -> list[Run]:
    """Compose and validate every run (types, ranges, combinations; not the hardware, which a
    login node lacks). Returns the runs with their resolved launcher parameters; raises
    ConfigError naming the first bad run.

    Runs that differ only in their seed share one composition (composing is ~0.1 s, and
    ``reproduce all`` has over a thousand runs); each seed's value is checked by the schema.
    """
    from hydra import compose, initialize_config_dir

    from kmexp.config import register_resolvers
    from kmexp.distributed import world_size_of
    from kmexp.schema import SCHEMA
    from kmexp.validate import validate_config

    register_resolvers()
    extra = [f"hydra/launcher={launcher}", *launcher_overrides] if launcher in CLUSTERS else []
    composed: dict[tuple, dict] = {}
    checked = []
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        for run in runs:
            if not SCHEMA["seed"].accepts(run.seed):
                raise ConfigError(f"{run.table} {run.key}: seed={run.seed} is not allowed: {SCHEMA['seed'].allowed}")
            unseeded = tuple(o for o in run.overrides if not o.startswith(("seed=", "hydra.run.dir=")))
            if unseeded not in composed:
                try:
                    cfg = compose(config_name="train", overrides=[*unseeded, f"seed={run.seed}", *extra],
                                  return_hydra_config=bool(extra))
                    validate_config(cfg, hardware=False)
                except KmexpError as e:
                    raise ConfigError(f"{run.table} {run.key}: {e}") from None
                except Exception as e:  # noqa: BLE001 - Hydra's composition errors: one line, no traceback
                    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    raise ConfigError(f"{run.table} {run.key}: {first}") from None
                if launcher not in CLUSTERS and (world_size_of(cfg.trainer) or 1) > 1:
                    raise ConfigError(f"{run.table} {run.key}: DDP runs (trainer.devices x num_nodes > 1) cannot run "
                                      "in the local sweep; use --launcher slurm or submitit_local")
                composed[unseeded] = launcher_params(cfg, CLUSTERS[launcher]) if extra else {}
            checked.append(Run(run.table, run.row, run.seed, run.overrides, run.run_id, composed[unseeded]))
    return checked


def launcher_params(cfg, cluster: str) -> dict:
    """The composed ``hydra.launcher`` section as submitit AutoExecutor parameters."""
    from omegaconf import OmegaConf

    section = cfg.hydra.launcher
    params = {}
    for key in section:
        if key in ("_target_", "submitit_folder"):
            continue
        try:
            value = OmegaConf.select(section, key)
            value = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        except Exception:  # noqa: BLE001 - e.g. name: ${hydra.job.name}, unset outside a job
            continue
        if value is None:
            continue
        if key == "max_num_timeout":
            params["_max_num_timeout"] = value
        elif key in GENERIC_KEYS:
            params[key] = value
        elif cluster == "slurm":
            params[f"slurm_{key}"] = value
    return params


# --------------------------------------------------------------------------- submit
class TrainJob:
    """What a queued job runs: ``python -m kmexp.train`` with the run's overrides, in this
    checkout. Requeued as is on a time limit or preemption (``resume=true`` continues)."""

    def __init__(self, overrides: list[str], launcher: str):
        self.overrides = list(overrides)
        self.launcher = launcher

    def __call__(self) -> str:
        env = dict(os.environ, KMEXP_LAUNCHER=self.launcher)
        proc = self._proc = subprocess.Popen([sys.executable, "-m", "kmexp.train", *self.overrides], cwd=repo_root(),
                                             env=env, stderr=subprocess.PIPE, text=True)
        last = ""
        for line in proc.stderr:  # keep the job's log complete, remember the last line
            sys.stderr.write(line)
            if line.strip():
                last = line.strip()
        if proc.wait() != 0:
            raise RuntimeError(f"kmexp.train exited {proc.returncode}: {last}")
        return "finished"

    def checkpoint(self, *args, **kwargs):
        """submitit's time-limit / preemption hook: let the training process save ``last.ckpt``
        (SIGTERM: :mod:`kmexp.runs.preemption`), then requeue the same command."""
        import signal

        import submitit

        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                pass
        return submitit.helpers.DelayedSubmission(TrainJob(self.overrides, self.launcher))

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_proc"}


def submit(runs: list[Run], launcher: str, log_root: Path, runs_per_gpu: int = 1) -> list[dict]:
    """Queue every run (one submitit batch = one SLURM array per launcher setting), record the
    job ids in ``log_root/jobs.jsonl`` and return the records. Never waits for a job.

    ``runs_per_gpu`` > 1: one job per that many runs on one GPU (:mod:`kmexp.reporting.packing`);
    each run's record carries its pack's job id."""
    import submitit

    from kmexp.provenance import git_state
    from kmexp.reporting.packing import PackedTrainJob, packed_launcher_params, packs

    cluster = CLUSTERS[launcher]
    folder = log_root / ".submitit"
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(json.dumps(run.launcher, sort_keys=True, default=str), []).append(run)
    records = []
    log_root.mkdir(parents=True, exist_ok=True)
    for group in groups.values():
        params = dict(group[0].launcher)
        if runs_per_gpu > 1:
            params = packed_launcher_params(params, runs_per_gpu, f"{group[0].table} {group[0].key}")
        init = {f"{cluster}_max_num_timeout": params.pop("_max_num_timeout")} if "_max_num_timeout" in params else {}
        if cluster != "slurm":
            init = {}
        params.setdefault("name", f"kmexp-{group[0].table}")
        executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=cluster, **init)
        executor.update_parameters(**params)
        name = f"kmexp.reproduce/{launcher}"
        with executor.batch():
            if runs_per_gpu > 1:
                grouped = packs(group, runs_per_gpu)
                pack_jobs = [executor.submit(PackedTrainJob([list(r.overrides) for r in pack], name))
                             for pack in grouped]
                jobs = [job for pack, job in zip(grouped, pack_jobs, strict=True) for _ in pack]
            else:
                jobs = [executor.submit(TrainJob(list(run.overrides), name)) for run in group]
        commit, dirty = git_state()
        for run, job in zip(group, jobs, strict=True):
            records.append({"run_id": run.run_id, "table": run.table, "row": run.row, "seed": run.seed,
                            "job_id": str(job.job_id),
                            "launcher": launcher, "folder": str(folder / str(job.job_id)),
                            "overrides": list(run.overrides), "submitted": time.time(),
                            "git_commit": commit, "git_dirty": dirty})
    with (log_root / JOBS_FILE).open("a") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return records


# --------------------------------------------------------------------------- status
def job_records(log_root: Path) -> dict[str, dict]:
    """The latest submission of every run identity recorded under ``log_root``."""
    path = log_root / JOBS_FILE
    latest = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                latest[r["run_id"]] = r
    return latest


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _pid_alive(pid: str) -> bool:
    try:
        state = Path(f"/proc/{int(pid)}/stat").read_text().split(")")[-1].split()[0]
    except (OSError, ValueError, IndexError):
        return False
    return state not in ("Z", "X")


def job_state(record: dict) -> tuple[str, str]:
    """("active" | "done" | "failed", detail) of a recorded job."""
    import submitit
    from submitit.core.utils import pickle_load

    folder, job_id = Path(record["folder"]), record["job_id"]
    cls = submitit.SlurmJob if record["launcher"] == "slurm" else submitit.LocalJob
    job = cls(folder=folder, job_id=job_id)
    if job.paths.result_pickle.exists():
        try:
            outcome, result = pickle_load(job.paths.result_pickle)
        except Exception as e:  # noqa: BLE001 - a half-written pickle: ask again later
            return "active", f"result unreadable ({e})"
        if outcome == "success":
            return "done", ""
        lines = [ln.strip() for ln in str(result).splitlines() if ln.strip()]
        return "failed", lines[-1] if lines else "job failed"
    if record["launcher"] == "slurm":
        state = job.state
        if state.split()[0] in ACTIVE_SLURM_STATES or state == "UNKNOWN":
            return "active", state.lower()
        return "failed", f"slurm {state.lower()}: {_last_line(job.paths.stderr)}"
    if _pid_alive(job_id):
        return "active", "running"
    return "failed", f"job ended without a result: {_last_line(job.paths.stderr)}"


@dataclass
class RunStatus:
    run: tuple[str, int]
    state: str  # finished | running | failed | missing
    detail: str = ""


def table_status(cells: list, log_root: Path, jobs: dict[str, dict] | None = None,
                 by_cell: bool = True) -> list[RunStatus]:
    """Per cell of a table (:class:`kmexp.reporting.runs.Cell`): finished / running (or queued) /
    failed (the error's last line) / missing, from ``<log_root>/runs/<identity>/summary.json``
    and the recorded jobs. With ``by_cell``, a cell whose own identity was never run reports the
    latest job submitted for that (table, row, seed), e.g. with extra command-line overrides."""
    jobs = job_records(log_root) if jobs is None else jobs
    by_cell = {(r.get("table"), r.get("row"), int(r.get("seed", -1))): r for r in jobs.values()}
    out = []
    for cell in cells:
        key = (cell.row, cell.seed)
        run_id = cell.run_id
        if by_cell and run_id not in jobs and not (log_root / "runs" / run_id).is_dir():
            # submitted with other command-line overrides than asked about now: the cell's latest job
            run_id = by_cell.get((cell.table, cell.row, cell.seed), {}).get("run_id", run_id)
        summary = _read_summary(log_root / "runs" / run_id / "summary.json")
        if summary.get("status") == "finished":
            out.append(RunStatus(key, "finished"))
            continue
        failed = summary.get("status") == "failed"
        error = (str(summary.get("error") or "failed").strip().splitlines() or ["failed"])[-1] if failed else ""
        if run_id in jobs:
            state, detail = job_state(jobs[run_id])
            if state == "active":
                out.append(RunStatus(key, "running", detail))
            elif state == "failed" or failed:
                out.append(RunStatus(key, "failed", error or detail))
            else:
                out.append(RunStatus(key, "failed", "job finished but wrote no summary.json"))
            continue
        out.append(RunStatus(key, "failed", error) if failed else RunStatus(key, "missing"))
    return out


def _read_summary(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return {"status": "failed", "error": f"unreadable summary: {e}"}


def format_status(table_id: str, statuses: list[RunStatus]) -> str:
    """A count line, then one line per row and state (seeds listed) for what is not finished."""
    counts = {s: sum(r.state == s for r in statuses) for s in ("finished", "running", "failed", "missing")}
    lines = [f"{table_id}: {len(statuses)} runs: " + ", ".join(f"{n} {s}" for s, n in counts.items())]
    grouped: dict[tuple[str, str, str], list[int]] = {}
    for r in statuses:
        if r.state != "finished":
            grouped.setdefault((r.state, r.run[0], r.detail), []).append(r.run[1])
    for (state, row, detail), seeds in grouped.items():
        which = f"seed={seeds[0]}" if len(seeds) == 1 else "seeds=" + ",".join(map(str, seeds))
        lines.append(f"  {state:8s} {row} {which}" + (f": {detail}" if detail else ""))
    return "\n".join(lines)
