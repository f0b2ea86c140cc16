"""Explicit kernel modulation (Kernel Modulation Sec. III-A, Eq. 3-4; ablations Sec. IV-D)."""

import math

import pytest
import torch
from torch import nn

from kmexp.errors import ConfigError
from kmexp.models import build_backbone
from kmexp.modulation import (
    KernelModulator,
    ModulatorConfig,
    add_kernel_modulators,
    fold_modulators,
    is_modulated,
    modulator_parameter_count,
)

CONVS = {
    "3x3": nn.Conv2d(16, 32, 3, padding=1),
    "1x1": nn.Conv2d(16, 32, 1),
    "7x7": nn.Conv2d(3, 8, 7, stride=2, padding=3),
    "depthwise": nn.Conv2d(16, 16, 3, padding=1, groups=16),
    "grouped": nn.Conv2d(16, 32, 3, padding=1, groups=4),
    "5x3": nn.Conv2d(4, 4, (5, 3), padding=(2, 1)),
}


@pytest.mark.parametrize("kind", sorted(CONVS))
def test_every_conv_kind_is_modulated_and_close_at_init(kind):
    conv = CONVS[kind]
    base = conv.weight.detach().clone()
    x = torch.randn(2, conv.in_channels, 16, 16)
    expected = conv(x)
    assert add_kernel_modulators(conv) == 1 and is_modulated(conv)
    k = math.prod(conv.kernel_size)
    assert modulator_parameter_count(conv) == 2 * k * k
    assert conv.weight.shape == base.shape
    assert torch.equal(conv.parametrizations.weight.original, base)
    rel = (conv.weight - base).norm() / base.norm()
    assert rel < 0.05  # see test_default_init_preserves_weights for the bound
    assert conv(x).shape == expected.shape


def test_modulator_matches_eq3_by_hand():
    """w~ = U2 tanh(U1 w) on each (kh*kw) row of the reshaped kernel (Fig. 2 steps A-E)."""
    m = KernelModulator(9)
    w = torch.randn(32, 16, 3, 3)
    u1, u2 = m.weights
    rows = w.reshape(512, 9)
    by_hand = torch.stack([u2 @ torch.tanh(u1 @ r) for r in rows]).reshape(w.shape)
    torch.testing.assert_close(m(w), by_hand)


def test_default_init_is_identity_plus_small_noise():
    torch.manual_seed(0)
    m = KernelModulator(49)  # a 7x7 kernel gives 2 x 2401 samples
    for u in m.weights:
        noise = u.detach() - torch.eye(49)
        assert abs(noise.mean().item()) < 1e-4
        assert 0.0009 < noise.std().item() < 0.0011  # Eq. 4: N(0, 0.001)


def test_default_init_preserves_weights():
    """With U = I + E (E ~ N(0, 1e-3)), w~ = (I + E2) tanh((I + E1) w).

    tanh(x) = x - x^3/3 + O(x^5), so the relative error per layer is about
    sqrt(15) / 3 * sigma^2 (the cubic term for Gaussian weights of std sigma) plus
    about 2 * sqrt(k) * 1e-3 from the noise. He-initialised CIFAR ResNet kernels have
    sigma <= 0.12, so the bound below is < 3% for every layer (Fig. 3A: "the
    modulated weights preserve the random convolution weight values").
    """
    net = build_backbone("resnet32", num_classes=10)
    bases = {n: m.weight.detach().clone() for n, m in net.named_modules() if isinstance(m, nn.Conv2d)}
    add_kernel_modulators(net)
    for name, m in net.named_modules():
        if isinstance(m, nn.Conv2d):
            base = bases[name]
            sigma = base.std().item()
            bound = 1.5 * (math.sqrt(15) / 3 * sigma**2 + 2 * 3 * 1e-3)
            rel = ((m.weight - base).norm() / base.norm()).item()
            assert rel < bound, (name, rel, bound)


@pytest.mark.parametrize("activation", ["tanh", "sin", "relu", "leaky_relu"])
@pytest.mark.parametrize("init", ["default", "orthogonal", "diagonal"])
def test_ablation_variants_run_and_train(activation, init):
    conv = nn.Conv2d(4, 8, 3, padding=1)
    add_kernel_modulators(conv, {"activation": activation, "init": init, "depth": 3})
    mod = conv.parametrizations.weight[0]
    conv(torch.randn(2, 4, 8, 8)).square().mean().backward()
    assert all(p.grad is not None for p in mod.parameters())
    if init == "orthogonal":
        for u in mod.weights:
            torch.testing.assert_close(u @ u.t(), torch.eye(9), atol=1e-5, rtol=0)
    if init == "diagonal":
        assert all(u.shape == (9,) for u in mod.weights)


def test_leaky_relu_slope_is_0_1():
    m = KernelModulator(1, ModulatorConfig(activation="leaky_relu", depth=2, init_std=0.0))
    assert torch.allclose(m(torch.tensor([[-1.0]])), torch.tensor([[-0.1]]))


@pytest.mark.parametrize(
    "bad",
    [{"depth": 0}, {"depth": 51}, {"activation": "gelu"}, {"init": "xavier"}, {"init_std": -1.0}, {"width": 3}],
)
def test_invalid_modulator_config_is_refused(bad):
    with pytest.raises(ConfigError):
        ModulatorConfig.from_dict(bad)


def test_fold_gives_plain_model_with_identical_outputs():
    net = build_backbone("resnet20", num_classes=10).eval()
    add_kernel_modulators(net)
    with torch.no_grad():  # move the modulators away from identity, as training would
        for m in net.modules():
            if isinstance(m, KernelModulator):
                for u in m.weights:
                    u.add_(0.1 * torch.randn_like(u))
    x = torch.randn(4, 3, 32, 32)
    expected = net(x)
    fold_modulators(net)
    assert not any(isinstance(m, KernelModulator) for m in net.modules())
    assert not any(is_modulated(m) for m in net.modules())
    assert all(type(p) is nn.Parameter for p in net.parameters())
    torch.testing.assert_close(net(x), expected, atol=1e-5, rtol=1e-5)
    # a folded model is an ordinary network: its state dict loads into a fresh backbone
    fresh = build_backbone("resnet20", num_classes=10).eval()
    fresh.load_state_dict(net.state_dict())
    torch.testing.assert_close(fresh(x), expected, atol=1e-5, rtol=1e-5)


def test_folding_a_deep_copy_leaves_the_original_intact():
    import copy

    net = build_backbone("resnet20", num_classes=10).eval()
    add_kernel_modulators(net)
    x = torch.randn(2, 3, 32, 32)
    expected = net(x)
    folded = fold_modulators(copy.deepcopy(net))
    torch.testing.assert_close(folded(x), expected, atol=1e-5, rtol=1e-5)
    assert all(is_modulated(m) for m in net.modules() if isinstance(m, nn.Conv2d))
    torch.testing.assert_close(net(x), expected)  # the original still works
