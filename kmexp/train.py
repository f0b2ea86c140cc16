"""Train and test one configuration: ``python -m kmexp.train [overrides]``.

Examples::

    python -m kmexp.train                                  # KM, ResNet-32, bundled digits
    python -m kmexp.train experiment=table1/cifar10 method=km seed=3   # Table I, KM cell
    python -m kmexp.train -m method=full,bl,km seed=0,1,2  # a local sweep
    python -m kmexp.train ...                              # rerun: resumes from last.ckpt

The run directory is derived from the command-line overrides (not a timestamp), so
re-running a command finds its own checkpoints: an interrupted run resumes, a finished one
is not retrained (:mod:`kmexp.runs`). Each run writes ``summary.json``
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
from kmexp.errors import ConfigError, ExistingRunError, KmexpError
from kmexp.hydra_mode import compose_once
from kmexp.resources import hydra_config_path
from kmexp.runs.run_lock import RunLockedError

log = logging.getLogger("kmexp.train")
register_resolvers()
compose_once()  # Hydra would compose every run's config twice (kmexp.hydra_mode)


def run(cfg: DictConfig) -> dict:
    """Fit, test, write summary.json and the task patch; return the summary."""
    from kmexp.lit.summary import write_summary
    from kmexp.runs.session import RunSession
    from kmexp.validate import validate_config

    validate_config(cfg)
    run_dir = Path(cfg.paths.run_dir)
    # interruption-safe runs (kmexp/runs): lock, resume decision, signals, preemption
    with RunSession(cfg, write_summary) as session:
        if session.finished:
            return session.summary
        return _fit_and_test(cfg, run_dir, session)


def _fit_and_test(cfg: DictConfig, run_dir: Path, session) -> dict:
    import pytorch_lightning as pl

    from kmexp.components import describe
    from kmexp.distributed import split_global_batch
    from kmexp.lit import build_lightning_module
    from kmexp.lit.callbacks import build_callbacks, build_loggers
    from kmexp.lit.summary import RunSummary
    from kmexp.validate import refuse_best_on_test

    summary = RunSummary(cfg, run_dir)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = hydra.utils.instantiate(cfg.dataset.datamodule)
    refuse_best_on_test(cfg.test_ckpt, datamodule)
    module = build_lightning_module(cfg)
    module.nan_check_every_n_steps = cfg.get("nan_check_every_n_steps")
    module.memory_format, module.compile = cfg.get("memory_format"), cfg.get("compile")  # kmexp/lit/speed.py
    log.info("%s (%s on %s, method %s)", describe(module.net), cfg.backbone.name, cfg.dataset.name, module.method.name)

    trainer = hydra.utils.instantiate(
        cfg.trainer,
        default_root_dir=str(run_dir),
        logger=build_loggers(cfg, run_dir) or False,
        callbacks=[*build_callbacks(cfg, run_dir / "checkpoints"), summary, *session.callbacks()],
        plugins=session.plugins(),
        enable_progress_bar=cfg.callbacks.progress_bar != "none",
    )
    split_global_batch(datamodule, trainer.world_size)  # presets give the global batch (kmexp.distributed)
    session.prepare(datamodule, trainer.loggers)
    trainer.fit(module, datamodule=datamodule, ckpt_path=session.ckpt_path, weights_only=True)
    trainer.test(module, datamodule=datamodule, ckpt_path="best" if cfg.test_ckpt == "best" else None, verbose=False,
                 weights_only=True)
    log.info("rank %d of %d finished", trainer.global_rank, trainer.world_size)

    result = summary.summary or {"status": "finished", "test/acc": float("nan")}  # None off rank 0
    if trainer.is_global_zero:
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
        from kmexp.distributed import is_global_zero
        from kmexp.run_dirs import discard_if_fresh

        log.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        try:
            from kmexp.lit.summary import write_summary

            if isinstance(e, ConfigError) and discard_if_fresh(Path(cfg.paths.run_dir), Path(cfg.paths.log_dir)):
                pass  # refused before it started: leave no run directory behind
            elif not isinstance(e, (ExistingRunError, RunLockedError)) and is_global_zero():  # else: someone else's run
                write_summary(Path(cfg.paths.run_dir), {"status": "failed", "error": str(e), "seed": cfg.get("seed")}, cfg)
        except Exception:  # noqa: BLE001 - the original error is what matters
            pass
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        sys.exit(1)
    finally:
        _finish_wandb()


if __name__ == "__main__":
    from kmexp.wandb_utils import with_sweep_name

    sys.argv = with_sweep_name(sys.argv)  # W&B groups a -m sweep's runs together
    main()
