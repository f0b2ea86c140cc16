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


def refuse_best_on_test(test_ckpt: str, datamodule) -> None:
    """``test_ckpt=best`` selects the checkpoint with the best validation accuracy; when the
    validation set *is* the test set, that is model selection on the test set. Refused."""
    if test_ckpt == "best" and getattr(datamodule, "validates_on_test", False):
        name = getattr(datamodule, "name", type(datamodule).__name__)
        raise ConfigError(
            f"test_ckpt=best would select the checkpoint on the test set: {name} has no held-out validation "
            f"split, so validation runs on the test split. Use test_ckpt=last, or hold out a validation split "
            f"from the training set with dataset.datamodule.val_size=<images>"
        )
