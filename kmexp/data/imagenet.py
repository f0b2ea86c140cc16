"""ImageNet (ILSVRC-2012, Deng et al. 2009), for model patches' experiments that train on it:
learning from random weights (Sec. 5.1, Table 3), multi-task learning with Places-365
(Sec. 5.3, Table 4) and multi-resolution domain adaptation (Sec. 5.4, Table 5).

Expected in the usual class-folder layout under ``<root>/imagenet/`` (the training archive
unpacked per class; the validation images sorted into class folders, e.g. with the
``valprep.sh`` script of the PyTorch ImageNet example)::

    train/n01440764/n01440764_10026.JPEG ...   (1,000 folders, 1,281,167 images)
    val/n01440764/ILSVRC2012_val_00000293.JPEG ... (1,000 folders, 50,000 images)

The paper reports top-1 on the validation images, so ``val/`` is the test split here;
``val_size > 0`` holds out that many training images for validation, otherwise validation
runs on ``val/`` too and tables use the last checkpoint. Transforms are the standard
Inception-style ones (:mod:`kmexp.data.transfer`): RandomResizedCrop(image_size,
scale=(0.08, 1)) + flip for training; resize to image_size / 0.875 + center crop for evaluation.
"""

from __future__ import annotations

from torch.utils.data import Dataset
from torchvision import datasets

from kmexp.data.base import ClassificationDataModule, split_train_val
from kmexp.data.transfer import eval_transform, train_transform
from kmexp.errors import DatasetNotFoundError


class ImageNetDataModule(ClassificationDataModule):
    name = "imagenet"
    num_classes = 1000
    folder = "imagenet"
    source = ("download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from https://image-net.org "
              "(registration required), unpack them into train/<wnid>/ and val/<wnid>/ folders there")

    def __init__(self, image_size: int = 224, resize_scale: float = 0.08, color_jitter: str = "none",
                 eval_crop_ratio: float = 0.875, **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.train_transform = train_transform(image_size, resize_scale, color_jitter)
        self.eval_transform = eval_transform(image_size, eval_crop_ratio)

    def _folder(self, split: str, transform) -> Dataset:
        path = self.root / self.folder / split
        try:
            ds = datasets.ImageFolder(str(path), transform=transform)
        except (FileNotFoundError, OSError, RuntimeError) as e:
            raise self.missing(f"the {split} images ({e.__class__.__name__}: {e})", path, self.source) from e
        if len(ds.classes) != self.num_classes:
            raise DatasetNotFoundError(
                f"{self.name}: {path} has {len(ds.classes)} class folders, expected {self.num_classes}"
            )
        return ds

    def prepare_data(self) -> None:
        self._folder("train", None)
        self._folder("val", None)

    def build_datasets(self):
        train = self._folder("train", self.train_transform)
        test = self._folder("val", self.eval_transform)
        if self.val_size:
            train, val = split_train_val(train, self._folder("train", self.eval_transform), self.val_size,
                                         self.split_seed)
        else:
            val = test
        return train, val, test
