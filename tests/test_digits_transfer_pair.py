"""The digits transfer pair (classes 0-4 / 5-9) and a GroupNorm ResNet-20 loading a run's checkpoint."""

import hydra
import pytest
import torch

from kmexp.data.digits import DigitsDataModule
from kmexp.errors import ConfigError, WeightsNotFoundError
from kmexp.models.registry import build_backbone
from kmexp.validate import validate_config
from tests.test_configs import compose_cfg


def _splits(classes):
    dm = DigitsDataModule(classes=classes)
    dm.setup()
    return dm, dm._datasets


def test_halves_keep_their_classes_relabelled_and_partition_the_full_split():
    _, full = _splits(None)
    low_dm, low = _splits([0, 1, 2, 3, 4])
    high_dm, high = _splits([5, 6, 7, 8, 9])
    assert low_dm.num_classes == high_dm.num_classes == 5
    for i in range(3):
        x_all, y_all = full[i].tensors
        for half, offset in ((low[i], 0), (high[i], 5)):
            x, y = half.tensors
            assert set(y.tolist()) == set(range(5))  # every class present, labels 0..4
            wanted = (y_all >= offset) & (y_all < offset + 5)
            # the same images, in the same order, as the full split's images of those digits
            assert torch.equal(x, x_all[wanted]) and torch.equal(y + offset, y_all[wanted])
        assert len(low[i]) + len(high[i]) == len(full[i])
    assert [len(s) for s in low] == [587, 152, 162] and [len(s) for s in high] == [610, 148, 138]


def test_classes_keep_the_given_order():
    _, (train, _, _) = _splits([7, 2])
    _, (full_train, _, _) = _splits(None)
    y_all = full_train.tensors[1]
    assert torch.equal(train.tensors[1], (y_all[(y_all == 7) | (y_all == 2)] == 2).long())


@pytest.mark.parametrize("classes", [[], [1, 1], [10], ["a"]])
def test_bad_classes_are_refused(classes):
    with pytest.raises(ConfigError, match="classes"):
        DigitsDataModule(classes=classes)


def test_dataset_configs_compose_the_pair():
    for name, classes in (("digits_0to4", [0, 1, 2, 3, 4]), ("digits_5to9", [5, 6, 7, 8, 9])):
        cfg = compose_cfg([f"dataset={name}", "trainer.accelerator=cpu"])
        validate_config(cfg, hardware=False)
        dm = hydra.utils.instantiate(cfg.dataset.datamodule)
        assert dm.classes == classes and dm.num_classes == cfg.dataset.num_classes == 5
    cfg = compose_cfg(["dataset=digits_0to4", "dataset.num_classes=10"])
    with pytest.raises(ConfigError, match="num_classes=5"):
        validate_config(cfg, hardware=False)


def test_group_norm_resnet20_loads_a_run_checkpoint_except_its_classifier(tmp_path):
    source = build_backbone("resnet20", num_classes=5, norm="group", gn_groups=8)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in source.modules())
    assert sum(isinstance(m, torch.nn.GroupNorm) for m in source.modules()) == 19
    # a kmexp run's Lightning checkpoint: the network under ``net.``
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in source.state_dict().items()}, "epoch": 3}, ckpt)
    loaded = build_backbone("resnet20", num_classes=5, norm="group", gn_groups=8, pretrained=True,
                            weights_path=str(ckpt))
    for (name, a), b in zip(source.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b) != name.startswith("fc."), name  # classifier re-initialized, the rest loaded
    with pytest.raises(ConfigError, match="does not fit"):  # a BN checkpoint does not fit a GN network
        bn = build_backbone("resnet20", num_classes=5)
        torch.save(bn.state_dict(), tmp_path / "bn.pt")
        build_backbone("resnet20", num_classes=5, norm="group", pretrained=True, weights_path=str(tmp_path / "bn.pt"))
    with pytest.raises(WeightsNotFoundError, match="weights_path"):
        build_backbone("resnet20", num_classes=5, norm="group", pretrained=True, weights_path=str(tmp_path / "no.ckpt"))
    with pytest.raises(ConfigError, match="gn_groups=3"):
        build_backbone("resnet20", num_classes=5, norm="group", gn_groups=3)
