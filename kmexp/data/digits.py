"""The bundled offline dataset: scikit-learn's handwritten digits (1,797 8x8 images).

Upsampled to 32x32 with 3 identical channels so CIFAR backbones run unchanged. The
train/val/test split (1,197 / 300 / 300) is fixed by ``split_seed``. No download,
no network: this is what ``make train`` and the tests use.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from kmexp.data.base import ClassificationDataModule


def load_digits_tensor(image_size: int = 32, channels: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """All digits as (N, channels, size, size) float images standardised to mean 0, std 1."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = (x - x.mean()) / x.std()
    return x.expand(-1, channels, -1, -1).contiguous(), torch.tensor(d.target, dtype=torch.long)


class DigitsDataModule(ClassificationDataModule):
    num_classes = 10
    name = "digits"
    supports_on_device = True  # stored standardised, no augmentation: the device only shuffles

    def __init__(self, image_size: int = 32, channels: int = 3, val_size: int = 300, test_size: int = 300,
                 **kwargs):
        super().__init__(val_size=val_size, **kwargs)
        self.image_size = image_size
        self.channels = channels
        self.test_size = test_size

    def build_datasets(self):
        x, y = load_digits_tensor(self.image_size, self.channels)
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(self.split_seed))
        test, val, train = (
            perm[: self.test_size],
            perm[self.test_size : self.test_size + self.val_size],
            perm[self.test_size + self.val_size :],
        )
        val = val if len(val) else test
        return TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val]), TensorDataset(x[test], y[test])
