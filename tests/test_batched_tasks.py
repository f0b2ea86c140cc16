"""The tasks of a meta-batch batched with vmap (kmexp.batched_tasks, issue 17 item 8): the same
query losses and the same (second-order) meta-gradient as the task-by-task loop, for MAML, ANIL
and KM on both Conv4 backbones; the config switch and where it applies."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from kmexp.batched_tasks import batch_norm_by_hand, batched_query_logits, unsupported_reason, use_batched_tasks
from kmexp.errors import ConfigError
from kmexp.inner_loop import InnerLoop, inner_loop_names
from kmexp.lit.fewshot import FewShotModule, MetaConfig
from kmexp.methods import build_model
from kmexp.reporting.runs import run_identity

OUTER = ["convolution", "implicit", "explicit", "classifier"]
INNER = {"maml": ["convolution", "implicit", "classifier"], "anil": ["classifier"], "km": ["explicit", "classifier"]}
BACKBONES = {"conv4_omniglot": (1, 28), "conv4_miniimagenet": (3, 84)}


def conv4(method: str, backbone: str, ways: int) -> nn.Module:
    return build_model({
        "backbone": {"name": backbone, "hidden": 8}, "num_classes": ways,
        "method": {"name": method, "components": OUTER}, "modulator": {}, "sharing": {"strategy": "none"},
    })


def tasks(n_tasks: int, ways: int, shots: int, query: int, channels: int, size: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "support_x": torch.randn(n_tasks, ways * shots, channels, size, size, generator=g),
        "support_y": torch.arange(ways).repeat_interleave(shots).repeat(n_tasks, 1),
        "query_x": torch.randn(n_tasks, ways * query, channels, size, size, generator=g),
        "query_y": torch.arange(ways).repeat_interleave(query).repeat(n_tasks, 1),
    }


def sequential(inner: InnerLoop, params, batch, lr, steps, first_order) -> torch.Tensor:
    losses = []
    for sx, sy, qx, qy in zip(batch["support_x"], batch["support_y"], batch["query_x"], batch["query_y"], strict=True):
        losses.append(F.cross_entropy(inner.forward(inner.adapt(params, sx, sy, lr, steps, first_order), qx), qy))
    return torch.stack(losses)


def batched(inner: InnerLoop, params, batch, lr, steps, first_order) -> torch.Tensor:
    logits = batched_query_logits(inner, params, batch["support_x"], batch["support_y"], batch["query_x"], lr, steps,
                                  first_order)
    return torch.stack([F.cross_entropy(lg, qy) for lg, qy in zip(logits, batch["query_y"], strict=True)])


def meta_gradients(method, backbone, dtype, lr, first_order=False, steps=2):
    """(sequential losses, sequential meta-gradient, batched losses, batched meta-gradient, names)."""
    torch.manual_seed(0)
    net = conv4(method, backbone, ways=3).to(dtype)
    inner = InnerLoop(net, inner_loop_names(net, INNER[method]))
    channels, size = BACKBONES[backbone]
    batch = {k: v.to(dtype) if v.is_floating_point() else v
             for k, v in tasks(3, ways=3, shots=2, query=2, channels=channels, size=size).items()}
    params = inner.parameters()
    outer = list(params.values())
    ref_losses = sequential(inner, params, batch, lr, steps, first_order)
    ref = torch.autograd.grad(ref_losses.mean(), outer)
    losses = batched(inner, params, batch, lr, steps, first_order)
    got = torch.autograd.grad(losses.mean(), outer)
    if method == "anil":
        assert inner.head_only  # the features-once path is the one batched here
    return ref_losses, ref, losses, got, list(params)


@pytest.mark.parametrize("method", ["maml", "anil", "km"])
@pytest.mark.parametrize("backbone", ["conv4_omniglot", "conv4_miniimagenet"])
@pytest.mark.parametrize("first_order", [False, True])
def test_batched_meta_gradient_equals_the_sequential_loop(method, backbone, first_order):
    """Float64, a large inner step (0.4, 2 steps): agreement to 1e-9 on every parameter."""
    ref_losses, ref, losses, got, names = meta_gradients(method, backbone, torch.float64, 0.4, first_order)
    torch.testing.assert_close(losses, ref_losses, rtol=1e-12, atol=1e-12)
    for name, a, b in zip(names, got, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("method", ["maml", "anil", "km"])
def test_float32_batched_meta_gradient_is_within_1e_5_of_the_sequential_loop(method):
    """Float32 with MAML's mini-ImageNet inner step (0.01): within 1e-5 (plus 1e-4 relative)
    of the sequential loop. The two differ by float32 rounding (grouped vs single convolutions),
    not by method: both are the same distance from the float64 meta-gradient (measured: 5.6e-6
    and 1.3e-5 for ANIL, 5e-6 and 2e-6 for MAML and KM, on gradients up to 1.6)."""
    _, ref, _, got, names = meta_gradients(method, "conv4_miniimagenet", torch.float32, 0.01)
    for name, a, b in zip(names, got, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("method", ["maml", "km"])
def test_second_order_terms_are_kept_not_dropped(method):
    """In float64 the batched and the sequential meta-gradients agree to 1e-10, and the
    first-order gradient differs from both: the Hessian-vector terms are there."""
    torch.manual_seed(1)
    net = conv4(method, "conv4_omniglot", ways=3).double()
    inner = InnerLoop(net, inner_loop_names(net, INNER[method]))
    batch = {k: v.double() if v.is_floating_point() else v for k, v in tasks(2, 3, 1, 2, 1, 28, seed=3).items()}
    params = inner.parameters()
    outer = list(params.values())
    ref = torch.autograd.grad(sequential(inner, params, batch, 0.5, 2, False).mean(), outer)
    got = torch.autograd.grad(batched(inner, params, batch, 0.5, 2, False).mean(), outer)
    first = torch.autograd.grad(batched(inner, params, batch, 0.5, 2, True).mean(), outer)
    assert max(float((a - b).abs().max()) for a, b in zip(got, ref, strict=True)) < 1e-10
    assert max(float((a - b).abs().max()) for a, b in zip(first, ref, strict=True)) > 1e-4


def test_batch_norm_normalizes_each_task_with_its_own_statistics():
    """Two tasks whose inputs differ by a scale and shift give the same normalized features:
    the statistics are per task, not over the meta-batch."""
    bn = nn.BatchNorm2d(4, track_running_stats=False)
    x = torch.randn(6, 4, 5, 5)
    both = torch.stack([x, 3 * x + 2])
    with batch_norm_by_hand(bn):
        out = torch.vmap(bn)(both)
    torch.testing.assert_close(out[0], F.batch_norm(x, None, None, bn.weight, bn.bias, training=True), atol=1e-5,
                               rtol=1e-5)
    torch.testing.assert_close(out[1], out[0], atol=1e-4, rtol=1e-4)
    assert "forward" not in vars(bn)  # restored


def test_where_batching_applies():
    net = conv4("maml", "conv4_omniglot", ways=3)
    assert unsupported_reason(net) is None
    assert use_batched_tasks("auto", torch.device("cuda", 0), net)
    assert not use_batched_tasks("auto", torch.device("cpu"), net)
    assert use_batched_tasks(True, torch.device("cpu"), net)
    assert not use_batched_tasks(False, torch.device("cuda", 0), net)
    with_running_stats = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    assert "running statistics" in unsupported_reason(with_running_stats)
    assert not use_batched_tasks("auto", torch.device("cuda", 0), with_running_stats)
    with pytest.raises(ValueError, match="running statistics"), batch_norm_by_hand(with_running_stats):
        pass


META = {"ways": 3, "shots": 1, "query": 2, "meta_batch_size": 2, "inner_lr": 0.1, "inner_steps": 1,
        "test_inner_lr": 0.1, "test_inner_steps": 2}


def fewshot_module(method: str, batched_tasks) -> FewShotModule:
    torch.manual_seed(0)
    model = {"backbone": {"name": "conv4_omniglot", "hidden": 8}, "num_classes": 3, "method": {"name": method},
             "modulator": {}, "sharing": {"strategy": "none"}}
    return FewShotModule(model=model, optim={"name": "adam", "lr": 1e-3}, meta={**META, "batched_tasks": batched_tasks})


@pytest.mark.parametrize("method", ["maml", "km"])
def test_module_training_and_evaluation_are_the_same_with_the_switch_on(method):
    batch = tasks(2, 3, 1, 2, 1, 28, seed=5)
    results = {}
    for mode in (False, True):
        module = fewshot_module(method, mode)
        loss = module.training_step(batch, 0)
        grads = torch.autograd.grad(loss, [p for p in module.net.parameters() if p.requires_grad])
        eval_losses, eval_accs = module._evaluate(batch)
        results[mode] = (loss.detach(), grads, eval_losses, eval_accs)
    (l0, g0, e0, a0), (l1, g1, e1, a1) = results[False], results[True]
    torch.testing.assert_close(l1, l0, atol=1e-5, rtol=1e-5)
    for a, b in zip(g1, g0, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(e1, e0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a1, a0)


def test_the_switch_is_validated_and_is_not_part_of_a_runs_identity():
    with pytest.raises(ConfigError, match="batched_tasks"):
        MetaConfig.from_dict({**META, "batched_tasks": "yes"})
    assert MetaConfig.from_dict(META).batched_tasks == "auto"
    base = {"seed": 0, "meta": {**META, "batched_tasks": "auto"}}
    assert run_identity(OmegaConf.create(base)) == run_identity(
        OmegaConf.create({**base, "meta": {**META, "batched_tasks": False}}))
    assert run_identity(OmegaConf.create(base)) != run_identity(
        OmegaConf.create({**base, "meta": {**META, "inner_lr": 0.3, "batched_tasks": "auto"}}))
