"""Optimizer semantics as the papers ran them.

- Model patches (Sec. 5) train with TensorFlow's RMSProp: mean square initialized to 1,
  epsilon inside the square root, momentum over the lr-scaled step.
- He et al. (2016) drop the CIFAR lr at 32k and 48k *iterations*; ResNet-110 warms up at
  lr 0.01 for ~400 iterations (the TBN row of KM Table I).
"""

import math

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from kmexp.optim import build_optimizer, build_scheduler
from tests.conftest import cell
from tests.test_configs import compose_cfg


def tf_rmsprop(w: float, grads: list[float], lr: float, decay: float, momentum: float, eps: float) -> float:
    """TensorFlow's ApplyRMSProp, by hand: ms <- decay*ms + (1-decay)*g^2 (ms starts at 1),
    mom <- momentum*mom + lr*g/sqrt(ms + eps), w <- w - mom."""
    ms, mom = 1.0, 0.0
    for g in grads:
        ms = decay * ms + (1 - decay) * g * g
        mom = momentum * mom + lr * g / math.sqrt(ms + eps)
        w -= mom
    return w


def test_model_patch_rmsprop_is_tensorflows():
    cfg = OmegaConf.to_container(compose_cfg(["optim=rmsprop_mp"]).optim, resolve=True)
    assert (cfg["lr"], cfg["alpha"], cfg["momentum"], cfg["eps"]) == (0.045, 0.9, 0.9, 1.0)
    w = nn.Parameter(torch.tensor([0.5, -2.0], dtype=torch.float64))
    opt = build_optimizer([{"params": [w]}], cfg)
    grads = [[3.0, -0.25], [-1.0, 0.5]]
    for g in grads:
        w.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    for i, w0 in enumerate([0.5, -2.0]):
        expected = tf_rmsprop(w0, [g[i] for g in grads], lr=0.045, decay=0.9, momentum=0.9, eps=1.0)
        assert w[i].item() == pytest.approx(expected, rel=1e-12, abs=1e-15)


def lrs(overrides: list[str], steps: list[int]) -> dict[int, float]:
    cfg = OmegaConf.to_container(compose_cfg(overrides).optim, resolve=True)
    opt = build_optimizer([{"params": [nn.Parameter(torch.zeros(1))]}], cfg)
    sched = build_scheduler(opt, cfg)
    assert sched["interval"] == "step"
    seen, t = {}, 0
    for target in sorted(steps):
        while t < target:
            opt.step()
            sched["scheduler"].step()
            t += 1
        seen[target] = opt.param_groups[0]["lr"]
    return seen


def test_resnet_schedule_drops_at_he_et_al_iterations():
    lr = lrs(cell("table1", "km"), [0, 31_999, 32_000, 47_999, 48_000])
    assert lr == pytest.approx({0: 0.1, 31_999: 0.1, 32_000: 0.01, 47_999: 0.01, 48_000: 0.001})


def test_resnet110_warms_up_at_001_for_400_iterations():
    lr = lrs(cell("table1", "tbn"), [0, 399, 400, 31_999, 32_000])
    assert lr == pytest.approx({0: 0.01, 399: 0.01, 400: 0.1, 31_999: 0.1, 32_000: 0.01})
    assert lrs(cell("table1", "bl"), [0])[0] == pytest.approx(0.1)  # only ResNet-110 warms up
