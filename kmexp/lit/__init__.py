"""LightningModules, selected by the top-level config key ``lightning_module``.

Each entry maps a name to a function ``(cfg) -> LightningModule`` that builds the
module from the composed config using plain containers only (so checkpoints reload).
"""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig, OmegaConf

from kmexp.errors import ConfigError


def _classification(cfg: DictConfig):
    from kmexp.lit.classification import ClassificationModule

    return ClassificationModule(
        model=OmegaConf.to_container(cfg.model, resolve=True),
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        reference_accuracy=cfg.reference_accuracy,
    )


def _fewshot(cfg: DictConfig):
    from kmexp.lit.fewshot import FewShotModule

    return FewShotModule(
        model=OmegaConf.to_container(cfg.model, resolve=True),
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        meta=OmegaConf.to_container(cfg.meta, resolve=True),
    )


LIGHTNING_MODULES: dict[str, Callable] = {"classification": _classification}
LIGHTNING_MODULES["fewshot"] = _fewshot  # episodic meta-learning (KM Table III)


def _multitask(cfg: DictConfig):
    """Multi-task training with private patches (model patches Sec. 5.3/5.4): needs ``multitask``
    (``private``, ``tasks``; configs/multitask/), and ``dataset=multitask`` when tasks name datasets."""
    from kmexp.lit.multitask import MultiTaskModule

    if cfg.get("multitask") is None:
        raise ConfigError(
            "lightning_module=multitask needs a multitask config: add +multitask=sb_patch_last_layer (configs/multitask/) "
            "and tasks with +dataset@multitask.tasks.<name>.dataset=<dataset>, or use a preset"
        )
    return MultiTaskModule(
        model=OmegaConf.to_container(cfg.model, resolve=True),
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        multitask=OmegaConf.to_container(cfg.multitask, resolve=True),
    )


LIGHTNING_MODULES["multitask"] = _multitask


def build_lightning_module(cfg: DictConfig):
    name = cfg.get("lightning_module", "classification")
    if name not in LIGHTNING_MODULES:
        raise ConfigError(f"lightning_module={name!r} is not one of {sorted(LIGHTNING_MODULES)}")
    return LIGHTNING_MODULES[name](cfg)
