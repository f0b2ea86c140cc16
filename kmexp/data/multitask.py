"""Several classification datasets trained at once (model patches Sec. 5.3 multi-task learning,
Sec. 5.4 multi-resolution domain adaptation).

A task is a dataset config (``configs/dataset/*.yaml``) plus task options::

    multitask:
      tasks:
        imagenet:  {dataset: <configs/dataset/imagenet.yaml>}
        places365: {dataset: <configs/dataset/places365.yaml>}
        digits_b:  {dataset: <digits>, relabel_seed: 1}   # the same images, labels permuted

with ``dataset=multitask``, whose datamodule (:class:`MultiTaskDataModule`) combines them.
Tasks whose data is identical (equal dataset config and ``relabel_seed``) share one
*stream*: one loader whose batches all of them see. Training batches are dicts
``{stream: (x, y)}`` from a :class:`CombinedLoader` (``max_size_cycle``: an epoch is the
longest stream, shorter ones start over; or ``min_size``); validation and test go through
the streams one after the other, so every task is evaluated on its own full split.

Tasks may also leave out ``dataset``: then every task reads the run's own dataset (any
``dataset=...``), one stream. The five resolutions of Sec. 5.4 are five such tasks on
ImageNet, each resizing the batch to its ``input_size``::

    multitask:
      tasks: {res224: {input_size: 224}, res192: {input_size: 192}, ...}
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import hydra
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import CombinedLoader
from torch.utils.data import Dataset

from kmexp.data.base import ClassificationDataModule
from kmexp.errors import ConfigError, KmexpError

TRAIN_MODES = ("max_size_cycle", "min_size")
TASK_KEYS = ("dataset", "input_size", "relabel_seed", "loss_weight", "lr_scale")


@dataclass(frozen=True)
class TaskSpec:
    """One task of a multi-task run.

    Attributes:
        name: task id (a key of ``multitask.tasks``; used in metric names ``val/<name>/acc``).
        num_classes: the task's classes.
        dataset: the task's dataset config (``name``, ``num_classes``, ``datamodule``); ``None``:
            the run's own dataset.
        input_size: resize inputs to this square size before the network (Sec. 5.4, bilinear).
        relabel_seed: permute the class labels with this seed (a new task from the same images).
        loss_weight: weight of the task's loss in the summed loss (1 = the paper's equal workers).
        lr_scale: multiplies the learning rate of the task's private patch.
    """

    name: str
    num_classes: int
    dataset: dict | None = None
    input_size: int | None = None
    relabel_seed: int | None = None
    loss_weight: float = 1.0
    lr_scale: float = 1.0

    @property
    def data_key(self) -> str:
        """Equal for tasks that read exactly the same examples and labels."""
        return json.dumps([self.dataset, self.relabel_seed], sort_keys=True, default=str)


def parse_tasks(tasks: dict | None, run_num_classes: int | None = None) -> list[TaskSpec]:
    """Task specs from ``multitask.tasks`` (a mapping name -> options), in config order.

    ``run_num_classes``: classes of the run's own dataset, for tasks without a ``dataset``
    (``None``: every task must name its dataset).
    """
    if not tasks:
        raise ConfigError(
            "multi-task training needs tasks: add them with +dataset@multitask.tasks.<name>.dataset=<dataset> "
            "(or use a preset, e.g. experiment=digits/mp_multitask_sb)"
        )
    specs = []
    for name, opts in tasks.items():
        if "." in name or "/" in name or not name:
            raise ConfigError(f"multitask task name {name!r} must not be empty or contain '.' or '/'")
        opts = dict(opts or {})
        unknown = sorted(set(opts) - set(TASK_KEYS))
        if unknown:
            raise ConfigError(f"multitask.tasks.{name}: unknown option(s) {unknown}; choose from {list(TASK_KEYS)}")
        dataset = opts.get("dataset")
        if dataset is None and run_num_classes is not None:
            if opts.get("relabel_seed") is not None:
                raise ConfigError(f"multitask.tasks.{name}: relabel_seed needs the task's own dataset")
            num_classes = run_num_classes
        elif isinstance(dataset, dict) and "datamodule" in dataset and dataset.get("num_classes") is not None:
            num_classes = int(dataset["num_classes"])
        else:
            raise ConfigError(
                f"multitask.tasks.{name}.dataset must be a dataset config with num_classes and datamodule "
                f"(set it with +dataset@multitask.tasks.{name}.dataset=<dataset> and use dataset=multitask)"
            )
        specs.append(TaskSpec(name, num_classes, dataset, opts.get("input_size"), opts.get("relabel_seed"),
                              float(opts.get("loss_weight", 1.0)), float(opts.get("lr_scale", 1.0))))
    if len({s.dataset is None for s in specs}) > 1:
        raise ConfigError(
            "either every task names its dataset (with dataset=multitask) or none does (then all read the "
            "run's dataset): multitask.tasks mixes both"
        )
    return specs


def group_streams(specs: list[TaskSpec]) -> dict[str, list[str]]:
    """stream name (its first task's name) -> names of the tasks that read it."""
    streams: dict[str, list[str]] = {}
    first_of: dict[str, str] = {}
    for s in specs:
        stream = first_of.setdefault(s.data_key, s.name)
        streams.setdefault(stream, []).append(s.name)
    return streams


def label_permutation(num_classes: int, seed: int) -> torch.Tensor:
    return torch.randperm(num_classes, generator=torch.Generator().manual_seed(seed))


class RelabeledDataset(Dataset):
    """``dataset`` with every label ``y`` replaced by ``permutation[y]``."""

    def __init__(self, dataset: Dataset, permutation: torch.Tensor):
        self.dataset = dataset
        self.permutation = permutation

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        x, y = self.dataset[i]
        return x, int(self.permutation[int(y)])


def _instantiate(cfg: dict, overrides: dict) -> pl.LightningDataModule:
    """A task's datamodule; a configuration error of it surfaces as itself, not wrapped by Hydra."""
    from hydra.errors import InstantiationException

    try:
        return hydra.utils.instantiate(cfg, **overrides)
    except InstantiationException as e:
        if isinstance(e.__cause__, KmexpError):
            raise e.__cause__ from None
        raise


class MultiTaskDataModule(pl.LightningDataModule):
    """One datamodule per stream, combined.

    Args:
        tasks: ``multitask.tasks`` (see the module docstring).
        batch_size / num_workers: if set, override every stream's own setting.
        train_mode: ``max_size_cycle`` or ``min_size`` (Lightning's CombinedLoader modes).
    """

    name = "multitask"

    def __init__(self, tasks: dict | None, batch_size: int | None = None, num_workers: int | None = None,
                 train_mode: str = "max_size_cycle"):
        super().__init__()
        # Checked and built on first use, not here: errors raised while Hydra instantiates this
        # class would reach the user wrapped in a traceback instead of as one clear message.
        self.tasks, self.train_mode = tasks, train_mode
        self.overrides = {k: v for k, v in (("batch_size", batch_size), ("num_workers", num_workers)) if v is not None}
        self._streams: dict[str, list[str]] | None = None
        self._relabeled = False

    def _build(self) -> None:
        if self._streams is not None:
            return
        if self.train_mode not in TRAIN_MODES:
            raise ConfigError(f"dataset.datamodule.train_mode={self.train_mode!r} is not one of {list(TRAIN_MODES)}")
        from omegaconf import DictConfig, OmegaConf

        tasks = OmegaConf.to_container(self.tasks, resolve=True) if isinstance(self.tasks, DictConfig) else self.tasks
        self.specs = parse_tasks(tasks)
        by_name = {s.name: s for s in self.specs}
        streams = group_streams(self.specs)
        self.datamodules: dict[str, pl.LightningDataModule] = {
            stream: _instantiate(by_name[stream].dataset["datamodule"], self.overrides) for stream in streams
        }
        self.permutations = {
            stream: label_permutation(by_name[stream].num_classes, by_name[stream].relabel_seed)
            for stream in streams if by_name[stream].relabel_seed is not None
        }
        self._streams = streams

    @property
    def streams(self) -> dict[str, list[str]]:
        """stream name -> the tasks reading it."""
        self._build()
        return self._streams

    @property
    def stream_names(self) -> list[str]:
        """Streams in loader order (``dataloader_idx`` of validation and test batches)."""
        return list(self.streams)

    def prepare_data(self) -> None:
        self._build()
        for dm in self.datamodules.values():
            dm.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        self._build()
        for dm in self.datamodules.values():
            dm.setup(stage)
        if not self._relabeled:
            for stream, perm in self.permutations.items():
                dm = self.datamodules[stream]
                if not isinstance(dm, ClassificationDataModule):
                    raise ConfigError(f"relabel_seed needs a kmexp ClassificationDataModule, got {type(dm).__name__}")
                dm._datasets = tuple(RelabeledDataset(d, perm) for d in dm._datasets)  # train, val, test
            self._relabeled = True

    def _loaders(self, split: str) -> dict:
        return {stream: getattr(dm, f"{split}_dataloader")() for stream, dm in self.datamodules.items()}

    def train_dataloader(self) -> CombinedLoader:
        return CombinedLoader(self._loaders("train"), mode=self.train_mode)

    def val_dataloader(self) -> CombinedLoader:
        return CombinedLoader(self._loaders("val"), mode="sequential")

    def test_dataloader(self) -> CombinedLoader:
        return CombinedLoader(self._loaders("test"), mode="sequential")
