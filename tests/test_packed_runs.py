"""k runs of a sweep per GPU (kmexp.reporting.packing, ``kmexp.reproduce --runs-per-gpu k``;
issue 17 item 3): SLURM jobs of one task and one GPU per k runs, a pack's processes run side by
side and are all signalled on preemption, and a local packed sweep leaves every run exactly as
if it had run alone."""

from __future__ import annotations

import json
import sys
import threading
import time
from contextlib import contextmanager

import pytest
import torch

from kmexp.errors import ConfigError
from kmexp.reporting import packing
from kmexp.reporting.jobs import Run, preflight, submit
from kmexp.reporting.packing import PackedTrainJob, packed_launcher_params, packs
from kmexp.reporting.reproduce import entry as main
from tests.conftest import run_cli


def test_a_packed_slurm_job_is_one_task_on_one_gpu_with_k_times_the_resources():
    [run] = preflight([Run("t", "km", 0, ("trainer=gpu",))], "slurm",
                      ["hydra.launcher.partition=gpu", "hydra.launcher.cpus_per_task=3", "hydra.launcher.mem_gb=10"])
    alone = run.launcher
    assert (alone["tasks_per_node"], alone["gpus_per_node"], alone["cpus_per_task"], alone["mem_gb"]) == (1, 1, 3, 10)
    packed = packed_launcher_params(alone, 4, "t km")
    assert (packed["tasks_per_node"], packed["gpus_per_node"], packed["nodes"]) == (1, 1, 1)
    assert (packed["cpus_per_task"], packed["mem_gb"]) == (12, 40)
    assert packed["slurm_partition"] == "gpu" and packed["timeout_min"] == alone["timeout_min"]
    [cpu] = preflight([Run("t", "km", 0, ("trainer=cpu",))], "slurm", [])
    assert packed_launcher_params(cpu.launcher, 2, "t km")["gpus_per_node"] == 0
    [ddp] = preflight([Run("t", "km", 0, ("trainer=ddp", "trainer.devices=2"))], "slurm", [])
    with pytest.raises(ConfigError, match="DDP"):
        packed_launcher_params(ddp.launcher, 2, "t km")
    assert [len(p) for p in packs(list(range(7)), 3)] == [3, 3, 1]
    with pytest.raises(ConfigError):
        packs([1], 0)


def test_dry_run_lists_the_packs_and_their_jobs(capsys):
    assert main(["table1", "--seeds", "0,1", "--launcher", "slurm", "--runs-per-gpu", "4", "--dry-run", "--",
                 "trainer=gpu", "hydra.launcher.partition=gpu"]) == 0
    out = capsys.readouterr().out
    pack_lines = [line for line in out.splitlines() if line.startswith("pack ")]
    assert len(pack_lines) == 3  # Table I: 6 rows x 2 seeds = 12 runs, 4 per GPU
    assert all(line.count("table1/") == 4 for line in pack_lines)
    jobs = [line for line in out.splitlines() if line.startswith("  job: ")]
    assert len(jobs) == 3 and all("tasks_per_node=1" in j and "gpus_per_node=1" in j and "nodes=1" in j for j in jobs)
    commands = [line for line in out.splitlines() if line.startswith("  command: ")]
    assert len(commands) == 12 and all("hydra.run.dir=" in c and "-m kmexp.train " in c for c in commands)
    assert main(["table1", "--seeds", "0", "--runs-per-gpu", "0", "--dry-run"]) == 1
    assert capsys.readouterr().err.strip() == "error: --runs-per-gpu=0 must be >= 1"


class FakeExecutor:
    """Stands in for submitit.AutoExecutor: records parameters and submitted callables."""

    instances: list = []

    def __init__(self, folder, cluster, **init):
        self.params, self.submitted = {}, []
        FakeExecutor.instances.append(self)

    def update_parameters(self, **params):
        self.params.update(params)

    @contextmanager
    def batch(self):
        yield

    def submit(self, fn):
        self.submitted.append(fn)
        return type("Job", (), {"job_id": f"{id(self)}_{len(self.submitted) - 1}"})()


def test_submit_queues_one_job_per_k_runs(tmp_path, monkeypatch):
    import submitit

    FakeExecutor.instances = []
    monkeypatch.setattr(submitit, "AutoExecutor", FakeExecutor)
    runs = preflight([Run("t", "km", s, ("trainer=gpu", f"seed={s}", f"hydra.run.dir={tmp_path}/runs/r{s}"), f"r{s}")
                      for s in range(5)], "slurm", [])
    records = submit(runs, "slurm", tmp_path, runs_per_gpu=2)
    [executor] = FakeExecutor.instances
    assert [type(j) for j in executor.submitted] == [PackedTrainJob] * 3
    assert [len(j.runs) for j in executor.submitted] == [2, 2, 1]
    assert executor.submitted[0].runs[1] == list(runs[1].overrides)
    assert (executor.params["tasks_per_node"], executor.params["gpus_per_node"]) == (1, 1)
    assert executor.params["cpus_per_task"] == 2 * runs[0].launcher["cpus_per_task"]
    assert [r["run_id"] for r in records] == [f"r{s}" for s in range(5)]
    assert len({r["job_id"] for r in records}) == 3 and records[0]["job_id"] == records[1]["job_id"]
    assert len((tmp_path / "jobs.jsonl").read_text().splitlines()) == 5


def _fake_train(tmp_path, code: str):
    """train_command replacement: a Python child running ``code`` with the run dir as argv[1]."""
    def command(overrides):
        return [sys.executable, "-c", code, str(packing.run_dir_of(overrides))]
    return command


SIDE_BY_SIDE = """
import pathlib, sys, time
d = pathlib.Path(sys.argv[1]); d.mkdir(parents=True)
(d / "start").write_text(repr(time.time())); time.sleep(1.5); (d / "end").write_text(repr(time.time()))
if d.name == "bad": sys.exit("error: this run failed")
"""


def test_a_pack_runs_its_processes_side_by_side_and_names_the_failed_one(tmp_path, monkeypatch):
    monkeypatch.setattr(packing, "train_command", _fake_train(tmp_path, SIDE_BY_SIDE))
    job = PackedTrainJob([[f"hydra.run.dir={tmp_path / 'good'}"], [f"hydra.run.dir={tmp_path / 'bad'}"]], "test")
    with pytest.raises(RuntimeError) as e:
        job()
    assert str(e.value) == f"{tmp_path / 'bad'}: kmexp.train exited 1: error: this run failed"
    starts = [float((tmp_path / d / "start").read_text()) for d in ("good", "bad")]
    ends = [float((tmp_path / d / "end").read_text()) for d in ("good", "bad")]
    assert max(starts) < min(ends)  # both ran at once


ON_SIGTERM = """
import pathlib, signal, sys, time
d = pathlib.Path(sys.argv[1]); d.mkdir(parents=True)
def save(*_):
    (d / "last.ckpt").write_text("saved"); sys.exit(0)
signal.signal(signal.SIGTERM, save)
(d / "ready").write_text("1")
time.sleep(60)
"""


def test_preemption_signals_every_process_of_the_pack_then_requeues_it(tmp_path, monkeypatch):
    monkeypatch.setattr(packing, "train_command", _fake_train(tmp_path, ON_SIGTERM))
    runs = [[f"hydra.run.dir={tmp_path / name}"] for name in ("a", "b")]
    job = PackedTrainJob(runs, "test")
    worker = threading.Thread(target=job, daemon=True)
    worker.start()
    deadline = time.time() + 60
    while not all((tmp_path / n / "ready").exists() for n in ("a", "b")) and time.time() < deadline:
        time.sleep(0.1)
    again = job.checkpoint()
    assert all((tmp_path / n / "last.ckpt").read_text() == "saved" for n in ("a", "b"))
    assert isinstance(again.function, PackedTrainJob) and again.function.runs == runs
    worker.join(timeout=30)


def _metrics(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k.startswith(("test/", "val/", "train/", "params/"))}


@pytest.mark.slow
def test_a_local_packed_sweep_gives_each_run_what_it_gets_alone(tmp_path):
    """k=2 tiny digits runs side by side: two run directories, each with its own summary and
    checkpoint, the same metrics and weights as the same runs trained one after another."""
    common = ["table1_digits", "--profile", "mini", "--rows", "full,bl", "--seeds", "0"]
    packed = run_cli([*common, "--runs-per-gpu", "2", "--logs", str(tmp_path / "packed"), "--out",
                      str(tmp_path / "out_packed")], tmp_path, module="kmexp.reproduce", timeout=900)
    lines = packed.stdout.splitlines()
    started = [i for i, line in enumerate(lines) if line.startswith("[kmexp] started ")]
    finished = [i for i, line in enumerate(lines) if line.endswith(": finished")]
    assert len(started) == len(finished) == 2 and max(started) < min(finished)  # side by side
    run_cli([*common, "--logs", str(tmp_path / "alone"), "--out", str(tmp_path / "out_alone")], tmp_path,
            module="kmexp.reproduce", timeout=900)

    def runs(root):
        dirs = sorted(p for p in (root / "runs").iterdir() if p.is_dir())
        return {d.name: d for d in dirs}

    packed_runs, alone_runs = runs(tmp_path / "packed"), runs(tmp_path / "alone")
    assert len(packed_runs) == 2 and packed_runs.keys() == alone_runs.keys()  # same run identities
    for run_id, d in packed_runs.items():
        assert (tmp_path / "packed" / "console" / f"{run_id}.log").is_file()
        s_packed = json.loads((d / "summary.json").read_text())
        s_alone = json.loads((alone_runs[run_id] / "summary.json").read_text())
        assert s_packed["status"] == s_alone["status"] == "finished"
        assert _metrics(s_packed) and _metrics(s_packed) == _metrics(s_alone)
        ckpts = sorted(p.relative_to(d) for p in d.rglob("*.ckpt"))
        assert ckpts and ckpts == sorted(p.relative_to(alone_runs[run_id]) for p in alone_runs[run_id].rglob("*.ckpt"))
        for rel in ckpts:
            a = torch.load(d / rel, map_location="cpu", weights_only=True)["state_dict"]
            b = torch.load(alone_runs[run_id] / rel, map_location="cpu", weights_only=True)["state_dict"]
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "out_packed" / "table1_digits.md").is_file()
