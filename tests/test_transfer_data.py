"""Aircraft, Cars, Flowers, Food: real on-disk layouts, read through the real loaders.

Each test writes a handful of small JPEGs and the dataset's genuine annotation files
(tests/transfer_fakes.py) and loads them through the datamodule the dataset config
instantiates, at 32x32 instead of 224x224.
"""

import hydra
import pytest
import torch
from omegaconf import OmegaConf

from kmexp.data.transfer import AircraftDataModule, CarsDataModule, FlowersDataModule, eval_transform
from kmexp.errors import ConfigError, DatasetNotFoundError
from tests.test_configs import compose_cfg
from tests.transfer_fakes import WRITERS, write_aircraft, write_flowers

CLASSES = {"aircraft": 100, "cars": 196, "flowers": 102, "food": 101}
# the training split each config names, in terms of the fakes' native splits
TRAIN_PARTS = {"aircraft": ["trainval"], "cars": ["train"], "flowers": ["train", "val"], "food": ["train"]}
SMOOTHING = {"aircraft": 0.7, "cars": 0.7, "flowers": 0.7, "food": 0.1}  # TinyTL's batch-8 scripts


def datamodule(name, root, *overrides):
    cfg = compose_cfg([
        f"dataset={name}", f"paths.data_dir={root}", "dataset.datamodule.image_size=32",
        "dataset.datamodule.batch_size=2", "dataset.datamodule.eval_batch_size=3",
        "dataset.datamodule.num_workers=0", "dataset.datamodule.download=false",
        *(["dataset.datamodule.verify_checksums=false"] if name == "flowers" else []), *overrides,
    ])
    return cfg, hydra.utils.instantiate(cfg.dataset.datamodule)


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_dataset_loads_from_its_real_layout(tmp_path, name):
    labels = WRITERS[name](tmp_path)
    cfg, dm = datamodule(name, tmp_path)
    assert cfg.dataset.num_classes == dm.num_classes == CLASSES[name]
    dm.prepare_data()
    dm.setup("fit")
    train, val, test = dm._datasets
    train_labels = [y for part in TRAIN_PARTS[name] for y in labels[part]]
    assert len(train) == len(train_labels)
    assert val is test  # TinyTL's protocol: no held-out split, the last checkpoint is reported
    xs, ys = zip(*[test[i] for i in range(len(test))], strict=True)
    assert list(ys) == labels["test"]
    assert all(x.shape == (3, 32, 32) for x in xs)
    assert abs(torch.stack(xs).mean()) < 1.5  # normalized with the ImageNet statistics

    x, soft = next(iter(dm.train_dataloader()))
    k, eps = CLASSES[name], SMOOTHING[name]
    assert x.shape == (2, 3, 32, 32) and soft.shape == (2, k)
    assert torch.allclose(soft.sum(1), torch.ones(2))
    assert torch.allclose(soft.max(1).values, torch.full((2,), 1 - eps + eps / k))
    assert set(soft.argmax(1).tolist()) <= set(train_labels)
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (min(3, len(test)), 3, 32, 32) and y.dtype == torch.long


def test_configs_name_their_splits():
    for name, train in (("aircraft", "trainval"), ("cars", "train"), ("flowers", "train+val"), ("food", "train")):
        cfg = compose_cfg([f"dataset={name}"])
        dm = cfg.dataset.datamodule
        assert (dm.train_split, dm.val_split, dm.test_split) == (train, None, "test")
        assert dm.image_size == 224 and dm.batch_size == 8  # KM Sec. IV-B


def test_held_out_validation_splits(tmp_path):
    labels = write_aircraft(tmp_path)
    _, dm = datamodule("aircraft", tmp_path, "dataset.datamodule.train_split=train", "dataset.datamodule.val_split=val")
    dm.setup("fit")
    train, val, test = dm._datasets
    assert (len(train), len(val), len(test)) == (len(labels["train"]), len(labels["val"]), len(labels["test"]))
    _, dm = datamodule("aircraft", tmp_path, "dataset.datamodule.val_size=2")
    dm.setup("fit")
    train, val, _ = dm._datasets
    assert (len(train), len(val)) == (len(labels["trainval"]) - 2, 2)


def test_eval_transform_is_resize_256_center_crop_224():
    from PIL import Image

    t = eval_transform(224)
    assert t.transforms[0].size == 256
    assert t(Image.new("RGB", (500, 333))).shape == (3, 224, 224)


@pytest.mark.parametrize("cls,folder,hint", [
    (AircraftDataModule, "fgvc-aircraft-2013b", "fgvc-aircraft-2013b.tar.gz"),
    (CarsDataModule, "stanford_cars", "https://github.com/pytorch/vision/issues/7545"),
    (FlowersDataModule, "flowers-102", "imagelabels.mat and setid.mat"),
])
def test_missing_dataset_gives_one_clear_message(tmp_path, cls, folder, hint):
    dm = cls(root=str(tmp_path / "nodata"), download=False, image_size=32)
    with pytest.raises(DatasetNotFoundError) as e:
        dm.prepare_data()
    assert str(tmp_path / "nodata" / folder) in str(e.value) and hint in str(e.value)


def test_flowers_checksums_are_verified_by_default(tmp_path):
    write_flowers(tmp_path)  # the tests' .mat files are not the published ones
    with pytest.raises(DatasetNotFoundError, match="not found or corrupted"):
        FlowersDataModule(root=str(tmp_path), download=False, image_size=32).prepare_data()
    FlowersDataModule(root=str(tmp_path), download=False, image_size=32, verify_checksums=False).prepare_data()


def test_wrong_annotations_and_splits_are_refused(tmp_path):
    write_aircraft(tmp_path)
    variants = tmp_path / "fgvc-aircraft-2013b" / "data" / "variants.txt"
    variants.write_text("\n".join(variants.read_text().splitlines()[:99]) + "\n")
    with pytest.raises(DatasetNotFoundError, match="lists 99 classes, expected 100"):
        AircraftDataModule(root=str(tmp_path), download=False, train_split="train").prepare_data()
    with pytest.raises(ConfigError, match="'trainval' is not one of"):
        CarsDataModule(root=str(tmp_path), train_split="trainval")
    with pytest.raises(ConfigError, match="color_jitter"):
        AircraftDataModule(root=str(tmp_path), color_jitter="strong")


def test_dataset_configs_instantiate_without_touching_disk(tmp_path):
    for name in CLASSES:
        cfg = compose_cfg([f"dataset={name}", f"paths.data_dir={tmp_path / 'nothing'}"])
        dm = hydra.utils.instantiate(cfg.dataset.datamodule)
        assert dm.name == cfg.dataset.name == name
        assert OmegaConf.select(cfg, "dataset.datamodule.label_smoothing") == SMOOTHING[name]
    assert not (tmp_path / "nothing").exists()
