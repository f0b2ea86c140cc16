"""The fast evaluation of the kernel modulator (KM Sec. III-A, Eq. 3) against the row-by-row form.

``KernelModulator.forward`` applies Eq. 3 as ``U @ X^T`` on the transposed kernel rows, 1x1
kernels as scalar products and diagonal modulators elementwise, with hand-written backward
passes. Here the same networks run once with it and once with the reference
implementation it replaced (``modulate_rows``: ``rows @ U^T`` per layer, autograd's gradients) and every
output, every gradient of every trainable parameter and the second-order gradients of a
MAML-style inner step must agree.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kmexp.modulation import KernelModulator, add_kernel_modulators, fold_modulators, modulate_rows


class MixedKernels(nn.Module):
    """3x3, 1x1, 7x7, 5x3, depthwise and grouped convolutions; ``wide`` adds layers with
    more than 4 x 2048 kernel rows (the chunked reduction, with and without a remainder)."""

    def __init__(self, wide: bool = False):
        super().__init__()
        layers = [nn.Conv2d(3, 8, 7, padding=3), nn.Conv2d(8, 16, 3, padding=1), nn.Conv2d(16, 16, 1),
                  nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.Conv2d(16, 16, 3, padding=1, groups=4),
                  nn.Conv2d(16, 12, (5, 3), padding=(2, 1))]
        if wide:
            layers += [nn.Conv2d(12, 130, 1), nn.Conv2d(130, 70, 3, padding=1),  # 9,100 rows: remainder
                       nn.Conv2d(70, 128, 1), nn.Conv2d(128, 128, 3, padding=1),  # 16,384 rows: exact chunks
                       nn.Conv2d(128, 12, 1)]
        self.convs = nn.ModuleList(layers)
        self.norm = nn.GroupNorm(4, 12)
        self.head = nn.Linear(12, 5)

    def forward(self, x):
        for conv in self.convs:
            x = torch.tanh(conv(x))
        return self.head(self.norm(x).mean((2, 3)))


def _pair(modulator: dict, wide: bool = False, train_base: bool = False, dtype=torch.float32):
    torch.manual_seed(0)
    net = MixedKernels(wide).to(dtype)
    add_kernel_modulators(net, modulator)
    for m in net.modules():
        if isinstance(m, KernelModulator):  # move away from the identity so every layer matters
            for u in m.weights:
                u.data.add_(0.2 * torch.randn_like(u))
    for name, p in net.named_parameters():
        p.requires_grad_(train_base or "original" not in name)
    return net, copy.deepcopy(net)


def _loss(net, x, y):
    return F.cross_entropy(net(x), y)


def _grads(net, x, y):
    net.zero_grad(set_to_none=True)
    out = net(x)
    F.cross_entropy(out, y).backward()
    return out.detach(), {n: p.grad.clone() for n, p in net.named_parameters() if p.requires_grad}


def _compare(fast, ref, monkeypatch, x, y, atol=1e-6, rtol=1e-5):
    out_fast, g_fast = _grads(fast, x, y)
    with monkeypatch.context() as mp:
        mp.setattr(KernelModulator, "forward", modulate_rows)
        out_ref, g_ref = _grads(ref, x, y)
    torch.testing.assert_close(out_fast, out_ref, atol=atol, rtol=rtol)
    assert g_fast.keys() == g_ref.keys()
    for name in g_ref:
        torch.testing.assert_close(g_fast[name], g_ref[name], atol=atol, rtol=rtol, msg=lambda m, n=name: f"{n}: {m}")
    return g_fast


CONFIGS = [
    {},  # the paper's default: depth 2, tanh, I + N(0, 0.001)
    {"depth": 1}, {"depth": 4, "activation": "sin"}, {"activation": "relu", "init": "orthogonal"},
    {"activation": "leaky_relu", "depth": 3}, {"init": "diagonal"}, {"init": "diagonal", "depth": 3, "activation": "sin"},
]


@pytest.mark.parametrize("modulator", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()) or "default")
def test_outputs_and_every_gradient_match_the_row_by_row_modulator(modulator, monkeypatch):
    fast, ref = _pair(modulator)
    x, y = torch.randn(4, 3, 10, 10), torch.tensor([0, 1, 2, 3])
    grads = _compare(fast, ref, monkeypatch, x, y)
    trainable = [n for n, p in fast.named_parameters() if p.requires_grad]
    assert set(grads) == set(trainable) and any("parametrizations" in n for n in grads)
    assert all(g.abs().sum() > 0 for n, g in grads.items() if "parametrizations" in n)  # every modulator layer gets a gradient


def test_large_layers_use_the_chunked_reduction_and_still_match(monkeypatch):
    fast, ref = _pair({}, wide=True)
    rows = [m.weight.shape[0] * m.weight.shape[1] for m in fast.convs if m.kernel_size == (3, 3)]
    assert max(rows) >= 4 * 2048 and any(r % 2048 for r in rows if r >= 4 * 2048)
    _compare(fast, ref, monkeypatch, torch.randn(2, 3, 8, 8), torch.tensor([0, 4]), atol=1e-6, rtol=1e-4)


def test_trainable_base_kernels_get_the_same_gradient(monkeypatch):
    """With the base kernels trainable too (the gradient flows through the first layer to W)."""
    fast, ref = _pair({"depth": 3}, train_base=True)
    grads = _compare(fast, ref, monkeypatch, torch.randn(3, 3, 9, 9), torch.tensor([1, 2, 3]))
    assert any(n.endswith("original") for n in grads)


def test_double_precision_matches_tightly(monkeypatch):
    fast, ref = _pair({}, dtype=torch.float64)
    _compare(fast, ref, monkeypatch, torch.randn(2, 3, 8, 8, dtype=torch.float64), torch.tensor([0, 1]),
             atol=1e-12, rtol=1e-10)


def test_second_order_inner_step_matches(monkeypatch):
    """MAML-style (KM Sec. IV-C): one differentiable inner step on the modulators, then the
    meta-gradient through it; the hand-written backward passes must be differentiable."""
    def meta_grads(net):
        mods = [p for n, p in net.named_parameters() if "parametrizations" in n and "original" not in n]
        x, y = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2])
        inner = torch.autograd.grad(_loss(net, x, y), mods, create_graph=True)
        penalty = sum((g * g).sum() for g in inner)  # depends on the inner gradients only through 2nd order terms
        return torch.autograd.grad(penalty, mods)

    fast, ref = _pair({})
    got = meta_grads(fast)
    with monkeypatch.context() as mp:
        mp.setattr(KernelModulator, "forward", modulate_rows)
        want = meta_grads(ref)
    assert any(g.abs().sum() > 0 for g in want)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_autocast_bf16_runs_and_stays_close(monkeypatch):
    """Under CPU bf16 autocast the incoming gradient is bf16; the backward promotes it."""
    fast, ref = _pair({})
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([0, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, g_fast = _grads(fast, x, y)
        with monkeypatch.context() as mp:
            mp.setattr(KernelModulator, "forward", modulate_rows)
            _, g_ref = _grads(ref, x, y)
    for name, g in g_ref.items():
        assert g_fast[name].dtype == g.dtype
        torch.testing.assert_close(g_fast[name], g, atol=2e-2, rtol=5e-2)


def test_folded_weights_are_contiguous_and_equal_the_reference(monkeypatch):
    fast, ref = _pair({})
    fold_modulators(fast)
    with monkeypatch.context() as mp:
        mp.setattr(KernelModulator, "forward", modulate_rows)
        fold_modulators(ref)
    for a, b in zip(fast.convs, ref.convs, strict=True):
        assert a.weight.is_contiguous()
        torch.testing.assert_close(a.weight, b.weight, atol=1e-6, rtol=1e-5)
