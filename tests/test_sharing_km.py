"""Kernel sharing + Kernel Modulation: one modulator per use of a shared (frozen) kernel.

Beyond the papers: method=km on a kernel-shared ConvMixer. Each layer keeps its own
modulator over the shared kernel (kmexp.modulation attaches one per nn.Conv2d), the
shared kernel stays one frozen tensor and is counted once.
"""

import copy

import torch
import torch.nn.functional as F
from torch import nn

from kmexp.components import component_counts, count_parameters
from kmexp.methods import build_model
from kmexp.modulation import fold_modulators
from kmexp.patches import apply_patch, export_patch
from kmexp.sharing import shared_kernels
from tests.conftest import model_cfg

DIM, DEPTH, CLASSES = 8, 4, 10


def shared_km_convmixer(method="km", num_kernels=2):
    cfg = model_cfg(method, backbone="convmixer", sharing={"strategy": "kernels", "num_kernels": num_kernels})
    cfg["backbone"].update(dim=DIM, depth=DEPTH)
    return build_model(cfg)


def modulator(net, layer):
    return net.get_submodule(layer).parametrizations.weight[0]


def test_counts_modulators_per_use_and_the_shared_kernel_once():
    net = shared_km_convmixer()
    dw_uses = [f"blocks.{i}.0.fn.0" for i in range(DEPTH)]
    pw_uses = [f"blocks.{i}.1" for i in range(DEPTH)]
    assert sorted(shared_kernels(net).values()) == sorted([dw_uses, pw_uses])
    assert len({id(modulator(net, n)) for n in dw_uses + pw_uses}) == 2 * DEPTH

    stem = 3 * DIM + DIM  # patch size 1: a 1x1 conv with bias
    shared = (DIM * 81 + DIM) + (DIM * DIM + DIM)  # one depthwise + one pointwise kernel with biases
    norms = 2 * DIM * (1 + 2 * DEPTH)
    head = DIM * CLASSES + CLASSES
    modulators = DEPTH * 2 * 81 * 81 + DEPTH * 2 * 1 + 2 * 1  # 9x9 and 1x1 kernels, depth-2 MLPs; + stem
    counts = count_parameters(net)
    assert counts["params/total"] == stem + shared + norms + head + modulators
    assert counts["params/trainable"] == norms + head + modulators
    assert component_counts(net)["explicit"] == modulators
    # the shared kernels are frozen and appear once among the parameters
    dw_kernel = net.get_submodule(dw_uses[0]).parametrizations.weight.original
    assert not dw_kernel.requires_grad
    assert sum(p is dw_kernel for p in net.parameters()) == 1


def test_modulators_of_different_uses_train_apart_over_a_frozen_shared_kernel():
    torch.manual_seed(0)
    net = shared_km_convmixer()
    uses = [f"blocks.{i}.0.fn.0" for i in range(DEPTH)]
    with torch.no_grad():  # start every depthwise use from the same modulator
        for n in uses[1:]:
            for u, u0 in zip(modulator(net, n).weights, modulator(net, uses[0]).weights, strict=True):
                u.copy_(u0)
    kernel = net.get_submodule(uses[0]).parametrizations.weight.original
    kernel_before = kernel.detach().clone()
    assert all(torch.equal(net.get_submodule(n).weight, net.get_submodule(uses[0]).weight) for n in uses)

    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    x, y = torch.randn(8, 3, 8, 8), torch.arange(8) % CLASSES
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert torch.equal(kernel, kernel_before) and kernel.grad is None
    assert all(net.get_submodule(n).parametrizations.weight.original is kernel for n in uses)
    mods = [torch.cat([u.detach().flatten() for u in modulator(net, n).weights]) for n in uses]
    for i in range(len(uses)):
        for j in range(i + 1, len(uses)):
            assert not torch.allclose(mods[i], mods[j]), (uses[i], uses[j])
            assert not torch.allclose(net.get_submodule(uses[i]).weight, net.get_submodule(uses[j]).weight)


def test_fold_keeps_each_uses_modulated_kernel():
    """Folding must not write one use's modulated weight into the kernel the others share."""
    torch.manual_seed(1)
    net = shared_km_convmixer()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                for u in m.parametrizations.weight[0].weights:
                    u.add_(0.05 * torch.randn_like(u))
    net.eval()
    x = torch.randn(2, 3, 8, 8)
    expected = net(x)
    fold_modulators(net)
    torch.testing.assert_close(net(x), expected)
    assert not shared_kernels(net)  # each use now carries its own (modulated) kernel


def test_patch_of_a_shared_km_model_round_trips(tmp_path):
    torch.manual_seed(2)
    net = shared_km_convmixer()
    with torch.no_grad():
        for p in net.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))
    path = export_patch(net, tmp_path / "patch.safetensors", "km", ["implicit", "explicit", "classifier"])
    torch.manual_seed(2)
    fresh = shared_km_convmixer()
    apply_patch(fresh, path)
    net.eval(), fresh.eval()
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(fresh(x), net(x))
    assert len(shared_kernels(fresh)) == 2


def test_full_training_of_a_shared_model_copies_like_any_model():
    net = shared_km_convmixer(method="full")
    clone = copy.deepcopy(net)
    assert len(shared_kernels(clone)) == 2
    assert count_parameters(clone) == count_parameters(net)
