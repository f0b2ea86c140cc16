"""The four transfer-learning datasets of Kernel Modulation Sec. IV-B (Fig. 4, Table II).

All four load through torchvision from their original on-disk layout under
``root`` (``dataset.root`` / ``$KMEXP_DATA`` / ``data/``):

=========  ========================================  =======  ==============================
dataset    torchvision class, folder                  classes  images (train / test)
=========  ========================================  =======  ==============================
aircraft   FGVCAircraft (variant), fgvc-aircraft-2013b    100  6,667 trainval / 3,333 test
cars       StanfordCars, stanford_cars                    196  8,144 train / 8,041 test
flowers    Flowers102, flowers-102                        102  1,020 train + 1,020 val / 6,149 test
food       Food101, food-101                              101  75,750 train / 25,250 test
=========  ========================================  =======  ==============================

Splits are named in the dataset config (``train_split`` / ``val_split`` /
``test_split``); ``a+b`` concatenates native splits. The presets follow TinyTL's data
(Cai et al. 2020, mit-han-lab/tinyml ``dataset_setup_scripts``), whose batch-8 recipe the
paper's learning rates come from: train on trainval (Flowers: train+val), report test.
With ``val_split: null`` and ``val_size: 0`` validation runs on the test split and tables
use the last checkpoint (``test_ckpt=last``), never the best-on-test one;
``val_split: val`` (Aircraft, Flowers) or ``val_size: N`` give a held-out validation set.

Transforms (224 x 224 by default; ``image_size`` makes them small for tests): training
uses RandomResizedCrop(scale=(resize_scale, 1)) + horizontal flip (+ optional color
jitter), evaluation resizes the short side to image_size / 0.875 (256 for 224) and
center-crops; both normalize with the ImageNet statistics of the pretrained backbone.
``label_smoothing`` > 0 turns training labels into smoothed one-hot targets (TinyTL's
recipe: 0.7 for Aircraft, Cars and Flowers, 0.1 for Food); the LightningModule's
cross-entropy accepts soft targets, and evaluation keeps hard labels.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from torch.utils.data.dataloader import default_collate
from torchvision import datasets, transforms

from kmexp.data.base import ClassificationDataModule, split_train_val
from kmexp.errors import ConfigError, DatasetNotFoundError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# OFA/TinyTL's "distort_color" options
COLOR_JITTER = {
    "none": None,
    "torch": dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1),
    "tf": dict(brightness=32.0 / 255.0, saturation=0.5),
}


def train_transform(image_size: int, resize_scale: float, color_jitter: str) -> transforms.Compose:
    ops = [transforms.RandomResizedCrop(image_size, scale=(resize_scale, 1.0)), transforms.RandomHorizontalFlip()]
    if COLOR_JITTER[color_jitter]:
        ops.append(transforms.ColorJitter(**COLOR_JITTER[color_jitter]))
    return transforms.Compose([*ops, transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def eval_transform(image_size: int, crop_ratio: float = 0.875) -> transforms.Compose:
    return transforms.Compose([
        transforms.Resize(math.ceil(image_size / crop_ratio)),
        transforms.CenterCrop(image_size),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


class SmoothedLabels:
    """Collate a batch and replace its labels by (1 - eps) one-hot + eps / K (label smoothing)."""

    def __init__(self, num_classes: int, eps: float):
        self.num_classes, self.eps = num_classes, eps

    def __call__(self, samples):
        x, y = default_collate(samples)
        soft = torch.full((len(y), self.num_classes), self.eps / self.num_classes)
        soft.scatter_add_(1, y.view(-1, 1), torch.full((len(y), 1), 1.0 - self.eps))
        return x, soft


class TransferDataModule(ClassificationDataModule):
    """Base class; subclasses name the dataset, its splits and folder, and open one split."""

    splits: tuple[str, ...] = ("train", "test")
    folder: str = ""
    source: str = ""  # where users get the data (the "how" of the missing-data message)

    def __init__(self, train_split: str = "train", val_split: str | None = None, test_split: str = "test",
                 image_size: int = 224, resize_scale: float = 0.08, color_jitter: str = "none",
                 eval_crop_ratio: float = 0.875, label_smoothing: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        for key, spec in (("train_split", train_split), ("val_split", val_split), ("test_split", test_split)):
            for part in (spec or "").split("+") if spec else ():
                if part not in self.splits:
                    raise ConfigError(f"{self.name}: dataset.datamodule.{key}={spec!r}: {part!r} is not one of {list(self.splits)}")
        if color_jitter not in COLOR_JITTER:
            raise ConfigError(f"color_jitter={color_jitter!r} is not one of {list(COLOR_JITTER)}")
        if not 0 < resize_scale <= 1:
            raise ConfigError(f"resize_scale={resize_scale!r} must be in (0, 1]")
        if not 0 <= label_smoothing < 1:
            raise ConfigError(f"label_smoothing={label_smoothing!r} must be in [0, 1)")
        self.label_smoothing = label_smoothing
        self.train_split, self.val_split, self.test_split = train_split, val_split, test_split
        self.image_size = image_size
        self.train_transform = train_transform(image_size, resize_scale, color_jitter)
        self.eval_transform = eval_transform(image_size, eval_crop_ratio)

    @property
    def data_dir(self) -> Path:
        return self.root / self.folder

    def open_split(self, split: str, transform) -> Dataset:
        """One native split of the torchvision dataset (``classes`` attribute required)."""
        raise NotImplementedError

    def _open(self, split: str, transform) -> Dataset:
        try:
            ds = self.open_split(split, transform)
        except (RuntimeError, OSError, KeyError, IndexError) as e:
            # torchvision: "Dataset not found"; an unreachable download; missing or malformed annotations
            raise self.missing(f"the {split} split ({e.__class__.__name__}: {e})", self.data_dir, self.source) from e
        if len(ds.classes) != self.num_classes:
            raise DatasetNotFoundError(
                f"{self.name}: {self.data_dir} lists {len(ds.classes)} classes, expected {self.num_classes} "
                f"(wrong or incomplete annotation files?)"
            )
        return ds

    def dataset(self, spec: str, transform) -> Dataset:
        """``spec`` = a split name or ``a+b`` (concatenated)."""
        parts = [self._open(p, transform) for p in spec.split("+")]
        return parts[0] if len(parts) == 1 else ConcatDataset(parts)

    def prepare_data(self) -> None:
        for spec in {self.train_split, self.val_split, self.test_split} - {None}:
            self.dataset(spec, None)

    def train_dataloader(self) -> DataLoader:
        if not self.label_smoothing:
            return super().train_dataloader()
        return DataLoader(
            self._datasets[0],
            batch_size=self.batch_size,
            shuffle=True,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=SmoothedLabels(self.num_classes, self.label_smoothing),
        )

    def build_datasets(self):
        train = self.dataset(self.train_split, self.train_transform)
        test = self.dataset(self.test_split, self.eval_transform)
        if self.val_split:
            val = self.dataset(self.val_split, self.eval_transform)
        elif self.val_size:
            train, val = split_train_val(train, self.dataset(self.train_split, self.eval_transform), self.val_size,
                                         self.split_seed)
        else:
            val = test
        return train, val, test


class AircraftDataModule(TransferDataModule):
    """FGVC-Aircraft (Maji et al. 2013) at the variant level: 100 classes."""

    name = "aircraft"
    num_classes = 100
    splits = ("train", "val", "trainval", "test")
    folder = "fgvc-aircraft-2013b"
    source = ("torchvision downloads it with dataset.datamodule.download=true, or unpack "
              "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz there")

    def open_split(self, split, transform):
        return datasets.FGVCAircraft(str(self.root), split=split, annotation_level="variant", transform=transform,
                                     download=self.download)


class CarsDataModule(TransferDataModule):
    """Stanford Cars (Krause et al. 2013): 196 classes. torchvision cannot download it any more.

    Expected layout (torchvision's), under ``<root>/stanford_cars/``::

        devkit/cars_meta.mat  devkit/cars_train_annos.mat  cars_train/00001.jpg ...
        cars_test_annos_withlabels.mat                     cars_test/00001.jpg ...

    The original site (ai.stanford.edu/~jkrause/cars) is offline; pytorch/vision issue
    #7545 explains how to assemble this layout from the Kaggle copy of the images
    (jessicali9530/stanford-cars-dataset), the devkit archive attached to that issue and
    ``cars_test_annos_withlabels.mat`` linked from it.
    """

    name = "cars"
    num_classes = 196
    splits = ("train", "test")
    folder = "stanford_cars"
    source = ("torchvision cannot download Stanford Cars any more: assemble devkit/cars_meta.mat, "
              "devkit/cars_train_annos.mat, cars_train/, cars_test/ and cars_test_annos_withlabels.mat there as "
              "described in https://github.com/pytorch/vision/issues/7545 (images: Kaggle "
              "jessicali9530/stanford-cars-dataset)")

    def open_split(self, split, transform):
        return datasets.StanfordCars(str(self.root), split=split, transform=transform, download=False)


class _Flowers102(datasets.Flowers102):
    """torchvision's Flowers102, with the MD5 check of its two .mat files optional."""

    def __init__(self, *args, verify_checksums: bool = True, **kwargs):
        self._verify_checksums = verify_checksums
        super().__init__(*args, **kwargs)

    def _check_integrity(self) -> bool:
        if self._verify_checksums:
            return super()._check_integrity()
        return self._images_folder.is_dir() and all(
            (self._base_folder / self._file_dict[k][0]).is_file() for k in ("label", "setid")
        )


class FlowersDataModule(TransferDataModule):
    """Oxford Flowers-102 (Nilsback & Zisserman 2008): 102 classes.

    ``verify_checksums=false`` skips torchvision's MD5 check of ``imagelabels.mat`` and
    ``setid.mat`` (for re-packed copies and the tests' small files).
    """

    name = "flowers"
    num_classes = 102
    splits = ("train", "val", "test")
    folder = "flowers-102"
    source = ("torchvision downloads it with dataset.datamodule.download=true, or put 102flowers.tgz's jpg/, "
              "imagelabels.mat and setid.mat from https://www.robots.ox.ac.uk/~vgg/data/flowers/102/ there")

    def __init__(self, verify_checksums: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.verify_checksums = verify_checksums

    def open_split(self, split, transform):
        return _Flowers102(str(self.root), split=split, transform=transform, download=self.download,
                           verify_checksums=self.verify_checksums)


class FoodDataModule(TransferDataModule):
    """Food-101 (Bossard et al. 2014): 101 classes."""

    name = "food"
    num_classes = 101
    splits = ("train", "test")
    folder = "food-101"
    source = ("torchvision downloads it with dataset.datamodule.download=true, or unpack "
              "http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz (images/, meta/train.json, meta/test.json) there")

    def open_split(self, split, transform):
        return datasets.Food101(str(self.root), split=split, transform=transform, download=self.download)
