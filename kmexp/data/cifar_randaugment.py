"""CIFAR-10/100 with the ConvMixer training pipeline of the kernel-sharing paper's code.

The paper (Sec. 3.2) trains ConvMixers with AdamW, lr 0.01, cosine schedule, batch
128, 200 epochs; its public training scripts (built on timm, like ConvMixer's and
ConvNeXt's) add the augmentation reproduced here:

- timm's training transform at 32x32 with its random-resized crop replaced by a
  random 32x32 crop of the 4-pixel padded image; horizontal flip (p 0.5);
  RandAugment ``rand-m9-mstd0.5-inc1`` (bicubic); ImageNet mean/std normalization;
  random erasing (p 0.25, per-pixel random values);
- on every training batch, mixup (alpha 0.5) or CutMix (alpha 0.5), one of the two
  with probability 0.5 each, and label smoothing 0.1, giving soft targets (the
  LightningModule's cross-entropy accepts them). The last, incomplete training batch
  is dropped, as in the original loader (mixup needs an even batch).

Evaluation images are only normalized.

RandAugment's ``PosterizeIncreasing`` keeps 4 down to 0 bits; with ``mstd0.5`` the
magnitude reaches 10, i.e. 0 bits. Pillow < 13 turned that into a black image (the
behaviour the paper's runs had); Pillow >= 13 raises instead, which would kill a
DataLoader worker at random. :func:`posterize_any_bits` restores the old behaviour.
"""

from __future__ import annotations

from PIL import Image, ImageOps
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, Mixup, create_transform
from timm.data.auto_augment import RandAugment
from timm.data.transforms import RandomResizedCropAndInterpolation
from torch.utils.data import DataLoader
from torch.utils.data.dataloader import default_collate
from torchvision import transforms

from kmexp.data.cifar import CIFARDataModule


def posterize_any_bits(img: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """timm's posterize, with 0 bits kept giving a black image as in Pillow < 13."""
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return img.point(lambda _: 0)
    return ImageOps.posterize(img, bits_to_keep)


def _patch_posterize(transform: transforms.Compose) -> None:
    for step in transform.transforms:
        if isinstance(step, RandAugment):
            for op in step.ops:
                if op.name.startswith("Posterize"):
                    op.aug_fn = posterize_any_bits


class MixupCollate:
    """Collate a batch, then mix it (timm's batch-wise mixup / CutMix + label smoothing)."""

    def __init__(self, mixup: Mixup):
        self.mixup = mixup

    def __call__(self, samples):
        x, y = default_collate(samples)
        return self.mixup(x, y)


class CIFARRandAugmentDataModule(CIFARDataModule):
    supports_on_device = False  # RandAugment / Mixup run per image in the DataLoader
    def __init__(
        self,
        variant: str = "cifar10",
        rand_augment: str = "rand-m9-mstd0.5-inc1",
        interpolation: str = "bicubic",
        re_prob: float = 0.25,
        re_mode: str = "pixel",
        re_count: int = 1,
        mixup: float = 0.5,
        cutmix: float = 0.5,
        mixup_prob: float = 1.0,
        mixup_switch_prob: float = 0.5,
        label_smoothing: float = 0.1,
        mean: tuple[float, float, float] = IMAGENET_DEFAULT_MEAN,
        std: tuple[float, float, float] = IMAGENET_DEFAULT_STD,
        **kwargs,
    ):
        super().__init__(variant=variant, **kwargs)
        mean, std = tuple(mean), tuple(std)
        train = create_transform(
            input_size=32,
            is_training=True,
            auto_augment=rand_augment,
            interpolation=interpolation,
            re_prob=re_prob,
            re_mode=re_mode,
            re_count=re_count,
            mean=mean,
            std=std,
        )
        if not isinstance(train.transforms[0], RandomResizedCropAndInterpolation):
            raise RuntimeError(f"unexpected first transform of timm's pipeline: {train.transforms[0]}")
        train.transforms[0] = transforms.RandomCrop(32, padding=4)  # 32x32 images are not resized
        _patch_posterize(train)
        self.train_transform = train
        self.eval_transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
        self.mixup = None
        if mixup > 0 or cutmix > 0:
            self.mixup = Mixup(
                mixup_alpha=mixup,
                cutmix_alpha=cutmix,
                prob=mixup_prob,
                switch_prob=mixup_switch_prob,
                mode="batch",
                label_smoothing=label_smoothing,
                num_classes=self.num_classes,
            )

    def train_dataloader(self) -> DataLoader:
        if self.mixup is None:
            return super().train_dataloader()
        return DataLoader(
            self._datasets[0],
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=MixupCollate(self.mixup),
        )
