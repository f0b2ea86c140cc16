"""Multi-device (DDP) semantics: one global batch, side effects on global rank 0 only.

**Batch size.** Every preset's batch size is the *global* batch of the paper (e.g. 128
images per SGD step for the CIFAR ResNets, 32 tasks per meta-update for MAML on
Omniglot). Under DDP it is split evenly across the ``trainer.devices x trainer.num_nodes``
processes, so a preset trains with the same hyperparameters on 1, 2 or 8 GPUs; a global
batch that does not divide is refused. Evaluation batches are split the same way (rounded
up), and evaluation samplers never repeat examples, so a DDP test accuracy equals the
single-process one. If you change the global batch yourself, scale the learning rate
linearly with it (Goyal et al. 2017, "Accurate, large minibatch SGD": lr x k for a k
times larger batch, with warm-up beyond ~8k images) — the presets' learning rates belong
to their global batch.

**Rank 0.** Summary, patches, result files and W&B run set-up happen on global rank 0
only (:func:`is_global_zero`); the other ranks train, evaluate and exit 0.
"""

from __future__ import annotations

import math
import os

from kmexp.errors import ConfigError

# datamodule attributes holding a training batch (must divide) and an evaluation batch (rounded up)
TRAIN_BATCH_KEYS = ("batch_size", "meta_batch_size")
EVAL_BATCH_KEYS = ("eval_batch_size", "eval_meta_batch_size")


def global_rank() -> int:
    """This process's global rank, from the launcher's environment (before the trainer exists)."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def is_global_zero(trainer=None) -> bool:
    return trainer.is_global_zero if trainer is not None else global_rank() == 0


def world_size_of(trainer_cfg) -> int | None:
    """``devices x num_nodes`` when the config states it as numbers (None for ``auto`` / lists)."""
    devices, nodes = trainer_cfg.get("devices", 1), trainer_cfg.get("num_nodes", 1)
    if not isinstance(devices, (int, str)) and hasattr(devices, "__len__"):  # a list of device ids
        devices = len(devices)
    if isinstance(devices, int) and devices > 0 and isinstance(nodes, int) and nodes > 0:
        return devices * nodes
    return None


def _parts(datamodule) -> list:
    """The datamodule, or the per-stream datamodules of a multi-task one (built on demand)."""
    if hasattr(type(datamodule), "streams"):
        datamodule.streams  # noqa: B018 - builds the per-stream datamodules
        return list(datamodule.datamodules.values())
    return [datamodule]


def split_global_batch(datamodule, world_size: int) -> dict[str, int]:
    """Turn the datamodule's global batch sizes into per-device ones (in place); returns them.

    Raises ConfigError when a training batch does not divide by ``world_size``.
    """
    per_device = {}
    if world_size <= 1:
        return per_device
    if getattr(datamodule, "overrides", {}).get("batch_size"):  # multi-task: one size for every stream
        _check_divisible("dataset.datamodule.batch_size", datamodule.overrides["batch_size"], world_size)
        datamodule.overrides["batch_size"] //= world_size
    for dm in _parts(datamodule):
        for key in TRAIN_BATCH_KEYS:
            value = getattr(dm, key, None)
            if isinstance(value, int) and value > 0:
                _check_divisible(f"dataset.datamodule.{key}", value, world_size)
                setattr(dm, key, value // world_size)
                per_device[key] = value // world_size
        for key in EVAL_BATCH_KEYS:
            value = getattr(dm, key, None)
            if isinstance(value, int) and value > 0:
                setattr(dm, key, math.ceil(value / world_size))
    return per_device


def _check_divisible(key: str, value: int, world_size: int) -> None:
    if value % world_size:
        raise ConfigError(
            f"{key}={value} is the global batch and must divide by the {world_size} devices "
            f"(trainer.devices x trainer.num_nodes); allowed: a multiple of {world_size}"
        )


def eval_sampler(dataset):
    """A sampler for evaluation loaders under DDP that splits the data without repeating any
    example (Lightning's default pads with repeats); None outside DDP."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return None
    from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler

    return UnrepeatedDistributedSampler(dataset, shuffle=False)
