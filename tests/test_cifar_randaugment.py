"""The ConvMixer training pipeline of the kernel-sharing code (kmexp/data/cifar_randaugment.py).

CIFAR-10 files are written in their real on-disk format (pickled python batches);
torchvision's MD5 check is the only thing bypassed, since these files are not the
published ones.
"""


import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN
from timm.data.auto_augment import RandAugment
from timm.data.random_erasing import RandomErasing
from torchvision import transforms

from kmexp.data.cifar_randaugment import CIFARRandAugmentDataModule
from kmexp.lit.classification import ClassificationModule
from tests.cifar_fakes import write_cifar10
from tests.conftest import model_cfg

N_TRAIN_PER_BATCH, N_TEST = 4, 6  # 5 training batches of 4 images


@pytest.fixture
def cifar10_root(tmp_path, monkeypatch):
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *a, **k: True)
    return write_cifar10(tmp_path, N_TRAIN_PER_BATCH, N_TEST)


def datamodule(root, **kw):
    dm = CIFARRandAugmentDataModule(variant="cifar10", root=str(root), download=False, batch_size=8, **kw)
    dm.setup()
    return dm


def test_train_transform_follows_the_papers_code(cifar10_root):
    dm = datamodule(cifar10_root)
    steps = dm.train_transform.transforms
    assert isinstance(steps[0], transforms.RandomCrop) and steps[0].padding == 4 and steps[0].size == (32, 32)
    assert isinstance(steps[1], transforms.RandomHorizontalFlip)
    assert isinstance(steps[2], RandAugment) and len(steps[2].ops) == 15 and steps[2].num_layers == 2
    assert isinstance(steps[-1], RandomErasing) and steps[-1].probability == 0.25 and steps[-1].mode == "pixel"
    normalize = next(t for t in steps if isinstance(t, transforms.Normalize))
    assert tuple(float(m) for m in normalize.mean) == pytest.approx(IMAGENET_DEFAULT_MEAN)
    x, y = dm._datasets[0][0]
    assert x.shape == (3, 32, 32) and isinstance(y, int)


def test_posterize_at_the_top_magnitude_gives_black_images_instead_of_raising(cifar10_root):
    """m9 + mstd0.5 reaches magnitude 10 = 0 bits kept; Pillow >= 13 raises on that."""
    [augment] = [t for t in datamodule(cifar10_root).train_transform.transforms if isinstance(t, RandAugment)]
    [posterize] = [op for op in augment.ops if op.name == "PosterizeIncreasing"]
    posterize.prob, posterize.magnitude, posterize.magnitude_std = 1.0, 10, 0.0
    img = Image.new("RGB", (32, 32), (200, 100, 50))
    assert posterize(img).getextrema() == ((0, 0), (0, 0), (0, 0))
    posterize.magnitude = 5  # 2 bits kept
    assert posterize(img).getpixel((0, 0)) == (192, 64, 0)


def test_training_batches_are_mixed_with_smoothed_soft_targets(cifar10_root):
    dm = datamodule(cifar10_root)
    batches = list(dm.train_dataloader())
    assert len(batches) == 20 // 8  # the incomplete last batch is dropped (mixup needs even batches)
    x, y = batches[0]
    assert x.shape == (8, 3, 32, 32) and y.shape == (8, 10) and y.dtype == torch.float32
    torch.testing.assert_close(y.sum(1), torch.ones(8))
    assert y.min() >= 0.1 / 10 - 1e-6  # label smoothing 0.1 over 10 classes
    xt, yt = next(iter(dm.test_dataloader()))
    assert yt.dtype == torch.long and xt.shape == (6, 3, 32, 32)


def test_convmixer_recipe_trains_on_soft_targets(cifar10_root):
    cfg = model_cfg("full", backbone="convmixer")
    cfg["backbone"].update(dim=8, depth=2)
    optim = {"name": "adamw", "lr": 0.01, "weight_decay": 0.01, "no_weight_decay_1d": True, "eps": 1e-3,
             "scheduler": {"name": "cosine", "eta_min": 1e-6}}
    module = ClassificationModule(cfg, optim)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=2, limit_val_batches=1,
                         num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0)
    trainer.fit(module, datamodule=datamodule(cifar10_root))
    assert trainer.global_step == 2
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    [opt] = trainer.optimizers
    assert opt.defaults["eps"] == 1e-3
    by_decay = {}  # groups are per component (lr/<component>); merge them by weight decay
    for g in opt.param_groups:
        by_decay.setdefault(g["weight_decay"], []).extend(g["params"])
    assert all(p.ndim > 1 for p in by_decay[0.01]) and all(p.ndim == 1 for p in by_decay[0.0])
    assert sum(len(ps) for ps in by_decay.values()) == len(list(module.net.parameters()))
    assert module.extra_summary()["params/flops"] > 0
