"""Train and test one configuration: ``python -m kmexp.train [overrides]``.

Examples::

    python -m kmexp.train                                  # KM, ResNet-32, bundled digits
    python -m kmexp.train experiment=table1/km seed=3      # Table I, KM row
    python -m kmexp.train -m method=full,bl,km seed=0,1,2  # a local sweep
    python -m kmexp.train ... resume=true                  # continue from last.ckpt

The run directory is derived from the command-line overrides (not a timestamp), so
re-running a command finds its own checkpoints. Each run writes ``summary.json``
(metrics, parameter counts, what ran and on what) and ``patch.safetensors`` (the task
patch) into it.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from kmexp.config import register_resolvers
from kmexp.errors import ExistingRunError, KmexpError
from kmexp.resources import hydra_config_path

log = logging.getLogger("kmexp.train")
register_resolvers()


def hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def build_loggers(cfg: DictConfig, run_dir: Path) -> list:
    from kmexp.wandb_utils import prepare_wandb

    loggers = []
    for name, lcfg in (cfg.get("logger") or {}).items():
        if lcfg is None:
            continue
        if name == "wandb":
            lcfg = prepare_wandb(lcfg, run_dir)
        loggers.append(hydra.utils.instantiate(lcfg))
    return loggers


def build_callbacks(cfg: DictConfig, ckpt_dir: Path) -> list:
    from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar, TQDMProgressBar

    c = cfg.callbacks
    callbacks = [
        ModelCheckpoint(
            dirpath=str(ckpt_dir),
            filename="best-epoch{epoch:03d}",
            auto_insert_metric_name=False,
            monitor=c.checkpoint.monitor,
            mode=c.checkpoint.mode,
            save_top_k=1,
            save_last=True,
            every_n_epochs=1,
        )
    ]
    if c.progress_bar == "rich":
        callbacks.append(RichProgressBar())
    elif c.progress_bar == "tqdm":
        callbacks.append(TQDMProgressBar())
    if cfg.get("logger"):
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    if cfg.get("save_init_checkpoint", False):  # KM Fig. 3 compares weights before and after training
        from kmexp.init_checkpoint import SaveInitialCheckpoint

        callbacks.append(SaveInitialCheckpoint(ckpt_dir / "init.ckpt"))
    return callbacks


def run(cfg: DictConfig) -> dict:
    """Fit, test, write summary.json and the task patch; return the summary."""
    import pytorch_lightning as pl

    from kmexp.components import count_parameters, describe
    from kmexp.lit import build_lightning_module
    from kmexp.patches import export_patch
    from kmexp.validate import validate_config

    started = time.time()
    validate_config(cfg)
    run_dir = Path(cfg.paths.run_dir)
    ckpt_dir = run_dir / "checkpoints"
    last_ckpt = ckpt_dir / "last.ckpt"
    if last_ckpt.exists() and not cfg.resume:
        raise ExistingRunError(
            f"{run_dir} already holds a checkpoint ({last_ckpt.name}). Re-run with resume=true to "
            f"continue it, or pass paths.log_dir=... / a different override to start a new run."
        )
    ckpt_path = str(last_ckpt) if (cfg.resume and last_ckpt.exists()) else None

    pl.seed_everything(cfg.seed, workers=True)
    datamodule = hydra.utils.instantiate(cfg.dataset.datamodule)
    module = build_lightning_module(cfg)
    log.info("%s (%s on %s, method %s)", describe(module.net), cfg.backbone.name, cfg.dataset.name, cfg.method.name)

    trainer = hydra.utils.instantiate(
        cfg.trainer,
        default_root_dir=str(run_dir),
        logger=build_loggers(cfg, run_dir) or False,
        callbacks=build_callbacks(cfg, ckpt_dir),
        enable_progress_bar=cfg.callbacks.progress_bar != "none",
    )
    if ckpt_path:
        log.info("resuming from %s", ckpt_path)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    test_ckpt = "best" if cfg.test_ckpt == "best" else None
    test_metrics = trainer.test(module, datamodule=datamodule, ckpt_path=test_ckpt, verbose=False)[0]

    summary = {
        "status": "finished",
        **{k: float(v) for k, v in test_metrics.items()},
        **count_parameters(module.net),
        "method": cfg.method.name,
        "components": list(cfg.method.components),
        "backbone": cfg.backbone.name,
        "dataset": cfg.dataset.name,
        "seed": int(cfg.seed),
        "experiment": cfg.get("experiment_name"),
        "epochs": int(trainer.current_epoch),
        "global_steps": int(trainer.global_step),
        "hardware": hardware(),
        "duration_s": round(time.time() - started, 1),
        "run_dir": str(run_dir),
        "overrides": list(HydraConfig.get().overrides.task),
    }
    if hasattr(module, "extra_summary"):  # module-specific figures (FLOPs, inner-loop counts ...)
        summary.update(module.extra_summary())
    ref = cfg.reference_accuracy
    summary["reference_accuracy"] = ref
    summary["test/recovered_accuracy_ratio"] = summary["test/acc"] / ref if ref else None
    if cfg.export_patch:
        patch = export_patch(
            module.net, run_dir / "patch.safetensors", cfg.method.name, list(cfg.method.components),
            include_norm_stats=cfg.method.get("norm_stats", "update") == "update",
            backbone=cfg.backbone.name, dataset=cfg.dataset.name, seed=int(cfg.seed),
            num_classes=int(cfg.model.num_classes), recipe=OmegaConf.to_container(cfg.model, resolve=True),
        )
        summary["patch/bytes"] = patch.stat().st_size
    publish_summary(trainer.loggers, summary, cfg)
    write_summary(run_dir, summary, cfg)
    log.info("test/acc %.4f; results in %s", summary["test/acc"], run_dir)
    print(f"[kmexp] finished: test/acc={summary['test/acc']:.4f}  summary: {run_dir / 'summary.json'}")
    return summary


def publish_summary(loggers: list, summary: dict, cfg: DictConfig) -> None:
    """Final figures to every logger; on W&B also as run summary + full config, so a W&B
    table of a sweep (grouped by paper table, job type = row) shows the paper's table."""
    metrics = {k: v for k, v in summary.items() if k.startswith(("params/", "test/", "patch/")) and v is not None}
    for logger in loggers:
        logger.log_metrics(metrics)
        if logger.__class__.__name__ == "WandbLogger":
            run = logger.experiment
            run.config.update({"kmexp": OmegaConf.to_container(cfg, resolve=True)}, allow_val_change=True)
            run.summary.update({**metrics, "method": summary["method"], "seed": summary["seed"]})


def write_summary(run_dir: Path, summary: dict, cfg: DictConfig) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    summary = dict(summary, config=OmegaConf.to_container(cfg, resolve=True))
    path = run_dir / "summary.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=str))
    tmp.replace(path)
    return path


def _finish_wandb() -> None:
    # A Hydra multirun runs jobs in one process: without finish() W&B reuses the first run.
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()


def with_dataset_recipe(cfg: DictConfig) -> DictConfig:
    """Recompose with the dataset's recipe in front of the command line (see kmexp.config)."""
    from kmexp.config import recipe_overrides

    task = list(HydraConfig.get().overrides.task)
    extra = recipe_overrides(cfg, task)
    if not extra:
        return cfg
    log.info("dataset %s recipe: %s", cfg.dataset.name, " ".join(extra))
    return hydra.compose(config_name="train", overrides=[*extra, *task])


@hydra.main(version_base="1.3", config_path=hydra_config_path(), config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        cfg = with_dataset_recipe(cfg)
        summary = run(cfg)
        return summary["test/acc"]
    except KmexpError as e:
        log.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        try:
            run_dir = Path(cfg.paths.run_dir)
            if not isinstance(e, ExistingRunError):
                write_summary(run_dir, {"status": "failed", "error": str(e), "seed": cfg.get("seed")}, cfg)
        except Exception:  # noqa: BLE001 - the original error is what matters
            pass
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        sys.exit(1)
    finally:
        _finish_wandb()


if __name__ == "__main__":
    main()
