"""The loggers and the standard callbacks of a run (checkpoints, progress bar, learning rate)."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig


def build_loggers(cfg: DictConfig, run_dir: Path) -> list:
    """Every logger of ``cfg.logger`` (``_target_`` configs, configs/logger/); W&B goes
    through :func:`kmexp.wandb_utils.prepare_wandb` first."""
    from kmexp.wandb_utils import prepare_wandb

    loggers = []
    for name, lcfg in (cfg.get("logger") or {}).items():
        if lcfg is None:
            continue
        if name == "wandb":
            resuming = bool(cfg.resume) and (run_dir / "checkpoints" / "last.ckpt").exists()
            lcfg = prepare_wandb(lcfg, run_dir, cfg, resuming)
        loggers.append(hydra.utils.instantiate(lcfg))
    return loggers


def build_callbacks(cfg: DictConfig, ckpt_dir: Path) -> list:
    from pytorch_lightning.callbacks import ModelCheckpoint, RichProgressBar, TQDMProgressBar

    from kmexp.lr_logging import LearningRatePerGroup

    c = cfg.callbacks
    callbacks = [
        ModelCheckpoint(
            dirpath=str(ckpt_dir),
            filename="best-epoch{epoch:03d}",
            auto_insert_metric_name=False,
            monitor=c.checkpoint.monitor,
            mode=c.checkpoint.mode,
            save_top_k=1,
            save_last=False,  # last.ckpt: kmexp.runs.last_checkpoint.LastCheckpoint
            every_n_epochs=1,
        )
    ]
    if c.progress_bar == "rich":
        callbacks.append(RichProgressBar())
    elif c.progress_bar == "tqdm":
        callbacks.append(TQDMProgressBar())
    if cfg.get("logger"):
        callbacks.append(LearningRatePerGroup())  # lr/<parameter group>, e.g. lr/explicit
    if _norm_stats(cfg) == "epoch_average":  # model patches: statistics averaged over each epoch
        from kmexp.norm_statistics import EpochAverageNormStatistics

        callbacks.append(EpochAverageNormStatistics())
    if cfg.get("save_init_checkpoint", False):  # KM Fig. 3 compares weights before and after training
        from kmexp.init_checkpoint import SaveInitialCheckpoint

        callbacks.append(SaveInitialCheckpoint(ckpt_dir / "init.ckpt"))
    return callbacks


def _norm_stats(cfg: DictConfig) -> str:
    from kmexp.methods import parse_method

    return parse_method(cfg.method).norm_stats
