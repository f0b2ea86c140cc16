"""Speed settings of a run that change no result: memory format and compilation.

Top-level config keys (configs/train.yaml), set on the LightningModule by the entry point:

- ``memory_format``: ``auto`` (channels-last when the run trains on a CUDA device, the
  ``trainer=gpu`` preset; contiguous on CPU), ``channels_last`` or ``contiguous``. In
  channels-last (NHWC) cuDNN's bf16/fp16 convolutions use tensor cores without transposes.
  Applied to the network's 4-D parameters and buffers and to every 4-D floating-point
  tensor of a batch after it reaches the device; other tensors are left alone, where the
  format means nothing.
- ``compile``: ``false``, ``true`` (``torch.compile`` of the network with the default
  inductor backend) or a backend name (e.g. ``aot_eager``). ``nn.Module.compile`` compiles
  in place, so parameter names, checkpoints and patches are unchanged.
"""

from __future__ import annotations

import torch
from lightning_utilities.core.apply_func import apply_to_collection
from torch import nn

from kmexp.errors import ConfigError

MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def resolve_memory_format(setting: str | None, device: torch.device) -> torch.memory_format:
    """The memory format of a run on ``device`` (``auto``/``None``: channels-last on CUDA only)."""
    if setting in (None, "auto"):
        return torch.channels_last if device.type == "cuda" else torch.contiguous_format
    if setting not in MEMORY_FORMATS:
        raise ConfigError(f"memory_format={setting!r} is not one of auto, {', '.join(MEMORY_FORMATS)}")
    return MEMORY_FORMATS[setting]


def network_to_memory_format(net: nn.Module, memory_format: torch.memory_format) -> None:
    """Put every 4-D parameter and buffer of ``net`` (the frozen base kernels too) in ``memory_format``."""
    if memory_format is not torch.contiguous_format:
        net.to(memory_format=memory_format)  # only 4-D tensors change


def batch_to_memory_format(batch, memory_format: torch.memory_format):
    """``batch`` with every 4-D floating-point tensor (the images) in ``memory_format``."""
    if memory_format is torch.contiguous_format:
        return batch
    return apply_to_collection(
        batch, torch.Tensor,
        lambda t: t.contiguous(memory_format=memory_format) if t.dim() == 4 and t.is_floating_point() else t,
    )


def compile_backend(setting) -> str | None:
    """The torch.compile backend of ``compile`` (``None``: no compilation)."""
    if setting in (None, False, "false"):
        return None
    if setting in (True, "true"):
        return "inductor"
    if isinstance(setting, str):
        return setting
    raise ConfigError(f"compile={setting!r} must be true, false or a torch.compile backend name")


def compile_network(net: nn.Module, backend: str) -> None:
    """Compile ``net`` in place (once; a second call is a no-op)."""
    if getattr(net, "_compiled_call_impl", None) is None:
        net.compile(backend=backend)
