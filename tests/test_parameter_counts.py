"""Table I parameter counts (Kernel Modulation Sec. III-A and Table I), exact."""

import pytest
import torch

from kmexp.components import component_counts, count_parameters
from kmexp.methods import build_model
from kmexp.models import build_backbone
from kmexp.modulation import KernelModulator, ModulatorConfig, add_kernel_modulators, modulator_parameter_count
from tests.conftest import model_cfg


def test_resnet32_has_464154_parameters():
    assert count_parameters(build_backbone("resnet32", num_classes=10))["params/total"] == 464_154


def _cifar_resnet_count(n: int) -> int:
    """Hand count for ResNet-(6n+2), option A: stem, 3 stages of n blocks, classifier."""
    stem = 3 * 16 * 9 + 2 * 16
    stage1 = n * (2 * 16 * 16 * 9 + 4 * 16)
    stage2 = (16 * 32 * 9 + 32 * 32 * 9 + 4 * 32) + (n - 1) * (2 * 32 * 32 * 9 + 4 * 32)
    stage3 = (32 * 64 * 9 + 64 * 64 * 9 + 4 * 64) + (n - 1) * (2 * 64 * 64 * 9 + 4 * 64)
    return stem + stage1 + stage2 + stage3 + 64 * 10 + 10


@pytest.mark.parametrize("depth,printed", [(20, 0.27e6), (32, 0.46e6), (56, 0.85e6), (110, 1.7e6)])
def test_cifar_resnets_match_he_et_al(depth, printed):
    total = count_parameters(build_backbone(f"resnet{depth}", num_classes=10))["params/total"]
    assert total == _cifar_resnet_count((depth - 2) // 6)
    digits = 1 if printed >= 1e6 else 2  # He et al. 2016 Table 6 rounding
    assert round(total / 1e6, digits) == printed / 1e6


def test_conv_32x16x3x3_modulator_has_162_parameters():
    conv = torch.nn.Conv2d(16, 32, 3, bias=False)
    assert conv.weight.numel() == 4_608
    add_kernel_modulators(conv)
    assert modulator_parameter_count(conv) == 162  # Sec. III-A: 4.6K weights vs 162


@pytest.mark.parametrize(
    "method,trainable,total",
    [
        ("bl", 2_922, 464_154),  # Table I: 2.9 K of 470 K
        ("km", 7_944, 469_176),  # Table I: 7.9 K of 470 K (31 modulators x 162 added)
        ("full", 464_154, 464_154),
        ("tkm1", 650 + 31 * 162, 469_176),
        ("tbl1", 650, 464_154),
    ],
)
def test_table1_trainable_counts(method, trainable, total):
    counts = count_parameters(build_model(model_cfg(method)))
    assert counts["params/trainable"] == trainable
    assert counts["params/total"] == total


def test_component_counts_partition_resnet32():
    counts = component_counts(build_model(model_cfg("km")))
    assert counts["classifier"] == 650
    assert counts["implicit"] == 2_272
    assert counts["explicit"] == 31 * 162
    assert counts["convolution"] == 464_154 - 2_922


@pytest.mark.parametrize("init,per_layer", [("default", 162), ("orthogonal", 162), ("diagonal", 18)])
def test_modulator_size_per_init(init, per_layer):
    m = KernelModulator(9, ModulatorConfig(init=init))
    assert sum(p.numel() for p in m.parameters()) == per_layer


@pytest.mark.parametrize("depth", [1, 2, 5, 50])
def test_modulator_size_per_depth(depth):
    assert sum(p.numel() for p in KernelModulator(9, ModulatorConfig(depth=depth)).parameters()) == 81 * depth
