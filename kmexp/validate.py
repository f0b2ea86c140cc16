"""Check a composed config before any work starts, with one clear message per problem.

Three layers, all before a run directory, a trainer or a queued job exists:

1. types and ranges of every value (:mod:`kmexp.schema`);
2. each section's own constructor (method, modulator, RBD, few-shot ``meta``);
3. combinations of groups that cannot mean what they say (:func:`check_combinations`),
   e.g. ``method=maml`` outside meta-learning, or a global batch that does not split
   across the devices (:mod:`kmexp.distributed`).

``kmexp.train`` runs it on every run; ``kmexp.reproduce`` runs it on every run of a table
before it submits the first one (with ``hardware=False``: a login node has no GPUs).
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from kmexp.errors import ConfigError
from kmexp.methods.base import Method, parse_method
from kmexp.modulation import ModulatorConfig
from kmexp.schema import check_schema


def validate_config(cfg: DictConfig, hardware: bool = True) -> None:
    check_schema(cfg)
    method = parse_method(cfg.method)  # parsed again by the LightningModule; here to check combinations
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
    check_combinations(cfg, method)
    if hardware:
        check_hardware(cfg)


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


def in_local_multirun() -> bool:
    """True inside a job of a ``-m`` sweep run by Hydra's basic launcher (in this process)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        return hc.mode == RunMode.MULTIRUN and hc.runtime.choices.get("hydra/launcher") in ("local", "basic")
    except Exception:  # noqa: BLE001 - not inside a Hydra job
        return False


def _datamodule_class(cfg: DictConfig):
    target = OmegaConf.select(cfg, "dataset.datamodule._target_")
    if not target:
        return None
    from hydra.utils import get_class

    try:
        return get_class(target)
    except Exception as e:  # noqa: BLE001 - any import failure is a config problem here
        raise ConfigError(f"dataset.datamodule._target_={target} cannot be imported: {e}") from None


def check_combinations(cfg: DictConfig, method: Method) -> None:
    """Refuse method / module / dataset / trainer combinations that would silently train
    something other than what the command says."""
    from kmexp.lit import lightning_module_class

    module = cfg.get("lightning_module", "classification")
    lightning_module_class(module)  # refuses unknown names
    only = method.lightning_modules  # e.g. maml/anil: meta-learning methods
    if only and module not in only:
        raise ConfigError(
            f"method={method.name} means something only with lightning_module={' or '.join(only)}, "
            f"not lightning_module={module}; use e.g. experiment=glyphs/{method.name}, or method=full"
        )
    dm_class = _datamodule_class(cfg)
    episodic = bool(getattr(dm_class, "episodic", False))
    if module == "fewshot":
        if not episodic:
            raise ConfigError(f"lightning_module=fewshot needs a few-shot dataset (dataset=fewshot_glyphs, omniglot, "
                              f"mini_imagenet), not dataset={cfg.dataset.name}")
        from kmexp.lit.fewshot import MetaConfig, method_inner_components

        meta = MetaConfig.from_dict(OmegaConf.to_container(cfg.meta, resolve=True))
        method_inner_components(method, meta)
        if cfg.dataset.num_classes != meta.ways:
            raise ConfigError(f"dataset.num_classes={cfg.dataset.num_classes} must equal meta.ways={meta.ways}")
    elif episodic:
        raise ConfigError(f"dataset={cfg.dataset.name} yields few-shot tasks: run it with lightning_module=fewshot")
    classes = OmegaConf.select(cfg, "dataset.datamodule.classes", default=None)
    if classes is not None and cfg.dataset.get("num_classes") != len(classes):
        raise ConfigError(f"dataset.datamodule.classes keeps {len(classes)} classes, but dataset.num_classes="
                          f"{cfg.dataset.get('num_classes')}: set num_classes={len(classes)}")
    multitask_data = getattr(dm_class, "name", None) == "multitask"
    if module == "multitask" and cfg.get("multitask") is None:
        raise ConfigError("lightning_module=multitask needs a multitask config: add +multitask=sb_patch_last_layer "
                          "(configs/multitask/) or use a preset")
    if multitask_data and module != "multitask":
        raise ConfigError(f"dataset=multitask combines the tasks of a multi-task run: use lightning_module=multitask, "
                          f"not {module}")
    _check_devices(cfg)


def _check_devices(cfg: DictConfig) -> None:
    from kmexp.distributed import TRAIN_BATCH_KEYS, world_size_of

    trainer = cfg.trainer
    world = world_size_of(trainer)
    if world and world > 1:
        for key in TRAIN_BATCH_KEYS:
            value = OmegaConf.select(cfg, f"dataset.datamodule.{key}")
            if isinstance(value, int) and value % world:
                raise ConfigError(
                    f"dataset.datamodule.{key}={value} is the global batch and must divide by the {world} devices "
                    f"(trainer.devices x trainer.num_nodes); allowed: a multiple of {world}"
                )
        if trainer.get("sync_batchnorm") and trainer.get("accelerator") == "cpu":
            raise ConfigError("trainer.sync_batchnorm=true needs GPUs: with trainer.accelerator=cpu set "
                              "trainer.sync_batchnorm=false")


def check_hardware(cfg: DictConfig) -> None:
    """What only the machine that trains can check (not a login node that submits)."""
    import os

    import torch

    from kmexp.distributed import world_size_of

    world = world_size_of(cfg.trainer) or 1
    if world > 1 and in_local_multirun() and not os.environ.get("SLURM_NTASKS"):
        # Lightning starts the other DDP ranks by re-running this command line, i.e. the whole sweep
        raise ConfigError(f"a {world}-process DDP run cannot be part of a local -m sweep: run it as one command, "
                          "or submit the sweep (kmexp.reproduce --launcher slurm | submitit_local)")

    accel = cfg.trainer.get("accelerator")
    if accel in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={accel} but this machine has no CUDA GPU; allowed here: cpu or auto")
    devices = cfg.trainer.get("devices")
    if accel in ("gpu", "cuda") and isinstance(devices, int) and devices > torch.cuda.device_count():
        raise ConfigError(f"trainer.devices={devices} but this machine has {torch.cuda.device_count()} GPU(s)")
