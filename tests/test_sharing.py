"""Inter-layer kernel sharing (kernel-sharing paper, Sec. 2, Eq. 1; Sec. 3.1 and 3.3)."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kmexp.components import count_parameters
from kmexp.errors import ConfigError
from kmexp.methods import build_model
from kmexp.models import build_backbone
from kmexp.sharing import apply_sharing, conv_signature, isomorphic_classes, shared_kernels
from tests.conftest import model_cfg


def convmixer(dim=8, depth=8, **kw):
    return build_backbone("convmixer", num_classes=10, dim=dim, depth=depth, **kw)


def se_resnet(depth=3):
    return build_backbone("se_resnet", num_classes=10, depth=depth, widths=[16, 32, 64], stem_width=8)


def depthwise(i):
    return f"blocks.{i}.0.fn.0"


def pointwise(i):
    return f"blocks.{i}.1"


def test_isomorphic_classes_of_convmixer_are_depthwise_and_pointwise():
    net = convmixer(depth=5)
    classes = sorted(isomorphic_classes(net))
    assert classes == sorted([[depthwise(i) for i in range(5)], [pointwise(i) for i in range(5)]])


def test_every_field_of_the_signature_separates_layers():
    base = dict(in_channels=4, out_channels=4, kernel_size=3, stride=1, padding=1, dilation=1, groups=1, bias=True)
    variants = {"in_channels": 2, "out_channels": 8, "kernel_size": 5, "stride": 2, "padding": 2, "dilation": 2,
                "groups": 4, "bias": False}
    ref = conv_signature(nn.Conv2d(**base))
    assert conv_signature(nn.Conv2d(**base)) == ref
    for field, value in variants.items():
        assert conv_signature(nn.Conv2d(**{**base, field: value})) != ref, field
    assert conv_signature(nn.Conv2d(**base, padding_mode="reflect")) != ref


@pytest.mark.parametrize("num_kernels,per_group", [(2, 8), (4, 4), (8, 2)])
def test_convmixer_kernels_split_blocks_into_consecutive_groups(num_kernels, per_group):
    """Sec. 3.1: 2 kernels = full sharing, 4 = halves, 8 = quarters of the blocks."""
    net = convmixer(depth=8)
    groups = apply_sharing(net, {"strategy": "kernels", "num_kernels": num_kernels})
    assert len(groups) == num_kernels
    expected = [[depthwise(i) for i in range(s, s + per_group)] for s in range(0, 8, per_group)]
    expected += [[pointwise(i) for i in range(s, s + per_group)] for s in range(0, 8, per_group)]
    assert sorted(list(g.layers) for g in groups) == sorted(expected)
    for layers in expected:
        convs = [net.get_submodule(n) for n in layers]
        assert all(c.weight is convs[0].weight and c.bias is convs[0].bias for c in convs)
    # different groups keep different tensors
    assert len({id(net.get_submodule(g.layers[0]).weight) for g in groups}) == num_kernels
    assert len(shared_kernels(net)) == num_kernels


def test_full_sharing_counts_each_kernel_once_and_keeps_norms_separate():
    net = convmixer(dim=8, depth=6)
    before = count_parameters(net)["params/total"]
    apply_sharing(net, {"strategy": "kernels", "num_kernels": 2})
    dw, pw = 8 * 81 + 8, 8 * 8 + 8  # kernel + bias
    assert count_parameters(net)["params/total"] == before - 5 * (dw + pw)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len({id(b.weight) for b in bns}) == len(bns) == 1 + 2 * 6


def test_shared_network_is_the_untied_one_with_the_first_layers_kernels_everywhere():
    net = convmixer(depth=4)
    ref = copy.deepcopy(net)
    apply_sharing(net, {"strategy": "kernels", "num_kernels": 2})
    for i in range(1, 4):
        for layer_of in (depthwise, pointwise):
            ref.get_submodule(layer_of(i)).load_state_dict(ref.get_submodule(layer_of(0)).state_dict())
    net_state = net.state_dict()
    assert all(torch.equal(net_state[k], v) for k, v in ref.state_dict().items())
    x = torch.randn(2, 3, 8, 8)
    net.eval(), ref.eval()
    torch.testing.assert_close(net(x), ref(x))


def test_gradient_of_a_shared_kernel_is_the_sum_over_its_uses():
    """Eq. 1: dL/dw^g = sum_l dL/dw_l^g, checked against an untied copy with equal weights."""
    torch.manual_seed(0)
    shared = convmixer(dim=6, depth=4)
    apply_sharing(shared, {"strategy": "kernels", "num_kernels": 2})
    untied = copy.deepcopy(shared)
    for m in untied.modules():  # give every layer its own copy of the tensors
        if isinstance(m, nn.Conv2d):
            m.weight = nn.Parameter(m.weight.detach().clone())
            m.bias = nn.Parameter(m.bias.detach().clone())
    assert not shared_kernels(untied)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    for net in (shared, untied):
        F.cross_entropy(net(x), y).backward()
    for layer_of in (depthwise, pointwise):
        expected_w = sum(untied.get_submodule(layer_of(i)).weight.grad for i in range(4))
        expected_b = sum(untied.get_submodule(layer_of(i)).bias.grad for i in range(4))
        torch.testing.assert_close(shared.get_submodule(layer_of(0)).weight.grad, expected_w)
        torch.testing.assert_close(shared.get_submodule(layer_of(0)).bias.grad, expected_b)
        assert expected_w.abs().sum() > 0


def test_an_optimizer_step_keeps_shared_layers_identical():
    net = convmixer(dim=4, depth=4)
    apply_sharing(net, {"strategy": "kernels", "num_kernels": 2})
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == count_parameters(net)["params/total"]
    before = net.get_submodule(depthwise(0)).weight.detach().clone()
    F.cross_entropy(net(torch.randn(2, 3, 8, 8)), torch.tensor([1, 2])).backward()
    opt.step()
    after = net.get_submodule(depthwise(0)).weight
    assert not torch.equal(before, after)
    assert all(torch.equal(net.get_submodule(depthwise(i)).weight, after) for i in range(4))


@pytest.mark.parametrize("stages", [[1, 2, 3], [2, 3], [3]])
def test_se_resnet_stage_sharing_ties_the_isomorphic_convs_of_each_chosen_stage(stages):
    """Sec. 3.3: one sharing group per stage: conv2 of every block and conv1 of blocks 2..d."""
    d = 3
    net = se_resnet(depth=d)
    groups = apply_sharing(net, {"strategy": "stages", "stages": stages})
    assert [g.layers[0].split(".")[0] for g in groups] == [f"layer{s}" for s in stages]
    for g, s in zip(groups, stages, strict=True):
        expected = [f"layer{s}.0.conv2"] + [f"layer{s}.{b}.{c}" for b in range(1, d) for c in ("conv1", "conv2")]
        assert list(g.layers) == expected and len(expected) == 2 * d - 1
    for s in {1, 2, 3} - set(stages):  # other stages keep a kernel per layer
        convs = [m for n, m in net.named_modules() if n.startswith(f"layer{s}.") and isinstance(m, nn.Conv2d)]
        assert len({id(c.weight) for c in convs}) == len(convs)
    assert not any(isinstance(net.get_submodule(n), nn.Linear) for g in groups for n in g.layers)


def test_isomorphic_strategy_with_scopes_and_chunks():
    net = convmixer(depth=6)
    groups = apply_sharing(net, {"strategy": "isomorphic", "scopes": ["blocks"], "chunks": 3})
    assert sorted(list(g.layers) for g in groups) == sorted(
        [[layer(i), layer(i + 1)] for layer in (depthwise, pointwise) for i in (0, 2, 4)])


def test_explicit_groups_by_pattern():
    net = convmixer(depth=4)
    groups = apply_sharing(net, {"groups": [["blocks.*.1"], [depthwise(0), depthwise(3)]]})
    assert [list(g.layers) for g in groups] == [[pointwise(i) for i in range(4)], [depthwise(0), depthwise(3)]]
    assert net.get_submodule(depthwise(3)).weight is net.get_submodule(depthwise(0)).weight
    assert net.get_submodule(depthwise(1)).weight is not net.get_submodule(depthwise(0)).weight


def test_sharing_non_isomorphic_layers_names_them():
    net = se_resnet(depth=2)
    with pytest.raises(ConfigError) as e:
        apply_sharing(net, {"groups": [["layer2.0.conv1", "layer2.0.conv2"]]})
    msg = str(e.value)
    assert "layer2.0.conv1" in msg and "layer2.0.conv2" in msg and "isomorphic" in msg
    assert "16->32" in msg and "32->32" in msg
    # nothing was tied
    assert net.get_submodule("layer2.0.conv1").weight is not net.get_submodule("layer2.0.conv2").weight


def test_stem_and_pointwise_layers_are_not_isomorphic():
    net = convmixer(dim=8, depth=2)
    with pytest.raises(ConfigError, match=r"stem\.0.*blocks\.0\.1|blocks\.0\.1.*stem\.0"):
        apply_sharing(net, {"groups": [["stem.0", "blocks.0.1"]]})


@pytest.mark.parametrize(
    "cfg,message",
    [
        ({"strategy": "kernels", "num_kernels": 3}, "multiple of the number of classes"),
        ({"strategy": "kernels", "num_kernels": 20}, "cannot split 4 isomorphic layers"),
        ({"strategy": "kernels"}, "positive integer num_kernels"),
        ({"strategy": "stages", "stages": [1]}, "no stage module"),
        ({"strategy": "stages"}, "list of 1-based stage numbers"),
        ({"strategy": "layers"}, "is not one of"),
        ({"strategy": "kernels", "num_kernels": 2, "groups": [["stem.0"]]}, "strategy=none"),
        ({"groups": [["nothing.*"]]}, "matches no Conv2d"),
        ({"groups": [["blocks.*.1"], ["blocks.0.1", "blocks.1.1"]]}, "is in group 0 and group 1"),
        ({"strategy": "none", "kernels": 2}, "unknown sharing option"),
        ({"strategy": "isomorphic", "scopes": ["head"]}, "no isomorphic convolution layers"),
    ],
)
def test_bad_sharing_config_gives_one_clear_error(cfg, message):
    with pytest.raises(ConfigError, match=message):
        apply_sharing(convmixer(depth=4), cfg)


def test_sharing_must_come_before_modulators():
    from kmexp.modulation import add_kernel_modulators

    net = convmixer(depth=2)
    add_kernel_modulators(net)
    with pytest.raises(ConfigError, match="apply sharing before modulators"):
        apply_sharing(net, {"strategy": "kernels", "num_kernels": 2})


def test_build_model_applies_sharing_before_the_method_and_state_dicts_round_trip():
    cfg = model_cfg("full", backbone="convmixer", sharing={"strategy": "kernels", "num_kernels": 2})
    cfg["backbone"].update(dim=8, depth=4)
    net = build_model(cfg)
    assert len(shared_kernels(net)) == 2
    assert count_parameters(net)["params/trainable"] == count_parameters(net)["params/total"]
    other = build_model(cfg)  # a checkpoint loads into a freshly built shared model, ties intact
    other.load_state_dict(net.state_dict())
    assert len(shared_kernels(other)) == 2
    x = torch.randn(2, 3, 8, 8)
    net.eval(), other.eval()
    torch.testing.assert_close(net(x), other(x))
