"""On-device small-image data (kmexp/data/on_device.py) against the torchvision pipeline.

CIFAR-10 files are written in their real on-disk format (pickled python batches).
"""

from __future__ import annotations

import pytest
import torch

from kmexp.data.cifar import CIFARDataModule
from kmexp.data.on_device import PAD, DeviceBatches, DeviceImages, crop_flip, dataset_tensors
from kmexp.errors import ConfigError
from tests.cifar_fakes import write_cifar10
from tests.conftest import TINY, run_cli, summaries

N_PER_BATCH, N_TEST = 40, 30


@pytest.fixture
def cifar10_root(tmp_path, monkeypatch):
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *a, **k: True)
    return write_cifar10(tmp_path, N_PER_BATCH, N_TEST)


def _dm(root, **kw):
    dm = CIFARDataModule(variant="cifar10", root=str(root), download=False, batch_size=16, **kw)
    dm.setup()
    return dm


@pytest.mark.parametrize("val_size", [0, 50])
def test_without_augmentation_pixels_equal_torchvision(cifar10_root, val_size):
    reference = _dm(cifar10_root, augment=False, val_size=val_size, eval_batch_size=1000)
    device = _dm(cifar10_root, augment=False, val_size=val_size, eval_batch_size=1000, on_device=True)
    for split in ("val_dataloader", "test_dataloader"):
        [(x_ref, y_ref)] = list(getattr(reference, split)())
        [(x_dev, y_dev)] = list(getattr(device, split)())
        assert x_dev.dtype == torch.float32 and x_dev.shape == x_ref.shape
        torch.testing.assert_close(x_dev, x_ref, rtol=0, atol=1e-6)
        assert torch.equal(y_dev, y_ref)
    # training split: same examples (order is shuffled), same pixels
    x_ref = torch.cat([x for x, _ in reference.train_dataloader()])
    x_dev = torch.cat([x for x, _ in device.train_dataloader()])
    assert len(x_dev) == len(x_ref) == 200 - val_size
    key = lambda x: x.flatten(1).sum(1).sort().values  # noqa: E731
    torch.testing.assert_close(key(x_dev), key(x_ref), rtol=0, atol=1e-3)


def test_crop_flip_matches_explicit_padding_and_flip():
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    offsets = torch.tensor([[-4, -4], [4, 4], [0, 0], [-1, 3], [2, -3]])
    flips = torch.tensor([True, False, True, False, True])
    out = crop_flip(images, offsets, flips)
    padded = torch.nn.functional.pad(images, (PAD,) * 4)
    for i, ((dy, dx), f) in enumerate(zip(offsets.tolist(), flips.tolist(), strict=True)):
        want = padded[i, :, PAD + dy : PAD + dy + 32, PAD + dx : PAD + dx + 32]
        assert torch.equal(out[i], want.flip(-1) if f else want)


def test_augmentation_covers_every_offset_and_flips_half():
    """Each pixel holds 1 + its (row, col) index, so the crop offset and flip of every
    output image can be read back from two neighbouring central pixels."""
    n = 20000
    pos = (1 + torch.arange(32 * 32, dtype=torch.float32)).view(1, 1, 32, 32).expand(n, 1, 32, 32)
    split = DeviceImages(pos, torch.zeros(n, dtype=torch.long), "cpu")
    x = torch.cat([b for b, _ in DeviceBatches(split, batch_size=4096, shuffle=True, augment=True, seed=1)])
    assert len(x) == n
    a, b = x[:, 0, 16, 16].long() - 1, x[:, 0, 16, 17].long() - 1
    flipped = b < a
    row, col = a // 32, a % 32
    dy = row - 16
    dx = torch.where(flipped, col - 15, col - 16)
    assert torch.all((b - a).abs() == 1)
    pairs = torch.bincount((dy + PAD) * 9 + dx + PAD, minlength=81)
    assert len(pairs) == 81 and torch.all(pairs > 0)  # every offset in [-4, 4]^2 occurs ...
    assert torch.all((pairs.float() / n - 1 / 81).abs() < 0.005), pairs  # ... equally often
    assert abs(flipped.float().mean().item() - 0.5) < 0.015
    # padding is zeros, present exactly when the crop leaves the image
    assert torch.equal(x[:, 0, 0, 0] == 0, (dy < 0) | torch.where(flipped, dx > 0, dx < 0))


def test_offsets_are_uniform_per_axis_and_flips_half_from_the_generator():
    n = 30000
    split = DeviceImages(torch.zeros(n, 1, 32, 32, dtype=torch.uint8), torch.zeros(n, dtype=torch.long), "cpu")
    b = DeviceBatches(split, batch_size=n, shuffle=True, augment=True, seed=7)
    g = b.epoch_generator(0)
    torch.randperm(n, generator=g)
    offsets = torch.randint(-PAD, PAD + 1, (n, 2), generator=g)
    flips = torch.rand(n, generator=g) < 0.5
    pairs = torch.bincount((offsets[:, 0] + PAD) * 9 + offsets[:, 1] + PAD, minlength=81).float() / n
    assert torch.all(pairs > 0) and torch.all((pairs - 1 / 81).abs() < 0.004)
    assert abs(flips.float().mean().item() - 0.5) < 0.01


def test_deterministic_for_a_seed_and_new_order_each_epoch(cifar10_root):
    def epoch_batches(seed, epochs=2):
        dm = _dm(cifar10_root, on_device=True, shuffle_seed=seed)
        loader = dm.train_dataloader()
        return [[x for x, _ in loader] for _ in range(epochs)]

    a, b, c = epoch_batches(0), epoch_batches(0), epoch_batches(1)
    for ea, eb in zip(a, b, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(ea, eb, strict=True))
    assert not torch.equal(a[0][0], a[1][0])  # epoch 1 differs from epoch 0
    assert not torch.equal(a[0][0], c[0][0])  # another seed differs


def test_subsets_and_tensor_datasets_become_tensors(cifar10_root):
    dm = _dm(cifar10_root, val_size=50)
    x, y = dataset_tensors(dm._datasets[1])
    assert x.shape == (50, 3, 32, 32) and x.dtype == torch.uint8 and y.shape == (50,)


def test_on_device_refused_where_unsupported(cifar10_root):
    from kmexp.data.cifar_randaugment import CIFARRandAugmentDataModule

    with pytest.raises(ConfigError, match="on_device"):
        CIFARRandAugmentDataModule(variant="cifar10", root=str(cifar10_root), on_device=True)
    assert not _dm(cifar10_root).uses_device_data()  # auto: off on CPU


@pytest.mark.slow
def test_tiny_digits_run_on_device(tmp_path):
    args = [*TINY, "backbone=resnet20", "method=km", "export_patch=false"]
    proc = run_cli([*args, "dataset.datamodule.on_device=true"], tmp_path / "device")
    [s] = summaries(tmp_path / "device")
    assert s["status"] == "finished", s
    log = proc.stdout + proc.stderr
    assert "digits split 0 on the device: 1197 images (3, 32, 32) on cpu" in log
    reference = run_cli(args, tmp_path / "loader")  # auto on CPU: the DataLoader path
    assert "on the device" not in reference.stdout + reference.stderr


def test_gpu_trainer_preset_is_bf16_with_cudnn_benchmark():
    from hydra import compose, initialize_config_dir

    from kmexp.config import register_resolvers
    from tests.conftest import REPO

    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "kmexp" / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["trainer=gpu", "dataset=cifar10"])
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed" and cfg.trainer.benchmark
    assert cfg.dataset.datamodule.on_device is None  # auto: on, since the trainer is on a GPU
