"""summary.json and the task patch of a run, written by a Lightning callback after testing.

``summary.json`` holds the test metrics, the module's figures
(:meth:`kmexp.lit.base.MethodModule.summary`: parameter counts, method, components ...),
what ran and on what (backbone, dataset, seed, experiment, epochs, steps, hardware,
duration, command-line overrides), the recovered accuracy ratio of KM Table I
(test accuracy / ``reference_accuracy``) and the resolved config. ``patch.safetensors``
is the task patch (:mod:`kmexp.patches`). Every logger gets the final figures; on W&B
they also become the run summary, with the full config (see :func:`publish_summary`).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf


def hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


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
    """``<run_dir>/summary.json`` (written atomically), with the resolved config."""
    run_dir.mkdir(parents=True, exist_ok=True)
    summary = dict(summary, config=OmegaConf.to_container(cfg, resolve=True))
    path = run_dir / "summary.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=str))
    tmp.replace(path)
    return path


class RunSummary(pl.Callback):
    """After testing: export the patch, publish the figures, write summary.json (rank 0)."""

    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.started = time.time()
        self.summary: dict | None = None

    def on_test_end(self, trainer: pl.Trainer, module) -> None:
        if not trainer.is_global_zero:
            return
        cfg = self.cfg
        test = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        summary = {
            "status": "finished",
            **test,
            **module.summary(),
            "backbone": cfg.backbone.name,
            "dataset": cfg.dataset.name,
            "seed": int(cfg.seed),
            "experiment": cfg.get("experiment_name"),
            "epochs": int(trainer.current_epoch),
            "global_steps": int(trainer.global_step),
            "hardware": hardware(),
            "world_size": int(trainer.world_size),
            "duration_s": round(time.time() - self.started, 1),
            "run_dir": str(self.run_dir),
            "overrides": list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else [],
        }
        ref = cfg.reference_accuracy
        summary["reference_accuracy"] = ref
        summary["test/recovered_accuracy_ratio"] = summary["test/acc"] / ref if ref else None
        from kmexp.provenance import provenance

        summary.update(provenance())  # git commit, versions, launcher, job id
        if cfg.export_patch:
            from kmexp.patches import export_patch

            method = module.method
            patch = export_patch(
                module.net, self.run_dir / "patch.safetensors", method.name, list(method.components),
                include_norm_stats=method.norm_stats != "frozen",
                backbone=cfg.backbone.name, dataset=cfg.dataset.name, seed=int(cfg.seed),
                # the recipe load_patch rebuilds the model from (kmexp.api, kmexp.patch_compat)
                num_classes=cfg.model.get("num_classes"), recipe=OmegaConf.to_container(cfg.model, resolve=True),
            )
            summary["patch/bytes"] = patch.stat().st_size
        publish_summary(trainer.loggers, summary, cfg)
        write_summary(self.run_dir, summary, cfg)
        self.summary = summary
