"""Train and test one configuration: ``python -m kmexp.train [overrides]``.

Examples::

    python -m kmexp.train                                  # KM, ResNet-32, bundled digits
    python -m kmexp.train experiment=table1/cifar10 method=km seed=3   # Table I, KM cell
    python -m kmexp.train -m method=full,bl,km seed=0,1,2  # a local sweep
    python -m kmexp.train ... resume=true                  # continue from last.ckpt

The run directory is derived from the command-line overrides (not a timestamp), so
re-running a command finds its own checkpoints. Each run writes ``summary.json``
(metrics, parameter counts, what ran and on what) and ``patch.safetensors`` (the task
patch) into it (:mod:`kmexp.lit.summary`).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from kmexp.config import register_resolvers
from kmexp.errors import ExistingRunError, KmexpError
from kmexp.resources import hydra_config_path

log = logging.getLogger("kmexp.train")
register_resolvers()


def run(cfg: DictConfig) -> dict:
    """Fit, test, write summary.json and the task patch; return the summary."""
    import pytorch_lightning as pl

    from kmexp.components import describe
    from kmexp.lit import build_lightning_module
    from kmexp.lit.callbacks import build_callbacks, build_loggers
    from kmexp.lit.summary import RunSummary
    from kmexp.validate import validate_config

    validate_config(cfg)
    run_dir = Path(cfg.paths.run_dir)
    last_ckpt = run_dir / "checkpoints" / "last.ckpt"
    if last_ckpt.exists() and not cfg.resume:
        raise ExistingRunError(
            f"{run_dir} already holds a checkpoint ({last_ckpt.name}). Re-run with resume=true to "
            f"continue it, or pass paths.log_dir=... / a different override to start a new run."
        )
    ckpt_path = str(last_ckpt) if (cfg.resume and last_ckpt.exists()) else None

    summary = RunSummary(cfg, run_dir)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = hydra.utils.instantiate(cfg.dataset.datamodule)
    module = build_lightning_module(cfg)
    log.info("%s (%s on %s, method %s)", describe(module.net), cfg.backbone.name, cfg.dataset.name, module.method.name)

    trainer = hydra.utils.instantiate(
        cfg.trainer,
        default_root_dir=str(run_dir),
        logger=build_loggers(cfg, run_dir) or False,
        callbacks=[*build_callbacks(cfg, last_ckpt.parent), summary],
        enable_progress_bar=cfg.callbacks.progress_bar != "none",
    )
    if ckpt_path:
        log.info("resuming from %s", ckpt_path)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    trainer.test(module, datamodule=datamodule, ckpt_path="best" if cfg.test_ckpt == "best" else None, verbose=False)

    result = summary.summary or {"status": "finished", "test/acc": float("nan")}  # None off rank 0
    log.info("test/acc %.4f; results in %s", result["test/acc"], run_dir)
    print(f"[kmexp] finished: test/acc={result['test/acc']:.4f}  summary: {run_dir / 'summary.json'}")
    return result


def _finish_wandb() -> None:
    # A Hydra multirun runs jobs in one process: without finish() W&B reuses the first run.
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()


@hydra.main(version_base="1.3", config_path=hydra_config_path(), config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        summary = run(cfg)
        return summary["test/acc"]
    except KmexpError as e:
        log.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        try:
            from kmexp.lit.summary import write_summary

            if not isinstance(e, ExistingRunError):
                write_summary(Path(cfg.paths.run_dir), {"status": "failed", "error": str(e), "seed": cfg.get("seed")}, cfg)
        except Exception:  # noqa: BLE001 - the original error is what matters
            pass
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        sys.exit(1)
    finally:
        _finish_wandb()


if __name__ == "__main__":
    main()
