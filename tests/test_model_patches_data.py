"""ImageNet and Places-365 (model patches Sec. 5.1, 5.3, 5.4), read through the real loaders
from tiny files the tests write in each dataset's on-disk layout."""

import pytest
import torch
from PIL import Image

from kmexp.data.imagenet import ImageNetDataModule
from kmexp.data.places365 import Places365DataModule
from kmexp.errors import DatasetNotFoundError


def write_jpeg(path, seed: int, size: int = 12) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    pixels = (torch.rand(size, size, 3, generator=g) * 255).to(torch.uint8).numpy()
    Image.fromarray(pixels).save(path)


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory):
    """1,000 wnid folders, one training and one validation image each (the class-folder layout)."""
    root = tmp_path_factory.mktemp("data")
    for c in range(1000):
        wnid = f"n{c:08d}"
        write_jpeg(root / "imagenet" / "train" / wnid / f"{wnid}_1.JPEG", c)
        write_jpeg(root / "imagenet" / "val" / wnid / f"ILSVRC2012_val_{c:08d}.JPEG", 5000 + c)
    return root


def test_imagenet_reads_the_class_folder_layout(imagenet_root):
    dm = ImageNetDataModule(root=str(imagenet_root), image_size=16, batch_size=4, val_size=10)
    dm.prepare_data()
    dm.setup("fit")
    train, val, test = dm._datasets
    assert (len(train), len(val), len(test)) == (990, 10, 1000)
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (4, 3, 16, 16) and y.tolist() == [0, 1, 2, 3]  # sorted wnids -> class ids


def test_imagenet_missing_or_incomplete_names_the_folder(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "imagenet" / "train")):
        ImageNetDataModule(root=str(tmp_path)).prepare_data()
    for split in ("train", "val"):
        write_jpeg(tmp_path / "imagenet" / split / "n00000001" / "a.JPEG", 0)
    with pytest.raises(DatasetNotFoundError, match="has 1 class folders, expected 1000"):
        ImageNetDataModule(root=str(tmp_path)).prepare_data()


@pytest.fixture(scope="module")
def places_root(tmp_path_factory):
    """torchvision's Places365-Standard small layout: list files + data_256_standard/ + val_256/."""
    root = tmp_path_factory.mktemp("data") / "places365"
    root.mkdir()
    categories = [f"/{chr(97 + i % 26)}/place_{i:03d}" for i in range(365)]
    (root / "categories_places365.txt").write_text("".join(f"{c} {i}\n" for i, c in enumerate(categories)))
    train = []
    for i in (0, 1, 2, 364):
        for j in range(2):
            rel = f"{categories[i]}/{j:08d}.jpg"
            write_jpeg(root / "data_256_standard" / rel.lstrip("/"), 10 * i + j)
            train.append(f"{rel} {i}\n")
    (root / "places365_train_standard.txt").write_text("".join(train))
    val = []
    for k, i in enumerate((364, 2, 1)):
        name = f"Places365_val_{k + 1:08d}.jpg"
        write_jpeg(root / "val_256" / name, 9000 + k)
        val.append(f"{name} {i}\n")
    (root / "places365_val.txt").write_text("".join(val))
    return root.parent


def test_places365_reads_torchvisions_layout(places_root):
    dm = Places365DataModule(root=str(places_root), verify_checksums=False, download=False, image_size=16,
                             batch_size=3)
    dm.prepare_data()
    dm.setup("fit")
    train, val, test = dm._datasets
    assert (len(train), len(test)) == (8, 3) and val is test
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (3, 3, 16, 16) and y.tolist() == [364, 2, 1]


def test_places365_checksums_are_checked_by_default_and_missing_images_are_named(places_root, tmp_path):
    with pytest.raises(DatasetNotFoundError, match="places365"):  # the tiny list files fail torchvision's MD5 check
        Places365DataModule(root=str(places_root), download=False).prepare_data()
    (tmp_path / "places365").mkdir()
    for f in ("categories_places365.txt", "places365_train_standard.txt", "places365_val.txt"):
        (tmp_path / "places365" / f).write_text((places_root / "places365" / f).read_text())
    with pytest.raises(DatasetNotFoundError, match="data_256_standard"):
        Places365DataModule(root=str(tmp_path), verify_checksums=False, download=False).prepare_data()
