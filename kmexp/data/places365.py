"""Places-365-Standard (Zhou et al. 2017), the second task of model patches' multi-task
experiment (Sec. 5.3, Table 4), at 256x256 ("for Places-365 dataset, we use 256x256 images").

Loads through ``torchvision.datasets.Places365`` from its own layout under ``<root>/places365/``
(the small, 256x256 images; ``small=false`` for the large ones)::

    categories_places365.txt  places365_train_standard.txt  places365_val.txt
    data_256_standard/a/airfield/00000001.jpg ...              (1.8M training images)
    val_256/Places365_val_00000001.jpg ...                     (36,500 validation images)

``download=true`` lets torchvision fetch it where the network allows. The paper reports
validation accuracy, so ``val`` is the test split here (validation too, unless
``val_size > 0`` holds out training images). ``verify_checksums=false`` skips
torchvision's MD5 check of the three list files (for re-packed copies and the tests).
"""

from __future__ import annotations

import os

from torch.utils.data import Dataset
from torchvision import datasets

from kmexp.data.base import ClassificationDataModule, split_train_val
from kmexp.data.transfer import eval_transform, train_transform
from kmexp.errors import DatasetNotFoundError


class _Places365(datasets.Places365):
    """torchvision's Places365 with the MD5 check of the list files optional."""

    def __init__(self, *args, verify_checksums: bool = True, **kwargs):
        self._verify_checksums = verify_checksums
        super().__init__(*args, **kwargs)

    def _check_integrity(self, file: str, md5: str, download: bool) -> bool:
        if self._verify_checksums:
            return super()._check_integrity(file, md5, download)
        if not os.path.isfile(file) and not download:
            raise RuntimeError(f"The file {file} does not exist")
        return os.path.isfile(file)


class Places365DataModule(ClassificationDataModule):
    name = "places365"
    num_classes = 365
    folder = "places365"
    source = ("torchvision downloads it with dataset.datamodule.download=true, or get filelist_places365-standard.tar, "
              "train_256_places365standard.tar and val_256.tar from http://places2.csail.mit.edu and unpack them there")

    def __init__(self, image_size: int = 256, resize_scale: float = 0.08, color_jitter: str = "none",
                 eval_crop_ratio: float = 1.0, small: bool = True, verify_checksums: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.small = small
        self.verify_checksums = verify_checksums
        self.train_transform = train_transform(image_size, resize_scale, color_jitter)
        self.eval_transform = eval_transform(image_size, eval_crop_ratio)

    def _split(self, split: str, transform, download: bool = False) -> Dataset:
        root = self.root / self.folder
        try:
            ds = _Places365(str(root), split=split, small=self.small, download=download, transform=transform,
                            verify_checksums=self.verify_checksums)
        except (RuntimeError, OSError, ValueError) as e:
            raise self.missing(f"the {split} split ({e.__class__.__name__}: {e})", root, self.source) from e
        if len(ds.classes) != self.num_classes:
            raise DatasetNotFoundError(f"{self.name}: {root} lists {len(ds.classes)} categories, expected {self.num_classes}")
        if not os.path.isdir(ds.images_dir):  # torchvision would only fail at the first image
            raise self.missing(f"the {split} images", root / os.path.basename(ds.images_dir), self.source)
        return ds

    def prepare_data(self) -> None:
        self._split("train-standard", None, self.download)
        self._split("val", None, self.download)

    def build_datasets(self):
        train = self._split("train-standard", self.train_transform)
        test = self._split("val", self.eval_transform)
        if self.val_size:
            train, val = split_train_val(train, self._split("train-standard", self.eval_transform), self.val_size,
                                         self.split_seed)
        else:
            val = test
        return train, val, test
