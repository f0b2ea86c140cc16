"""Speed settings that must change no result (kmexp.lit.speed, kmexp.modulation).

- ``compile=true``: compiled and eager training agree over a few steps, for KM and full.
- ``memory_format``: channels-last is applied to the network and the batches, with the
  outputs of the contiguous format.
- bf16 autocast: the kernel modulator runs in fp32, so the modulated weight is the fp32 one
  bit for bit (KernelModulator's docstring says why bf16 is not safe there), and training
  under autocast stays finite and close to fp32 training.
"""

from __future__ import annotations

import warnings

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from kmexp.lit.classification import ClassificationModule
from kmexp.lit.speed import batch_to_memory_format, resolve_memory_format
from kmexp.modulation import KernelModulator, add_kernel_modulators
from tests.test_km_caching import OPTIM, tiny_cfg


def loader(n: int = 12, batch_size: int = 4) -> DataLoader:
    g = torch.Generator().manual_seed(2)
    data = TensorDataset(torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g))
    return DataLoader(data, batch_size=batch_size)


def module_for(method: str, **settings) -> ClassificationModule:
    torch.manual_seed(0)
    module = ClassificationModule(model=tiny_cfg(method), optim=OPTIM)
    for key, value in settings.items():
        setattr(module, key, value)
    return module


def fit(module: ClassificationModule, steps: int = 3, accumulate: int = 1, precision: str = "32-true") -> None:
    trainer = pl.Trainer(accelerator="cpu", max_steps=steps, accumulate_grad_batches=accumulate, precision=precision,
                         limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, train_dataloaders=loader(4 * steps * accumulate))


def assert_same_training(module, reference, rtol, atol):
    ref = dict(reference.named_parameters())
    for name, p in module.named_parameters():
        torch.testing.assert_close(p, ref[name], rtol=rtol, atol=atol, msg=name)


# aot_eager: TorchDynamo's graph capture and AOTAutograd's joint forward/backward graph, the
# parts where a KM network (parametrizations, the per-step weight cache) could go wrong, in
# a few seconds; inductor adds C++ code generation (85 s for one case on a loaded 2-core CPU).
@pytest.mark.parametrize("method,backend", [
    ("km", "aot_eager"), ("full", "aot_eager"),
    pytest.param("km", True, marks=pytest.mark.slow), pytest.param("full", True, marks=pytest.mark.slow),
])
def test_compiled_and_eager_training_agree(method, backend):
    compiled, eager = module_for(method, compile=backend), module_for(method)
    fit(compiled, accumulate=2)
    fit(eager, accumulate=2)
    assert getattr(compiled.net, "_compiled_call_impl", None) is not None  # it did compile
    assert getattr(eager.net, "_compiled_call_impl", None) is None
    start = module_for(method)
    assert not torch.equal(compiled.net.fc.weight, start.net.fc.weight)  # it trained
    assert set(compiled.state_dict()) == set(start.state_dict())  # names (checkpoints, patches) unchanged
    assert_same_training(compiled, eager, rtol=1e-4, atol=1e-5)


def test_channels_last_is_applied_and_gives_the_contiguous_outputs():
    module = module_for("km", memory_format="channels_last")
    reference = module_for("km")
    fit(module, steps=2)
    fit(reference, steps=2)
    base = module.net.conv1.parametrizations.weight.original
    assert base.is_contiguous(memory_format=torch.channels_last) and not base.is_contiguous()
    x = torch.randn(4, 3, 16, 16)
    (batch,) = batch_to_memory_format((x,), torch.channels_last)
    assert batch.is_contiguous(memory_format=torch.channels_last) and not batch.is_contiguous()
    labels = torch.arange(4)
    assert batch_to_memory_format((x, labels), torch.channels_last)[1] is labels  # only 4-D float tensors
    assert module.on_after_batch_transfer((x, labels), 0)[0].is_contiguous(memory_format=torch.channels_last)
    assert_same_training(module, reference, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(module.eval()(batch), reference.eval()(x), rtol=1e-5, atol=1e-5)


def test_memory_format_auto_is_channels_last_on_cuda_only():
    assert resolve_memory_format("auto", torch.device("cuda", 0)) is torch.channels_last
    assert resolve_memory_format("auto", torch.device("cpu")) is torch.contiguous_format
    assert resolve_memory_format("channels_last", torch.device("cpu")) is torch.channels_last
    module = module_for("km")
    fit(module, steps=1)
    assert module.net.conv1.parametrizations.weight.original.is_contiguous()  # default on CPU: unchanged


def test_modulated_weight_under_bf16_autocast_is_the_fp32_one():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(16, 32, 3)
    add_kernel_modulators(conv)
    fp32 = conv.weight
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = conv.weight
    assert mixed.dtype == torch.float32 and torch.equal(mixed, fp32)
    # why: in bf16 the diagonal of U = I + N(0, 1e-3) (Eq. 4) rounds to exactly 1
    diagonal = conv.parametrizations.weight[0].weights[0].diagonal()
    assert (diagonal != 1).all() and (diagonal.bfloat16() == 1).all()


def test_kernel_modulator_is_fp32_inside_autocast():
    m = KernelModulator(9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert m(torch.randn(4, 2, 3, 3)).dtype == torch.float32
        assert (torch.randn(4, 9) @ torch.randn(9, 9)).dtype == torch.bfloat16  # autocast is on around it


def bf16_deviation(method: str, steps: int = 3) -> tuple[float, float]:
    """After ``steps`` steps under bf16 autocast vs in fp32: the relative deviation of the
    normalization and classifier updates (trained by every method here), and of the loss
    on held-out data."""
    mixed, fp32 = module_for(method), module_for(method)
    start = {k: v.clone() for k, v in fp32.named_parameters()}
    fit(mixed, steps=steps, precision="bf16-mixed")
    fit(fp32, steps=steps)
    for p in mixed.parameters():
        assert torch.isfinite(p).all()
    names = [n for n in start if ".bn" in n or "bn1" in n or ".fc." in n]
    assert names
    moved = [torch.cat([(dict(m.named_parameters())[n] - start[n]).flatten() for n in names]) for m in (mixed, fp32)]
    x, y = next(iter(loader(64, batch_size=64)))
    with torch.no_grad():
        losses = [torch.nn.functional.cross_entropy(m.eval()(x), y) for m in (mixed, fp32)]
    return ((moved[0] - moved[1]).norm() / moved[1].norm()).item(), (abs(losses[0] - losses[1]) / losses[1]).item()


def test_training_under_bf16_autocast_is_finite_and_close_to_fp32():
    """bf16 rounds every convolution's inputs, so training deviates from fp32 for any method
    (this 8 K-parameter network with batch 4 is a sensitive case). Measured after 3 steps:
    normalization/classifier updates 0.11 from fp32 for KM, 0.054 for full (whose updates
    are dominated by the larger convolution updates); held-out loss 0.03% (KM), 0.06% (full).
    (The modulators' own updates are left out: a convolution followed by batch norm is
    invariant to the scale of its weight, so much of their gradient is cancellation noise,
    1e-7 in fp32, in either precision.)"""
    km, full = bf16_deviation("km"), bf16_deviation("full")
    assert km[0] < 0.2 and full[0] < 0.2, (km, full)
    assert km[1] < 0.01 and full[1] < 0.01, (km, full)


def test_config_keys_compose_and_are_not_part_of_run_identity():
    from hydra import compose, initialize_config_module

    from kmexp.config import register_resolvers
    from kmexp.reporting.runs import run_identity

    register_resolvers()
    with initialize_config_module("kmexp.configs", version_base="1.3"):
        default = compose("train")
        fast = compose("train", overrides=["compile=true", "memory_format=channels_last"])
    assert (default.memory_format, default.compile) == ("auto", False)
    assert run_identity(default) == run_identity(fast)


def test_bad_speed_settings_are_refused():
    from kmexp.errors import ConfigError
    from kmexp.lit.speed import compile_backend

    with pytest.raises(ConfigError, match="memory_format='nhwc'"):
        resolve_memory_format("nhwc", torch.device("cpu"))
    with pytest.raises(ConfigError, match="compile=3"):
        compile_backend(3)
    assert compile_backend(False) is None and compile_backend(True) == "inductor"
    assert compile_backend("aot_eager") == "aot_eager"
