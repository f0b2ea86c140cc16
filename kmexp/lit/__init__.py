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


LIGHTNING_MODULES: dict[str, Callable] = {"classification": _classification}


def build_lightning_module(cfg: DictConfig):
    name = cfg.get("lightning_module", "classification")
    if name not in LIGHTNING_MODULES:
        raise ConfigError(f"lightning_module={name!r} is not one of {sorted(LIGHTNING_MODULES)}")
    return LIGHTNING_MODULES[name](cfg)
