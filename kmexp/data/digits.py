"""The bundled offline dataset: scikit-learn's handwritten digits (1,797 8x8 images).

Upsampled to 32x32 with 3 identical channels so CIFAR backbones run unchanged. The
train/val/test split (1,197 / 300 / 300) is fixed by ``split_seed``. No download,
no network: this is what ``make train`` and the tests use.

``classes`` keeps only some digits, relabelled ``0..len(classes)-1`` in the given order,
for a transfer pair on real data (the digits profile pretrains on ``[0, 1, 2, 3, 4]`` and
transfers to ``[5, 6, 7, 8, 9]``; configs/dataset/digits_0to4.yaml, digits_5to9.yaml). The
split is made over all 1,797 images first, so every image stays in the same split
whichever classes are kept: the halves' test sets are exactly the full test set's images
of those classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from kmexp.data.base import ClassificationDataModule
from kmexp.errors import ConfigError

NUM_DIGITS = 10


def load_digits_tensor(image_size: int = 32, channels: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """All digits as (N, channels, size, size) float images standardised to mean 0, std 1."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = (x - x.mean()) / x.std()
    return x.expand(-1, channels, -1, -1).contiguous(), torch.tensor(d.target, dtype=torch.long)


def check_classes(classes: Sequence[int] | None) -> list[int] | None:
    """``classes`` as a list of distinct digits, or a :class:`ConfigError` saying what is wrong."""
    if classes is None:
        return None
    try:
        kept = [int(c) for c in classes]
    except (TypeError, ValueError) as e:
        raise ConfigError(f"dataset.datamodule.classes={classes!r} must be a list of digits 0..9") from e
    if not kept or len(set(kept)) != len(kept) or any(not 0 <= c < NUM_DIGITS for c in kept):
        raise ConfigError(f"dataset.datamodule.classes={list(classes)} must be distinct digits in 0..9 (at least one)")
    return kept


class DigitsDataModule(ClassificationDataModule):
    name = "digits"
    supports_on_device = True  # stored standardised, no augmentation: the device only shuffles

    def __init__(self, image_size: int = 32, channels: int = 3, val_size: int = 300, test_size: int = 300,
                 classes: Sequence[int] | None = None, **kwargs):
        super().__init__(val_size=val_size, **kwargs)
        self.image_size = image_size
        self.channels = channels
        self.test_size = test_size
        self.classes = check_classes(classes)
        self.num_classes = len(self.classes) if self.classes else NUM_DIGITS

    def _keep(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> TensorDataset:
        if self.classes is None:
            return TensorDataset(x[index], y[index])
        relabel = torch.full((NUM_DIGITS,), -1, dtype=torch.long)
        relabel[self.classes] = torch.arange(len(self.classes))
        index = index[relabel[y[index]] >= 0]
        return TensorDataset(x[index], relabel[y[index]])

    def build_datasets(self):
        x, y = load_digits_tensor(self.image_size, self.channels)
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(self.split_seed))
        test, val, train = (
            perm[: self.test_size],
            perm[self.test_size : self.test_size + self.val_size],
            perm[self.test_size + self.val_size :],
        )
        test_set = self._keep(x, y, test)
        return self._keep(x, y, train), (self._keep(x, y, val) if len(val) else test_set), test_set
