"""Check a composed config before any work starts, with one clear message per problem."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from kmexp.errors import ConfigError
from kmexp.modulation import ModulatorConfig


def validate_config(cfg: DictConfig) -> None:
    """The method itself is parsed (and checked) once, by the LightningModule."""
    ModulatorConfig.from_dict(OmegaConf.to_container(cfg.modulator, resolve=True))
    if cfg.optim.get("name") == "rbd":
        from kmexp.optim.rbd import RBDConfig

        RBDConfig.from_optim(OmegaConf.to_container(cfg.optim, resolve=True))
    if cfg.test_ckpt not in ("last", "best"):
        raise ConfigError(f"test_ckpt={cfg.test_ckpt!r} must be 'last' or 'best'")
    ref = cfg.get("reference_accuracy")
    if ref is not None and not 0 < float(ref) <= 1:
        raise ConfigError(f"reference_accuracy={ref!r} must be a fraction in (0, 1]")
    if cfg.callbacks.progress_bar not in ("rich", "tqdm", "none"):
        raise ConfigError(f"callbacks.progress_bar={cfg.callbacks.progress_bar!r} must be rich, tqdm or none")
