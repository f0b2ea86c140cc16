"""``checkpoints/last.ckpt`` is always the latest state of the run.

Lightning's ``ModelCheckpoint(save_last=True)`` rewrites ``last.ckpt`` only when it saves a
monitored checkpoint, i.e. when validation improves; a run killed later resumed from an
old step. :class:`LastCheckpoint` saves instead

- at the end of every training epoch (after validation),
- every ``interval_s`` seconds during an epoch (so a long epoch loses minutes, not the epoch),
  except after an epoch's last batch, where the epoch-end save follows validation (Lightning
  resumes a checkpoint taken after the last batch at the next epoch, skipping that validation
  and its random draws),
- when a preemption signal arrived (see :mod:`kmexp.runs.preemption`): then it raises
  :class:`~kmexp.runs.preemption.Preempted` right after the save (after an epoch's last
  batch: at the next epoch start, once the epoch's averages are logged and flushed).

Each checkpoint also carries the random states (:mod:`kmexp.runs.rng_state`); the
training loaders' positions travel in Lightning's loop state
(:mod:`kmexp.runs.resumable_loader`). The best-on-validation checkpoint is a separate file
written by ``ModelCheckpoint``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytorch_lightning as pl

from kmexp.runs import epoch_metrics, rng_state
from kmexp.runs.atomic_io import LAST
from kmexp.runs.preemption import Preempted, PreemptionGuard
from kmexp.runs.resumable_loader import ResumableDataLoader

log = logging.getLogger(__name__)
RNG_KEY = "kmexp_rng"
EPOCH_METRICS_KEY = "kmexp_epoch_metrics"


class LastCheckpoint(pl.Callback):
    def __init__(self, ckpt_dir: str | Path, interval_s: float = 300.0, guard: PreemptionGuard | None = None):
        self.path = Path(ckpt_dir) / LAST
        self.interval_s = float(interval_s)
        self.guard = guard
        self._last_save = time.monotonic()
        self._mid_epoch = False
        self._pending_metrics: dict | None = None

    # --- when to save --------------------------------------------------------------------
    def on_train_start(self, trainer, pl_module) -> None:
        self._last_save = time.monotonic()
        if self.guard is not None:
            self.guard.enter_training()  # Lightning has registered its own handlers by now

    def on_train_end(self, trainer, pl_module) -> None:
        if self.guard is not None:
            self.guard.leave_training()
        self._stop_if_signalled()  # after the last epoch: testing is redone on resume

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._pending_metrics is not None:  # first batch after a mid-epoch resume
            epoch_metrics.merge(trainer, self._pending_metrics)
            self._pending_metrics = None
        for loader in self._loaders(trainer):
            loader.mark_completed()
        if self._last_batch_of_epoch(trainer, batch_idx):
            return  # on_train_epoch_end saves after validation; a batch-end save here would resume past it
        preempted = self.guard is not None and self.guard.signal is not None
        if preempted or (self.interval_s > 0 and time.monotonic() - self._last_save >= self.interval_s):
            self.save(trainer, mid_epoch=True)
        if preempted:
            raise Preempted(self.guard.signal)

    @staticmethod
    def _last_batch_of_epoch(trainer, batch_idx: int) -> bool:
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return True
        n = trainer.num_training_batches
        return n != float("inf") and batch_idx + 1 >= n

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        for loader in self._loaders(trainer):
            loader.mark_epoch_done()
        self.save(trainer)
        # a pending signal stops at the next epoch start: Lightning logs the epoch's training
        # averages after this hook, and a resume from this checkpoint does not log them again

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        for logger in trainer.loggers:  # the previous epoch's rows reach the disk
            logger.save()
        self._stop_if_signalled()

    def _stop_if_signalled(self) -> None:
        if self.guard is not None and self.guard.signal is not None:
            raise Preempted(self.guard.signal)

    def save(self, trainer, mid_epoch: bool = False) -> None:
        for logger in trainer.loggers:  # rows up to this step reach the disk with the checkpoint
            logger.save()
        self._mid_epoch = mid_epoch
        trainer.save_checkpoint(str(self.path), weights_only=False)
        self._mid_epoch = False  # ModelCheckpoint's best-* saves happen at epoch ends
        self._last_save = time.monotonic()
        log.debug("saved %s at step %d", self.path, trainer.global_step)

    @staticmethod
    def _loaders(trainer) -> list[ResumableDataLoader]:
        combined = getattr(trainer.fit_loop, "_combined_loader", None)
        if combined is None:
            return []
        return [dl for dl in combined.flattened if isinstance(dl, ResumableDataLoader)]

    # --- what a checkpoint carries -------------------------------------------------------
    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[RNG_KEY] = rng_state.capture()
        if self._mid_epoch:
            checkpoint[EPOCH_METRICS_KEY] = epoch_metrics.capture(trainer)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # Under DDP each rank has its own streams but the checkpoint holds rank 0's: keep them apart.
        if RNG_KEY in checkpoint and trainer.world_size == 1:
            rng_state.restore(checkpoint[RNG_KEY])
        self._pending_metrics = checkpoint.get(EPOCH_METRICS_KEY) or None
