"""When Kernel Modulation's modulated weights are computed (kmexp.modulated_weights).

Training: once per optimizer step, not once per micro-batch under gradient accumulation,
with the same gradients as backpropagating every micro-batch through the modulators.
Evaluation: once per validation / test / predict loop, with the outputs of the folded
network (KM Sec. I, Fig. 1: a modulated network folds into a plain one).
"""

from __future__ import annotations

import copy
import warnings

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from kmexp.lit.classification import ClassificationModule
from kmexp.methods import build_model
from kmexp.modulated_weights import StepWeights, evaluation_weights, using_weights
from kmexp.modulation import KernelModulator, fold_modulators
from tests.conftest import model_cfg

TINY = {"name": "resnet8", "width": 5, "shortcut": "projection"}  # KM Table I's SN row, 8.0 K parameters
OPTIM = {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 1e-4,
         "scheduler": {"name": "none"}}


def tiny_cfg(method: str = "km") -> dict:
    return model_cfg(method=method, backbone=TINY["name"]) | {"backbone": dict(TINY)}


def count_modulator_calls(net: torch.nn.Module) -> list[int]:
    calls = [0]
    for m in net.modules():
        if isinstance(m, KernelModulator):
            m.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def n_modulators(net: torch.nn.Module) -> int:
    return sum(isinstance(m, KernelModulator) for m in net.modules())


def tiny_km(method: str = "km") -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_model(tiny_cfg(method))
    with torch.no_grad():  # modulators away from the identity, so their gradients matter
        for m in net.modules():
            if isinstance(m, KernelModulator):
                for u in m.weights:
                    u.add_(0.1 * torch.randn_like(u))
    return net


def micro_batches(n: int = 3, size: int = 4):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(size, 3, 16, 16, generator=g), torch.randint(0, 10, (size,), generator=g)) for _ in range(n)]


def test_step_weights_compute_once_and_give_the_per_micro_batch_gradients():
    net = tiny_km()
    reference = copy.deepcopy(net)
    batches = micro_batches()
    for x, y in batches:  # today's implementation: the modulators run in every forward and backward
        F.cross_entropy(reference(x), y).backward()

    calls = count_modulator_calls(net)
    step = StepWeights()
    for x, y in batches:
        F.cross_entropy(step.forward(net, x), y).backward()
    assert calls[0] == n_modulators(net) > 0  # once per optimizer step, not once per micro-batch
    modulator_params = [p for m in net.modules() if isinstance(m, KernelModulator) for p in m.parameters()]
    assert all(p.grad is None for p in modulator_params)  # nothing reached the modulators yet ...
    step.backward()  # ... until the step's one chained backward
    assert not step.open
    ref = dict(reference.named_parameters())
    for name, p in net.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, name
            torch.testing.assert_close(p.grad, ref[name].grad, rtol=1e-5, atol=1e-7, msg=name)
    assert all(p.grad.abs().sum() > 0 for p in modulator_params)


def test_evaluation_weights_are_the_folded_ones():
    net = tiny_km().eval()
    x = torch.randn(5, 3, 16, 16)
    folded = fold_modulators(copy.deepcopy(net))
    calls = count_modulator_calls(net)
    held = evaluation_weights(net)
    with torch.no_grad(), using_weights(held):
        out = [net(x) for _ in range(3)]
    assert calls[0] == n_modulators(net)
    with torch.no_grad():
        expected = folded(x)
    for o in out:
        assert torch.equal(o, expected)


# ------------------------------------------------------------------ through Lightning


def loader(n: int, batch_size: int = 4) -> DataLoader:
    g = torch.Generator().manual_seed(2)
    data = TensorDataset(torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g))
    return DataLoader(data, batch_size=batch_size, shuffle=False)


def fit(module, accumulate: int, steps: int, **trainer_kw) -> pl.Trainer:
    trainer = pl.Trainer(accelerator="cpu", max_steps=steps, accumulate_grad_batches=accumulate,
                         limit_val_batches=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, **trainer_kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, train_dataloaders=loader(4 * accumulate * steps))
    return trainer


def km_module(reuse: bool) -> ClassificationModule:
    torch.manual_seed(0)
    module = ClassificationModule(model=tiny_cfg(), optim=OPTIM)
    module.reuses_parametrized_weights = reuse
    return module


@pytest.mark.parametrize("accumulate", [1, 3])
def test_training_computes_modulated_weights_once_per_optimizer_step(accumulate):
    steps = 2
    module, reference = km_module(reuse=True), km_module(reuse=False)
    start = {k: v.clone() for k, v in module.state_dict().items()}
    calls, ref_calls = count_modulator_calls(module.net), count_modulator_calls(reference.net)
    fit(module, accumulate, steps, gradient_clip_val=0.5)
    fit(reference, accumulate, steps, gradient_clip_val=0.5)
    n = n_modulators(module.net)
    assert calls[0] == n * steps  # once per optimizer step ...
    assert ref_calls[0] == n * steps * accumulate  # ... where every micro-batch's forward ran them before
    ref = dict(reference.named_parameters())
    moved = False
    for name, p in module.named_parameters():  # same training: gradients chained once are exact
        torch.testing.assert_close(p, ref[name], rtol=1e-4, atol=1e-6, msg=name)
        moved |= "weights" in name and not torch.equal(p, start[name])
    assert moved


def test_evaluation_computes_each_modulated_weight_once_with_folded_outputs():
    module = km_module(reuse=True)
    folded = fold_modulators(copy.deepcopy(module.net)).eval()
    calls = count_modulator_calls(module.net)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    batches = loader(12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.test(module, dataloaders=batches, verbose=False)
        assert calls[0] == n_modulators(module.net)  # 3 batches, each weight computed once
        predictions = trainer.predict(module, dataloaders=DataLoader(batches.dataset.tensors[0], batch_size=4))
    assert calls[0] == 2 * n_modulators(module.net)
    with torch.no_grad():
        expected = folded(batches.dataset.tensors[0])
    assert torch.equal(torch.cat(predictions), expected)
    with torch.no_grad():  # outside evaluation nothing is held: the modulators run again
        module.eval()(batches.dataset.tensors[0][:2])
    assert calls[0] == 2 * n_modulators(module.net) + n_modulators(module.net)
