"""Learning rates per named parameter group: ``lr/explicit``, ``lr/implicit``, ``lr/<task>/classifier``.

Lightning's ``LearningRateMonitor`` prefixes series with the optimizer class
(``lr-SGD/pg2``); this callback logs each group under its name (set by
:func:`kmexp.optim.param_groups`), once per epoch, to every logger (rank 0 only: the
loggers' ``log_metrics`` are rank-zero-only).
"""

from __future__ import annotations

import pytorch_lightning as pl


def learning_rates(optimizers) -> dict[str, float]:
    rates = {}
    for i, optimizer in enumerate(optimizers):
        for j, group in enumerate(optimizer.param_groups):
            name = group.get("name") or (f"group{j}" if len(optimizers) == 1 else f"optimizer{i}/group{j}")
            rates[f"lr/{name}"] = float(group["lr"])
    return rates


class LearningRatePerGroup(pl.Callback):
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        rates = learning_rates(trainer.optimizers)
        for logger in trainer.loggers:
            logger.log_metrics(rates, step=trainer.global_step)
