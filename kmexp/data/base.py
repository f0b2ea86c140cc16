"""Shared DataModule plumbing: train/val/test datasets, loaders, a held-out val split."""

from __future__ import annotations

import os
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from kmexp.distributed import eval_sampler
from kmexp.errors import DatasetNotFoundError


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
    """

    num_classes: int
    name: str = "dataset"

    def __init__(self, root: str | None = None, batch_size: int = 128, eval_batch_size: int | None = None,
                 num_workers: int = 0, val_size: int = 0, split_seed: int = 0, download: bool = True,
                 pin_memory: bool = False):
        super().__init__()
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
        return self._loader(self._datasets[0], True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._datasets[1], False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._datasets[2], False)

    def missing(self, what: str, expected: Path, how: str) -> DatasetNotFoundError:
        return DatasetNotFoundError(
            f"{self.name}: {what} not found at {expected}. {how} "
            f"(or point dataset.root / $KMEXP_DATA at a local copy)"
        )
