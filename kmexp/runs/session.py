"""One run's life cycle around ``trainer.fit``: lock, resume decision, signals, preemption.

``kmexp.train`` uses it as::

    with RunSession(cfg, write_summary) as session:
        if session.finished:            # nothing to do: summary.json says finished
            return session.summary
        trainer = Trainer(..., callbacks=[*callbacks, *session.callbacks()], plugins=session.plugins())
        session.prepare(datamodule, trainer.loggers)
        trainer.fit(module, datamodule=datamodule, ckpt_path=session.ckpt_path)
        ...

On :class:`~kmexp.runs.preemption.Preempted` the session writes ``summary.json`` with
``status: preempted`` and requeues the job (see :mod:`kmexp.runs.preemption`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from kmexp.runs import resume as resume_mod
from kmexp.runs.atomic_io import LAST, AtomicCheckpointIO, clean_orphans
from kmexp.runs.last_checkpoint import LastCheckpoint
from kmexp.runs.preemption import Preempted, PreemptionGuard
from kmexp.runs.resumable_loader import resumable_training_data
from kmexp.runs.run_lock import RunLock

log = logging.getLogger(__name__)


def is_launching_process() -> bool:
    """False in the extra processes of a multi-process run (DDP ranks > 0, other SLURM tasks):
    they neither lock nor write; rank 0 does."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(var, "0") not in ("", "0"):
            return False
    return True


class RunSession:
    def __init__(self, cfg: DictConfig, write_summary: Callable[[Path, dict, DictConfig], Path]):
        self.cfg = cfg
        self.run_dir = Path(cfg.paths.run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.write_summary = write_summary
        self.lock = RunLock(self.run_dir)
        self.guard = PreemptionGuard()
        self.decision: resume_mod.Decision | None = None
        self.summary: dict | None = None

    def __enter__(self) -> RunSession:
        self.primary = is_launching_process()
        if self.primary:
            self.lock.__enter__()
        try:
            if self.primary:
                clean_orphans(self.ckpt_dir)
                resume_mod.retire_hpc_checkpoints(self.run_dir)
            self.decision = resume_mod.decide(self.run_dir, self.cfg)
        except BaseException:
            self.lock.__exit__()
            raise
        if self.finished:
            self.summary = json.loads((self.run_dir / "summary.json").read_text())
            print(f"[kmexp] already finished, nothing retrained: summary: {self.run_dir / 'summary.json'}")
            return self
        if self.decision.action == "fresh" and self.primary:
            resume_mod.save_run_config(self.run_dir, self.cfg)
        else:
            log.info("resuming from %s (step %d)", self.decision.ckpt_path, self.decision.step)
            print(f"[kmexp] resuming from {self.decision.ckpt_path} (step {self.decision.step})")
        self.guard.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if not self.finished:
                self.guard.__exit__()
            if isinstance(exc, Preempted) and self.primary:
                self._write_preempted(exc)
        finally:
            self.lock.__exit__()
        if isinstance(exc, Preempted):
            self.guard.requeue(exc.signum, self.primary)  # exits

    @property
    def finished(self) -> bool:
        return self.decision is not None and self.decision.action == "finished"

    @property
    def ckpt_path(self) -> str | None:
        return str(self.decision.ckpt_path) if self.decision and self.decision.ckpt_path else None

    def callbacks(self) -> list:
        return [LastCheckpoint(self.ckpt_dir, self.cfg.get("checkpointing", {}).get("interval_s", 300), self.guard)]

    def plugins(self) -> list:
        """Atomic checkpoint writes; on SLURM, Lightning's own requeue (``hpc_ckpt_*``) off."""
        from lightning_fabric.plugins.environments import SLURMEnvironment

        plugins: list = [AtomicCheckpointIO()]
        if SLURMEnvironment.detect():
            plugins.append(SLURMEnvironment(auto_requeue=False))
        return plugins

    def prepare(self, datamodule, loggers: list) -> None:
        """Resumable training loaders; the CSV log continues after the resumed step."""
        resumable_training_data(datamodule)
        step = self.decision.step if self.decision.action == "resume" else None
        for logger in loggers:
            if hasattr(logger, "resume_step"):
                logger.resume_step = step

    def _write_preempted(self, exc: Preempted) -> None:
        last = self.ckpt_dir / LAST
        summary = {"status": "preempted", "signal": str(exc).split()[-1], "seed": self.cfg.get("seed"),
                   "checkpoint": str(last) if last.exists() else None,
                   "global_steps": resume_mod.checkpoint_step(last) if last.exists() else None}
        try:
            self.write_summary(self.run_dir, summary, self.cfg)
        except Exception as e:  # noqa: BLE001 - the checkpoint matters more than the summary
            log.error("could not write the preempted summary: %s", e)
        print(f"[kmexp] preempted ({summary['signal']}); latest state in {summary['checkpoint']}; "
              "rerun the same command (or let the scheduler requeue it) to resume")
