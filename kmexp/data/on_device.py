"""Small-image datasets resident on the training device, augmented as batched tensor ops.

For 32x32 data (CIFAR-10/100, the bundled digits) a DataLoader whose workers do PIL crops
and flips per image caps at a few thousand images per second per core, far below what a
GPU trains a CIFAR ResNet at. Here the whole split is one tensor on the device (uint8 for
CIFAR: 150 MB for 50k images) and every batch is made by indexing it:

- a permutation per epoch, drawn from ``(seed, epoch)`` (so a resumed run sees the same
  order as an uninterrupted one);
- the augmentation of He et al. 2016 Sec. 4.2 (random 32x32 crop of the image zero-padded
  by 4 pixels, horizontal flip with probability 1/2) as one gather per batch;
- the per-channel normalisation of the torchvision pipeline (``ToTensor`` then
  ``Normalize``), done with the same float32 operations in the same order, so without
  augmentation the pixels equal the torchvision ones.

The random numbers (order, offsets, flips) are drawn on the CPU from a seeded generator,
so a seed gives the same batches on every device. With several processes (DDP) each rank
takes every ``world_size``-th index of the permutation.

:class:`kmexp.data.base.ClassificationDataModule` switches to these loaders with
``dataset.datamodule.on_device=true`` (default: on when the training device is a GPU);
the torchvision pipeline remains the reference path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

PAD = 4  # He et al. 2016 Sec. 4.2: "4 pixels are padded on each side"


def dataset_tensors(ds: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of a dataset as tensors, images as (N, C, H, W).

    Understands ``TensorDataset`` (digits), torchvision's in-memory datasets with ``data``
    (N, H, W, C uint8) and ``targets`` (CIFAR), and ``Subset`` of either.
    """
    if isinstance(ds, Subset):
        x, y = dataset_tensors(ds.dataset)
        idx = torch.as_tensor(ds.indices, dtype=torch.long)
        return x[idx], y[idx]
    if isinstance(ds, TensorDataset):
        x, y = ds.tensors[:2]
        return x, y.long()
    data, targets = getattr(ds, "data", None), getattr(ds, "targets", None)
    if data is None or targets is None:
        raise TypeError(f"{type(ds).__name__} holds no in-memory data/targets: it cannot live on the device")
    x = torch.as_tensor(data)
    if x.dim() == 3:
        x = x.unsqueeze(-1)
    return x.permute(0, 3, 1, 2).contiguous(), torch.as_tensor(targets, dtype=torch.long)


class DeviceImages:
    """One split on ``device``: images (uint8 or float), labels and the normalisation.

    ``mean``/``std`` apply after scaling uint8 images to [0, 1] (as ``ToTensor`` does);
    ``None`` leaves the images as stored (digits are stored standardised).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, device: torch.device | str,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        shape = (1, -1, 1, 1)
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32, device=self.device).view(shape)
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32, device=self.device).view(shape)

    def __len__(self) -> int:
        return len(self.labels)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div(255)  # ToTensor
        if self.mean is not None:
            x = x.sub(self.mean).div(self.std)  # Normalize
        return x


def crop_flip(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, pad: int = PAD) -> torch.Tensor:
    """Batched ``RandomCrop(size, padding=pad)`` + ``RandomHorizontalFlip``.

    ``offsets`` (B, 2) are the crop's (dy, dx) in [-pad, pad] relative to the unpadded image
    (0 = centre), ``flips`` (B,) bool. Padding is zeros, as torchvision's default ``fill=0``.
    """
    b, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    dev = images.device
    offsets = offsets.to(dev) + pad
    rows = offsets[:, :1] + torch.arange(h, device=dev)  # (B, H)
    cols = torch.arange(w, device=dev).expand(b, w)
    cols = torch.where(flips.to(dev)[:, None], cols.flip(1), cols) + offsets[:, 1:]  # (B, W)
    bi = torch.arange(b, device=dev)[:, None, None, None]
    ci = torch.arange(c, device=dev)[None, :, None, None]
    return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


class DeviceBatches:
    """An iterable of (images, labels) batches over a :class:`DeviceImages` split.

    Training (``shuffle=True``): a fresh permutation per epoch and, with ``augment``, crop +
    flip; ``epoch`` (a callable, e.g. the trainer's current epoch) picks the epoch, else an
    internal counter advances on every iteration. Evaluation: in order, no augmentation.
    """

    def __init__(self, split: DeviceImages, batch_size: int, shuffle: bool = False, augment: bool = False,
                 seed: int = 0, epoch: Callable[[], int] | None = None, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False):
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.seed = seed
        self.epoch = epoch
        self.rank, self.world_size = rank, world_size
        self.drop_last = drop_last
        self._iterations = 0

    def _num_samples(self) -> int:
        n = len(self.split)
        return (n - self.rank + self.world_size - 1) // self.world_size

    def __len__(self) -> int:
        n = self._num_samples()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch_generator(self, epoch: int) -> torch.Generator:
        # distinct, reproducible stream per (seed, epoch)
        return torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.epoch() if self.epoch is not None else self._iterations
        self._iterations += 1
        n = len(self.split)
        g = self.epoch_generator(epoch)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        order = order[self.rank :: self.world_size]
        if self.augment:
            offsets = torch.randint(-PAD, PAD + 1, (len(order), 2), generator=g)
            flips = torch.rand(len(order), generator=g) < 0.5
        order = order.to(self.split.device)
        for i in range(len(self)):
            sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
            idx = order[sl]
            x = self.split.images[idx]
            if self.augment:
                x = crop_flip(x, offsets[sl], flips[sl])
            yield self.split.normalize(x), self.split.labels[idx]
