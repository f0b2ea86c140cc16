"""Unit checks of the preemption hand-off and the run-directory lock (kmexp/runs)."""

import os
import signal
import stat

import pytest
import torch

from kmexp.runs.atomic_io import PREVIOUS, atomic_torch_save, clean_orphans, temporary_name
from kmexp.runs.preemption import EXIT_PREEMPTED, PreemptionGuard
from kmexp.runs.run_lock import RunLock, RunLockedError


def test_submitit_handler_gets_the_signal_to_checkpoint_and_requeue(monkeypatch):
    calls = []

    def checkpoint_and_try_requeue(signum, frame):
        calls.append(signum)

    checkpoint_and_try_requeue.__module__ = "submitit.core.job_environment"
    monkeypatch.delenv("SUBMITIT_PREEMPT_SIGNAL", raising=False)
    previous = signal.signal(signal.SIGUSR2, checkpoint_and_try_requeue)
    try:
        guard = PreemptionGuard().__enter__()
        assert signal.getsignal(signal.SIGUSR2) == guard._handle
        with pytest.raises(SystemExit) as exit_:
            guard.requeue(signal.SIGTERM)
        assert calls == [signal.SIGTERM] and exit_.value.code == EXIT_PREEMPTED
        assert signal.getsignal(signal.SIGUSR2) is checkpoint_and_try_requeue  # handed back
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_plain_slurm_job_is_requeued_with_scontrol(tmp_path, monkeypatch):
    scontrol = tmp_path / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "called"}\n')
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    with PreemptionGuard() as guard, pytest.raises(SystemExit) as exit_:
        guard.requeue(signal.SIGUSR1)
    assert exit_.value.code == EXIT_PREEMPTED
    assert (tmp_path / "called").read_text().split() == ["requeue", "4242"]


def test_signal_outside_training_stops_at_once_inside_training_at_the_batch_end():
    from kmexp.runs.preemption import Preempted

    with PreemptionGuard() as guard:
        guard.enter_training()
        os.kill(os.getpid(), signal.SIGTERM)  # recorded, nothing raised
        assert guard.signal == signal.SIGTERM
        guard.leave_training()
        guard.signal = None
        with pytest.raises(Preempted):
            os.kill(os.getpid(), signal.SIGUSR1)


def test_second_holder_of_a_run_directory_is_refused_with_the_holder_named(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()} on "):
            RunLock(tmp_path).__enter__()
    with RunLock(tmp_path):  # released: free again
        pass


def test_atomic_save_keeps_the_previous_checkpoint_and_orphans_are_cleaned(tmp_path):
    last = tmp_path / "last.ckpt"
    atomic_torch_save({"global_step": 1}, last)
    atomic_torch_save({"global_step": 2}, last)
    assert torch.load(last, weights_only=True)["global_step"] == 2
    assert torch.load(tmp_path / PREVIOUS, weights_only=True)["global_step"] == 1
    orphan = temporary_name(last)
    orphan.write_bytes(b"half a checkpoint")
    assert clean_orphans(tmp_path) == [orphan] and not orphan.exists()


def test_last_checkpoint_is_never_absent_while_a_new_one_replaces_it(tmp_path, monkeypatch):
    """A kill -9 at any rename of a save must still find a readable last.ckpt (the resume step)."""
    last = tmp_path / "last.ckpt"
    atomic_torch_save({"global_step": 1}, last)
    seen = []
    real_replace = os.replace

    def replace_watching_last(src, dst):
        seen.append(torch.load(last, weights_only=True)["global_step"])
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_watching_last)
    atomic_torch_save({"global_step": 2}, last)
    assert seen and all(step == 1 for step in seen)
    assert torch.load(last, weights_only=True)["global_step"] == 2
    assert torch.load(tmp_path / PREVIOUS, weights_only=True)["global_step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", PREVIOUS]


def test_a_save_after_a_kill_between_its_renames_leaves_no_temporary_file(tmp_path):
    """Killed right after the link became last.prev.ckpt: last and prev are one file (same inode)."""
    last = tmp_path / "last.ckpt"
    atomic_torch_save({"global_step": 1}, last)
    os.link(last, tmp_path / PREVIOUS)
    atomic_torch_save({"global_step": 2}, last)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", PREVIOUS]
    assert torch.load(tmp_path / PREVIOUS, weights_only=True)["global_step"] == 1


def test_stale_lightning_hpc_checkpoints_are_retired_but_stay_resume_candidates(tmp_path):
    from kmexp.runs.resume import newest_readable, retire_hpc_checkpoints

    ckpts = tmp_path / "checkpoints"
    atomic_torch_save({"state_dict": {}, "global_step": 6}, ckpts / "last.ckpt")
    torch.save({"state_dict": {}, "global_step": 13}, tmp_path / "hpc_ckpt_1.ckpt")
    retire_hpc_checkpoints(tmp_path)
    assert not list(tmp_path.glob("hpc_ckpt_*"))  # Lightning on SLURM would load it by itself
    path, step = newest_readable(ckpts)
    assert (path.name, step) == ("legacy-hpc_ckpt_1.ckpt", 13)
