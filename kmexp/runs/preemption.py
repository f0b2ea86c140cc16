"""Preemption: SIGTERM, SLURM's SIGUSR1 and submitit's signal save the run and requeue it.

What happens on a signal:

1. during training, the handler only records the signal; at the end of the current batch
   :class:`~kmexp.runs.last_checkpoint.LastCheckpoint` saves ``last.ckpt`` and raises
   :class:`Preempted` (after an epoch's last batch: once validation and the epoch-end save are
   done); outside training (set-up, testing) :class:`Preempted` is raised at once (the latest
   checkpoint is already on disk);
2. ``kmexp.train`` writes ``summary.json`` with ``status: preempted``;
3. :meth:`PreemptionGuard.requeue` asks the scheduler for a new start: under submitit its own
   handler (checkpoint the job, ``scontrol requeue``, exit); under plain SLURM
   ``scontrol requeue $SLURM_JOB_ID``; then the process exits with :data:`EXIT_PREEMPTED`
   (75, ``EX_TEMPFAIL``: "try again"; ``RequeueExit=75`` in ``slurm.conf`` requeues on it too).

The requeued job runs the same command, finds the same run directory and resumes
automatically (:mod:`kmexp.runs.resume`). Lightning's own SLURM handling (``hpc_ckpt_*.ckpt``
plus its own requeue) is switched off so ``last.ckpt`` is the only resume point, and its
SIGTERM handling (a silent exit with status 0) is replaced by this one.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys

log = logging.getLogger(__name__)

EXIT_PREEMPTED = 75  # sysexits.h EX_TEMPFAIL


class Preempted(Exception):  # noqa: N818 - an event, not an error
    """The run stopped on a preemption signal after saving its latest state."""

    def __init__(self, signum: int):
        super().__init__(f"preempted by {signal.Signals(signum).name}")
        self.signum = signum


def preemption_signals() -> list[int]:
    """SIGTERM, SIGUSR1 (SLURM ``--signal``, Lightning's convention) and submitit's signal."""
    sigs = [signal.SIGTERM, signal.SIGUSR1]
    submitit_sig = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)
    if submitit_sig is not None and submitit_sig not in sigs:
        sigs.append(submitit_sig)
    return sigs


class PreemptionGuard:
    """Installs the handlers for the lifetime of a run (a context manager)."""

    def __init__(self):
        self.signal: int | None = None
        self.in_training = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> PreemptionGuard:
        for sig in preemption_signals():
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    def enter_training(self) -> None:
        """Re-assert the handlers (Lightning replaces SIGTERM's) and defer signals to batch ends."""
        self.in_training = True
        for sig in self._previous:
            signal.signal(sig, self._handle)
        if self.signal is not None:  # arrived while Lightning's handler was in place
            log.info("preemption signal pending; saving at the end of this batch")

    def leave_training(self) -> None:
        self.in_training = False

    def _handle(self, signum, frame) -> None:
        first = self.signal is None
        self.signal = signum
        log.warning("received %s: saving and stopping", signal.Signals(signum).name)
        if not self.in_training and first:
            raise Preempted(signum)

    def requeue(self, signum: int, primary: bool = True) -> None:
        """Hand the job back to its scheduler (rank 0 only), then exit with :data:`EXIT_PREEMPTED`."""
        if not primary:
            sys.exit(EXIT_PREEMPTED)
        submitit_handler = self._previous.get(preemption_signals()[-1])
        if callable(submitit_handler) and getattr(submitit_handler, "__module__", "").startswith("submitit"):
            self.__exit__()
            submitit_handler(signum, None)  # submitit: checkpoint the job, requeue, sys.exit
        elif os.environ.get("SLURM_JOB_ID") and signum == signal.SIGUSR1:
            _scontrol_requeue()
        sys.exit(EXIT_PREEMPTED)


def _scontrol_requeue() -> None:
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array_job else os.environ["SLURM_JOB_ID"]
    if not re.fullmatch(r"[0-9_]+", job):
        log.warning("not requeueing: unexpected SLURM job id %r", job)
        return
    try:
        result = subprocess.run(["scontrol", "requeue", job], check=False).returncode
    except FileNotFoundError:
        log.warning("scontrol not found: job %s not requeued (exit status %d asks for it)", job, EXIT_PREEMPTED)
        return
    log.info("requeued SLURM job %s (scontrol exit status %d)", job, result)
