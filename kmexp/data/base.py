"""Shared DataModule plumbing: train/val/test datasets, loaders, a held-out val split."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from kmexp.distributed import eval_sampler
from kmexp.errors import ConfigError, DatasetNotFoundError

log = logging.getLogger(__name__)


def default_data_root() -> Path:
    """``$KMEXP_DATA`` if set, else ``./data`` (configs override with ``dataset.root``)."""
    return Path(os.environ.get("KMEXP_DATA", "data"))


def split_train_val(dataset_train: Dataset, dataset_eval: Dataset, val_size: int, seed: int):
    """Hold out ``val_size`` training examples (fixed by ``seed``), evaluated with ``dataset_eval``
    (the same data without augmentation). Returns (train, val)."""
    n = len(dataset_train)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(dataset_train, perm[val_size:]), Subset(dataset_eval, perm[:val_size])


class ClassificationDataModule(pl.LightningDataModule):
    """Base class: subclasses implement :meth:`build_datasets` returning (train, val, test).

    ``val_size=0`` means there is no held-out split and validation runs on the test set
    (as in the original CIFAR ResNet schedule, which trains on all 50k images); tables
    then report the *last* checkpoint, never the best-on-test one.

    ``on_device``: keep every split as one tensor on the training device and augment with
    batched tensor ops (:mod:`kmexp.data.on_device`) instead of DataLoader workers.
    ``None`` (default) turns it on when training on a GPU and the dataset supports it
    (subclasses with ``supports_on_device = True``: CIFAR-10/100, digits); ``true`` asks
    for it on any device; ``false`` keeps the torchvision pipeline.
    """

    num_classes: int
    name: str = "dataset"
    supports_on_device: bool = False

    def __init__(self, root: str | None = None, batch_size: int = 128, eval_batch_size: int | None = None,
                 num_workers: int = 0, val_size: int = 0, split_seed: int = 0, download: bool = True,
                 pin_memory: bool = False, on_device: bool | None = None, shuffle_seed: int | None = None):
        super().__init__()
        if on_device and not self.supports_on_device:
            raise ConfigError(f"dataset.datamodule.on_device=true: {self.name} cannot be held on the device "
                              "(supported: cifar10, cifar100, digits)")
        self.on_device = on_device
        self.shuffle_seed = shuffle_seed
        self.root = Path(root) if root else default_data_root()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.val_size = val_size
        self.split_seed = split_seed
        self.download = download
        self.pin_memory = pin_memory
        self._datasets = None

    def build_datasets(self) -> tuple[Dataset, Dataset, Dataset]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self._datasets is None:
            self._datasets = self.build_datasets()

    @property
    def validates_on_test(self) -> bool:
        """True when there is no held-out split and validation runs on the test set."""
        self.setup()
        return self._datasets[1] is self._datasets[2]

    def device_normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """(mean, std) applied on the device after scaling uint8 to [0, 1]; None: stored as is."""
        return None

    def device_augment(self) -> bool:
        """Whether on-device training batches get the crop + flip of :mod:`kmexp.data.on_device`."""
        return False

    def _training_device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def uses_device_data(self) -> bool:
        if self.on_device is None:
            return self.supports_on_device and self._training_device().type == "cuda"
        return bool(self.on_device)

    def _device_loader(self, index: int, train: bool):
        from kmexp.data.on_device import DeviceBatches, DeviceImages, dataset_tensors

        if not hasattr(self, "_device_splits"):
            self._device_splits = {}
        key = id(self._datasets[index])  # val and test may be one dataset: one copy on the device
        if key not in self._device_splits:
            norm = self.device_normalization()
            mean, std = norm if norm else (None, None)
            split = DeviceImages(*dataset_tensors(self._datasets[index]), self._training_device(), mean, std)
            self._device_splits[key] = split
            log.info("%s split %d on the device: %s images %s on %s", self.name, index, len(split),
                     tuple(split.images.shape[1:]), split.device)
        trainer = getattr(self, "trainer", None)
        seed = self.shuffle_seed if self.shuffle_seed is not None else torch.initial_seed()
        return DeviceBatches(
            self._device_splits[key], self.batch_size if train else self.eval_batch_size,
            shuffle=train, augment=train and self.device_augment(), seed=seed % 2**31,
            epoch=(lambda: trainer.current_epoch) if trainer is not None else None,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
        )

    def _split_loader(self, index: int, train: bool):
        if self.uses_device_data():
            return self._device_loader(index, train)
        return self._loader(self._datasets[index], train)

    def _loader(self, ds: Dataset, train: bool) -> DataLoader:
        sampler = None if train else eval_sampler(ds)  # DDP: split evaluation data without repeats
        return DataLoader(
            ds,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            sampler=sampler,
            drop_last=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._split_loader(0, True)

    def val_dataloader(self) -> DataLoader:
        return self._split_loader(1, False)

    def test_dataloader(self) -> DataLoader:
        return self._split_loader(2, False)

    def missing(self, what: str, expected: Path, how: str) -> DatasetNotFoundError:
        return DatasetNotFoundError(
            f"{self.name}: {what} not found at {expected}. {how} "
            f"(or point dataset.root / $KMEXP_DATA at a local copy)"
        )
