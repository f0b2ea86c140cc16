"""SE-ResNet for CIFAR and the kernel-sharing paper's SE-ResNet counts (Sec. 3.3, Fig. 5).

Reference numbers are read from results/paper/ks_fig5.csv (typed from the paper).
"""

import pytest
import torch
from torch import nn

from kmexp.components import count_parameters, tag_parameters
from kmexp.flops import count_flops
from kmexp.models import build_backbone
from kmexp.models.se_resnet import SqueezeExcitation
from kmexp.sharing import apply_sharing
from tests.test_convmixer import paper

STAGES = {"baseline": None, "ks_all_stages": [1, 2, 3], "ks_stage23": [2, 3], "ks_stage3": [3]}


def se_resnet(depth, stages=None, num_classes=10):
    net = build_backbone("se_resnet", num_classes=num_classes, depth=depth)
    if stages:
        apply_sharing(net, {"strategy": "stages", "stages": stages})
    return net


def params(net) -> int:
    return count_parameters(net)["params/total"]


def _hand_count(d: int, num_classes: int) -> int:
    stem = 3 * 16 * 9 + 2 * 16
    total, c_in = stem, 16
    for c in (64, 128, 256):
        first = c_in * c * 9 + c * c * 9 + 4 * c + c_in * c + 2 * c  # conv1, conv2, 2 BN, 1x1 shortcut + BN
        rest = 2 * c * c * 9 + 4 * c
        se = 2 * c * (c // 16)
        total += first + (d - 1) * rest + d * se
        c_in = c
    return total + 256 * num_classes + num_classes


@pytest.mark.parametrize("d", [2, 3, 4, 6, 8, 10])
def test_parameter_count_matches_the_hand_count(d):
    assert params(se_resnet(d)) == _hand_count(d, 10)


def test_structure_stem_stages_se():
    net = se_resnet(2)
    assert (net.conv1.in_channels, net.conv1.out_channels) == (3, 16)
    for i, c in enumerate((64, 128, 256), start=1):
        stage = getattr(net, f"layer{i}")
        assert len(stage) == 2
        assert stage[0].conv1.stride == ((1, 1) if i == 1 else (2, 2))
        assert isinstance(stage[0].shortcut, nn.Sequential) and isinstance(stage[1].shortcut, nn.Identity)
        se = stage[1].se
        assert (se.fc1.in_features, se.fc1.out_features, se.fc1.bias) == (c, c // 16, None)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert net.get_classifier() is net.fc and net.fc.in_features == 256


def test_squeeze_excitation_rescales_channels_by_a_sigmoid_gate():
    se = SqueezeExcitation(32, 16)
    x = torch.randn(2, 32, 4, 4)
    gate = torch.sigmoid(se.fc2(torch.relu(se.fc1(x.mean((2, 3))))))
    torch.testing.assert_close(se(x), x * gate[:, :, None, None])


def test_se_linear_layers_are_base_weights():
    tags = tag_parameters(se_resnet(2))
    assert tags["layer1.0.se.fc1.weight"] == {"convolution"}
    assert tags["fc.weight"] == {"classifier"}


@pytest.mark.parametrize("dataset,num_classes", [("cifar10", 10), ("cifar100", 100)])
@pytest.mark.parametrize("row", sorted(STAGES))
def test_fig5_optimum_models_have_the_printed_parameter_counts(dataset, num_classes, row):
    """Sec. 3.3: ~12.1M baseline; ~1.2M / ~1.4M / ~3.1M with sharing; 9.7x, 8.3x, 3.9x fewer."""
    ref = paper("ks_fig5")
    n = params(se_resnet(int(ref[(row, f"{dataset}_optimum_depth")]), STAGES[row], num_classes))
    assert abs(n - ref[(row, f"{dataset}_params")]) < 0.1e6
    if row != "baseline":
        base = params(se_resnet(int(ref[("baseline", f"{dataset}_optimum_depth")]), None, num_classes))
        printed = ref[(row, f"{dataset}_param_reduction")]
        unit = 0.01 if printed != round(printed, 1) else 0.1  # 8.64 vs 9.7
        assert abs(base / n - printed) < unit


def test_stage3_sharing_of_d6_saves_28_percent_of_the_d3_baseline():
    saving = 1 - params(se_resnet(6, [3])) / params(se_resnet(3))
    assert saving * 100 == pytest.approx(paper("ks_fig5")[("ks_stage3_d6_vs_baseline_d3", "cifar10_param_saving_pct")], abs=1)


def test_fig5_gflops_range():
    """Caption: 0.8 to 4.4 GFLOPs for d = 2 ... 10 (conv + linear, 2 FLOPs per MAC)."""
    ref = paper("ks_fig5")
    with torch.device("meta"):
        low, high = (count_flops(se_resnet(d), (3, 32, 32)) / 1e9 for d in (2, 10))
    assert round(low, 1) == ref[("all", "gflops_min")] and round(high, 1) == ref[("all", "gflops_max")]
