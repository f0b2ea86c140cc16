"""FLOP counting (kmexp.flops): conv + linear at 2 FLOPs per multiply-accumulate."""

import torch
from torch import nn

from kmexp.flops import count_flops
from kmexp.lit.classification import ClassificationModule
from kmexp.methods import build_model
from kmexp.modulation import add_kernel_modulators
from tests.conftest import model_cfg


def test_conv_linear_and_nothing_else():
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),  # 8*3*9 MACs per pixel
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise: 8*9 per pixel
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    )
    macs = 16 * 16 * (8 * 3 * 9 + 8 * 9) + 8 * 5
    assert count_flops(net, (3, 16, 16)) == 2 * macs


def test_modulators_are_folded_and_the_model_is_untouched():
    cfg = model_cfg("km", backbone="convmixer")
    cfg["backbone"].update(dim=8, depth=2)
    plain_cfg = dict(cfg, method={"name": "full", "components": ["convolution", "implicit", "classifier"]})
    km, plain = build_model(cfg), build_model(plain_cfg)
    state = {k: v.clone() for k, v in km.state_dict().items()}
    assert count_flops(km, (3, 32, 32)) == count_flops(plain, (3, 32, 32))
    assert all(torch.equal(state[k], v) for k, v in km.state_dict().items())
    assert all(p.device.type == "cpu" for p in km.parameters())
    assert all(m.weight.shape == m.parametrizations.weight.original.shape  # still parametrized
               for m in km.modules() if isinstance(m, nn.Conv2d))
    assert count_flops(km, (3, 32, 32)) == count_flops(plain, (3, 32, 32))  # and countable again


def test_resolution_scales_flops():
    net = nn.Conv2d(3, 4, 1)
    add_kernel_modulators(net)
    assert count_flops(net, (3, 64, 64)) == 4 * count_flops(net, (3, 32, 32))


def test_lightning_module_reports_flops_of_the_images_it_saw():
    cfg = model_cfg("full", backbone="convmixer")
    cfg["backbone"].update(dim=8, depth=2)
    module = ClassificationModule(cfg, {"name": "sgd", "lr": 0.1})
    assert module.extra_summary() == {}  # nothing seen yet: no guess of the image size
    module.input_shape = (3, 16, 16)
    summary = module.extra_summary()
    assert summary["params/flops"] == count_flops(module.net, (3, 16, 16))
    assert summary["params/gflops"] == summary["params/flops"] / 1e9
