"""Only the method's components train (a method is a set of trainable components, kmexp.methods)."""

import pytest
import torch

from kmexp.components import tag_parameters
from kmexp.lit.classification import ClassificationModule
from tests.conftest import METHODS, model_cfg

OPTIM = {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "scheduler": {"name": "none"}}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_steps_touch_exactly_the_methods_components(method):
    module = ClassificationModule(model=model_cfg(method, backbone="resnet20"), optim=OPTIM)
    net = module.net
    optimizer = module.configure_optimizers()
    optimized = {id(p) for g in optimizer.param_groups for p in g["params"]}
    wanted = set(METHODS[method][0])
    tags = tag_parameters(net)
    params = dict(net.named_parameters())
    trainable = {n for n in params if tags[n] & wanted}
    assert trainable, "a method must train something"
    # the optimizer sees exactly the trainable parameters
    assert optimized == {id(params[n]) for n in trainable}
    assert all(params[n].requires_grad == (n in trainable) for n in params)

    before = {n: p.detach().clone() for n, p in params.items()}
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    for step in range(3):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        if step == 0:  # gradients reach exactly the method's components
            for n, p in params.items():
                if n in trainable:
                    assert p.grad is not None and p.grad.abs().sum() > 0, n
                else:
                    assert p.grad is None, n
        optimizer.step()
    for n, p in params.items():
        if n in trainable:
            assert not torch.equal(p, before[n]), f"trainable {n} did not change"
        else:
            assert torch.equal(p, before[n]), f"frozen {n} changed"


def test_frozen_norm_stats_keep_running_statistics():
    cfg = model_cfg("tbl1", backbone="resnet20")
    cfg["method"]["norm_stats"] = "frozen"
    module = ClassificationModule(model=cfg, optim=OPTIM).train()
    bn = module.net.bn1
    mean = bn.running_mean.clone()
    module(torch.randn(4, 3, 32, 32))
    assert not bn.training and torch.equal(bn.running_mean, mean)


def test_modulators_get_no_weight_decay():
    module = ClassificationModule(model=model_cfg("km", backbone="resnet20"), optim=OPTIM)
    groups = module.configure_optimizers().param_groups
    tags = tag_parameters(module.net)
    ids = {id(p): n for n, p in module.net.named_parameters()}
    for g in groups:
        kinds = {("explicit" in tags[ids[id(p)]]) for p in g["params"]}
        assert len(kinds) == 1
        assert (g["weight_decay"] == 0.0) == kinds.pop()
