"""Killed, preempted and requeued runs resume exactly where they stopped (kmexp/runs).

Every scenario goes through the real entry point (``kmexp.train`` as ``__main__`` in a subprocess)
with tiny budgets; the interrupted run sends itself the signal after a given step's save
(:data:`SIGNAL_AFTER_SAVE`). ``checkpointing.interval_s=0.001`` makes ``last.ckpt`` follow every
optimizer step, so a kill lands mid-epoch with the latest step on disk.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, run_cli, summaries

COMMON = [
    "logger=csv", "callbacks.progress_bar=none", "trainer.accelerator=cpu", "trainer.num_sanity_val_steps=0",
    "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "trainer.deterministic=true",
    "checkpointing.interval_s=0.001",
]
# 4 epochs of 3 optimizer steps each; a kill at step 4 lands in the second epoch
MODULES = {
    "classification": ["backbone=resnet20", "dataset.datamodule.batch_size=16", "trainer.max_epochs=4",
                       "trainer.limit_train_batches=3"],
    "fewshot": ["experiment=glyphs/fewshot", "method=km", "backbone.hidden=8", "dataset.datamodule.split=[10,5,5]",
                "meta.iterations_per_epoch=3", "meta.meta_batch_size=2", "meta.num_val_tasks=2",
                "meta.num_test_tasks=2", "meta.query=2", "meta.test_inner_steps=1", "trainer.max_epochs=4"],
    "multitask": ["experiment=digits/mp_multitask_sb", "dataset.datamodule.batch_size=16", "trainer.max_epochs=6",
                  "trainer.limit_train_batches=3"],
}
STEPS = 12
STEPS_OF = {"classification": STEPS, "fewshot": STEPS, "multitask": 18}
KILL_AT = 4
# where each signal lands: SIGKILL mid-epoch; the others during an epoch's last batch
# (the signal waits for the epoch-end save, after validation)
SIGNAL_AT = {signal.SIGKILL: 4, signal.SIGTERM: 5, signal.SIGUSR1: 5}
SLURM_ENV = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "kmexp", "SLURM_NODELIST": "localhost",
             "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}


def _env(log_dir: Path, extra: dict | None = None) -> dict:
    return dict(os.environ, KMEXP_LOGS=str(log_dir), WANDB_MODE="disabled", PYTHONWARNINGS="ignore",
                OMP_NUM_THREADS="1", **(extra or {}))


def _step(path: Path) -> int:
    try:
        return int(torch.load(path, weights_only=True, mmap=True)["global_step"])
    except Exception:  # noqa: BLE001 - being replaced right now
        return -1


# The run signals its own process group right after ``last.ckpt`` of step >= SIGNAL_AT_STEP is on
# disk, so where the signal lands does not depend on how loaded the machine is (a test polling
# the checkpoint from outside could fall behind a fast run and signal it after its last step).
SIGNAL_AFTER_SAVE = """
import os, runpy, signal, sys
import kmexp.runs.atomic_io as atomic_io
real_save, sent = atomic_io.atomic_torch_save, []
def save(obj, path):
    real_save(obj, path)
    if not sent and os.path.basename(path) == "last.ckpt" and obj["global_step"] >= int(os.environ["SIGNAL_AT_STEP"]):
        sent.append(True)
        os.killpg(os.getpgrp(), signal.Signals[os.environ["SIGNAL"]])
atomic_io.atomic_torch_save = save
sys.argv = ["kmexp.train", *sys.argv[1:]]
runpy.run_module("kmexp.train", run_name="__main__")
"""


def interrupt(args: list[str], log_dir: Path, sig: signal.Signals, at_step: int, extra_env: dict | None = None):
    """Run ``kmexp.train``, which gets ``sig`` once last.ckpt holds step >= at_step; return (exit status, output)."""
    env = _env(log_dir, {**(extra_env or {}), "SIGNAL": sig.name, "SIGNAL_AT_STEP": str(at_step)})
    proc = subprocess.run([sys.executable, "-c", SIGNAL_AFTER_SAVE, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True, timeout=600)
    assert proc.returncode != 0, "the run ended before it could be interrupted:\n" + proc.stdout[-3000:]
    return proc.returncode, proc.stdout


def run_dir_of(log_dir: Path) -> Path:
    [d] = [p.parent for p in log_dir.rglob("run_config.json")]
    return d


def final_weights(log_dir: Path) -> dict:
    return torch.load(run_dir_of(log_dir) / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """One uninterrupted reference run per module, computed on first use."""
    cache = {}

    def get(module: str) -> Path:
        if module not in cache:
            log_dir = tmp_path_factory.mktemp(f"ref-{module}")
            run_cli([*COMMON, *MODULES[module]], log_dir)
            cache[module] = log_dir
        return cache[module]

    return get


CASES = [
    ("classification", signal.SIGKILL, None), ("classification", signal.SIGTERM, None),
    ("classification", signal.SIGUSR1, SLURM_ENV),
    ("fewshot", signal.SIGKILL, None), ("fewshot", signal.SIGTERM, None), ("fewshot", signal.SIGUSR1, SLURM_ENV),
    ("multitask", signal.SIGKILL, None), ("multitask", signal.SIGTERM, None),
    ("multitask", signal.SIGUSR1, SLURM_ENV),
]


@pytest.mark.parametrize(("module", "sig", "env"), CASES, ids=[f"{m}-{s.name}" for m, s, _ in CASES])
def test_interrupted_run_resumes_to_the_same_weights(tmp_path, uninterrupted, module, sig, env):
    args = [*COMMON, *MODULES[module]]
    rc, out = interrupt(args, tmp_path, sig, SIGNAL_AT[sig], env)
    run_dir = run_dir_of(tmp_path)
    saved = _step(run_dir / "checkpoints" / "last.ckpt")
    assert SIGNAL_AT[sig] <= saved < STEPS_OF[module], f"exit status {rc}:\n{out[-3000:]}"
    if sig == signal.SIGKILL:
        assert rc == -signal.SIGKILL and not (run_dir / "summary.json").exists()
    else:  # saved, "preempted" summary, exit status asking for a requeue; no Lightning hpc checkpoint
        assert rc == 75, out[-3000:]
        s = json.loads((run_dir / "summary.json").read_text())
        assert s["status"] == "preempted" and s["signal"] == sig.name and s["global_steps"] == saved
        assert not list(run_dir.rglob("hpc_ckpt_*"))

    resumed = run_cli(args, tmp_path, timeout=600)  # the same command: no flag needed
    assert f"resuming from {run_dir / 'checkpoints' / 'last.ckpt'} (step {saved})" in resumed.stdout
    [s] = summaries(tmp_path)
    [ref] = summaries(uninterrupted(module))
    assert s["status"] == "finished" and s["global_steps"] == ref["global_steps"] == STEPS_OF[module]
    assert {k: v for k, v in s.items() if k.startswith("test/")} == {k: v for k, v in ref.items() if k.startswith("test/")}
    mine, theirs = final_weights(tmp_path), final_weights(uninterrupted(module))
    assert mine.keys() == theirs.keys()
    assert [k for k in mine if not torch.equal(mine[k], theirs[k])] == []
    if module == "classification":  # the CSV log continues: the same rows as the uninterrupted run
        assert _metric_rows(run_dir) == _metric_rows(run_dir_of(uninterrupted(module)))


def _metric_rows(run_dir: Path) -> list[tuple]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return sorted((r["step"], r.get("epoch"), r.get("train/loss_step")) for r in csv.DictReader(f))


def _tree_digest(run_dir: Path) -> dict[str, str]:
    """Digest of every result file (Hydra's own .hydra/ and train.log record each invocation)."""
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file() and ".hydra" not in p.parts
            and p.name not in ("train.log", ".lock")}


def test_a_finished_run_is_never_retrained(tmp_path, uninterrupted):
    log_dir = uninterrupted("classification")
    run_dir = run_dir_of(log_dir)
    before = _tree_digest(run_dir)
    for extra in ([], ["resume=true"]):
        proc = run_cli([*COMMON, *MODULES["classification"], *extra], log_dir)
        assert f"already finished, nothing retrained: summary: {run_dir / 'summary.json'}" in proc.stdout
    assert _tree_digest(run_dir) == before


def test_a_different_configuration_in_the_same_run_directory_is_refused(tmp_path):
    args = [*COMMON, *MODULES["classification"]]
    rc, _ = interrupt(args, tmp_path, signal.SIGKILL, 1)
    run_dir = run_dir_of(tmp_path)
    config = json.loads((run_dir / "run_config.json").read_text())
    config["optim"]["lr"] = 123.0  # as if the config files had changed between the two starts
    (run_dir / "run_config.json").write_text(json.dumps(config))
    proc = run_cli(args, tmp_path, check=False)
    assert proc.returncode == 1 and "different configuration" in proc.stderr and "optim.lr" in proc.stderr
    refused = run_cli([*args, "resume=false"], tmp_path, check=False)
    assert refused.returncode == 1 and (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_two_identical_commands_at_once_one_is_refused(tmp_path):
    args = [*COMMON, *MODULES["classification"], "trainer.max_epochs=1000"]  # long enough to overlap
    first = subprocess.Popen([sys.executable, "-m", "kmexp.train", *args], cwd=REPO, env=_env(tmp_path),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not list(tmp_path.rglob("run_config.json")) and time.time() < deadline and first.poll() is None:
        time.sleep(0.05)
    second = run_cli(args, tmp_path, check=False)
    assert first.poll() is None, "the first run ended before the second started"
    assert second.returncode == 1 and "is in use by another process" in second.stderr
    assert f"pid {first.pid} on " in second.stderr and "Traceback" not in second.stderr
    first.send_signal(signal.SIGTERM)  # the first was not disturbed: it stops cleanly, resumable
    first.communicate(timeout=300)
    assert first.returncode == 75
    [s] = summaries(tmp_path)
    assert s["status"] == "preempted" and s["global_steps"] >= 1


def test_a_corrupt_last_checkpoint_falls_back_to_the_newest_readable_one(tmp_path):
    args = [*COMMON, *MODULES["classification"]]
    interrupt(args, tmp_path, signal.SIGKILL, KILL_AT)
    ckpts = run_dir_of(tmp_path) / "checkpoints"
    prev_step = _step(ckpts / "last.prev.ckpt")
    assert prev_step >= 0
    # torn: a new file in its place, not an in-place truncation, which would also truncate
    # last.prev.ckpt when the kill left the two names on one file (between the save's two renames)
    torn = ckpts / "torn"
    torn.write_bytes((ckpts / "last.ckpt").read_bytes()[:1000])
    os.replace(torn, ckpts / "last.ckpt")
    proc = run_cli(args, tmp_path)
    assert "last.ckpt unreadable; resuming from last.prev.ckpt" in proc.stdout
    [s] = summaries(tmp_path)
    assert s["status"] == "finished" and s["global_steps"] == STEPS


# --- kills and a full disk during a save, with the run directory on another filesystem ----
DYING_SAVE = """
import errno, io, os, runpy, signal, sys, torch
real_save, count = torch.save, [0]
def save(obj, f, *args, **kwargs):
    count[0] += 1
    if count[0] != int(os.environ["FAIL_AT_SAVE"]) or isinstance(f, (str, os.PathLike)):
        return real_save(obj, f, *args, **kwargs)
    buf = io.BytesIO()
    real_save(obj, buf)
    f.write(buf.getvalue()[: len(buf.getvalue()) // 2])  # half of the checkpoint reached the disk
    f.flush()
    if os.environ["FAIL_HOW"] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
torch.save = save
sys.argv = ["kmexp.train", *sys.argv[1:]]
runpy.run_module("kmexp.train", run_name="__main__")
"""


@pytest.fixture
def other_fs_log_dir(tmp_path):
    """A log directory on /dev/shm (tmpfs), another filesystem than $TMPDIR where possible."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path / "logs"
        return
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="kmexp-test-", dir=shm))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("how", ["kill", "disk_full"])
def test_a_failure_during_a_save_never_leaves_the_run_unresumable(other_fs_log_dir, uninterrupted, how):
    log_dir = other_fs_log_dir
    args = [*COMMON, *MODULES["classification"]]
    proc = subprocess.run([sys.executable, "-c", DYING_SAVE, *args], cwd=REPO, capture_output=True, text=True,
                          env=_env(log_dir, {"FAIL_AT_SAVE": "5", "FAIL_HOW": how}), timeout=600)
    run_dir = run_dir_of(log_dir)
    ckpts = run_dir / "checkpoints"
    if how == "kill":
        assert proc.returncode == -signal.SIGKILL
        assert [p.name for p in ckpts.iterdir() if ".tmp-" in p.name], "the torn temporary file is gone?"
    else:
        assert proc.returncode == 1 and "No space left on device" in proc.stderr and "Traceback" not in proc.stderr
        assert "previous checkpoint is intact" in proc.stderr
    assert _step(ckpts / "last.ckpt") >= 1  # the previous good checkpoint is in place

    run_cli(args, log_dir)  # the same command resumes and finishes
    assert not [p for p in ckpts.iterdir() if ".tmp-" in p.name]  # orphans cleaned
    [s] = summaries(log_dir)
    assert s["status"] == "finished" and s["global_steps"] == STEPS
    mine, theirs = final_weights(log_dir), final_weights(uninterrupted("classification"))
    assert [k for k in mine if not torch.equal(mine[k], theirs[k])] == []


def test_a_relaunched_reproduce_sweep_trains_nothing(tmp_path):
    cmd = ["table1", "--rows", "bl", "--seeds", "0", "--profile", "mini", "--logs", str(tmp_path / "logs"),
           "--out", str(tmp_path / "out"), "--", "backbone=resnet20", "dataset.datamodule.batch_size=8"]
    run_cli(cmd, tmp_path, module="kmexp.reproduce")
    run_dir = run_dir_of(tmp_path / "logs")
    before = _tree_digest(run_dir)
    again = run_cli(cmd, tmp_path, module="kmexp.reproduce")
    assert "already finished, nothing retrained" in again.stdout
    assert _tree_digest(run_dir) == before
