"""CIFAR-10 / CIFAR-100 through torchvision (Krizhevsky 2009).

Training augmentation of He et al. 2016 Sec. 4.2: 4-pixel padding, random 32x32 crop,
horizontal flip; per-channel normalisation. Downloads when ``download=true`` and the
network allows; otherwise one clear error names the expected folder.
"""

from __future__ import annotations

from torchvision import datasets, transforms

from kmexp.data.base import ClassificationDataModule, split_train_val

_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


class CIFARDataModule(ClassificationDataModule):
    supports_on_device = True  # kmexp.data.on_device does the same crop, flip and normalisation

    def __init__(self, variant: str = "cifar10", augment: bool = True, **kwargs):
        super().__init__(**kwargs)
        if variant not in _STATS:
            raise ValueError(f"variant must be one of {sorted(_STATS)}")
        self.variant = variant
        self.name = variant
        self.num_classes = 10 if variant == "cifar10" else 100
        self.augment = augment
        mean, std = _STATS[variant]
        norm = [transforms.ToTensor(), transforms.Normalize(mean, std)]
        aug = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()] if augment else []
        self.train_transform = transforms.Compose(aug + norm)
        self.eval_transform = transforms.Compose(norm)

    def device_normalization(self):
        return _STATS[self.variant]

    def device_augment(self) -> bool:
        return self.augment

    def _dataset(self, train: bool, transform):
        cls = datasets.CIFAR10 if self.variant == "cifar10" else datasets.CIFAR100
        try:
            return cls(str(self.root), train=train, transform=transform, download=self.download)
        except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
            raise self._missing(e) from e
        except OSError as e:  # download attempted without network
            raise self._missing(e) from e

    def _missing(self, cause: Exception):
        url = "https://www.cs.toronto.edu/~kriz/cifar.html"
        return self.missing(
            f"the {self.variant} python batches ({cause.__class__.__name__}: {cause})",
            self.root / _FOLDERS[self.variant],
            f"Download and unpack the python version from {url} into {self.root}, or run with dataset.download=true on a machine with internet",
        )

    def prepare_data(self) -> None:
        self._dataset(True, None)
        self._dataset(False, None)

    def build_datasets(self):
        train = self._dataset(True, self.train_transform)
        test = self._dataset(False, self.eval_transform)
        if self.val_size:
            train_eval = self._dataset(True, self.eval_transform)
            train, val = split_train_val(train, train_eval, self.val_size, self.split_seed)
        else:
            val = test
        return train, val, test
