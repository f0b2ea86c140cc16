"""ConvMixer-C/N (Trockman and Kolter 2022) for CIFAR, as in the kernel-sharing paper (Sec. 3.1).

A patch-embedding convolution (kernel = stride = ``patch_size``) followed by ``depth``
blocks of [depthwise ``kernel_size`` conv -> GELU -> BN, inside a residual] ->
pointwise conv -> GELU -> BN, all with ``dim`` channels at the input resolution;
global average pooling and a linear classifier. Every convolution has a bias. The
kernel-sharing experiments use patch size 1 and kernel size 9 on 32x32 CIFAR images,
which gives the exact counts of the paper's Table 1 (ConvMixer-128/4: 112,138
parameters with the CIFAR-10 head).

The network is timm's ``ConvMixer`` (same modules and default initialisation as the
paper's code); this file only registers it with the CIFAR defaults. Layer names:
``stem.0`` (patch embedding), ``blocks.<i>.0.fn.0`` (depthwise), ``blocks.<i>.1``
(pointwise), ``head`` (classifier).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from kmexp.errors import ConfigError
from kmexp.models.registry import register_backbone

if TYPE_CHECKING:
    from timm.models.convmixer import ConvMixer

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


@register_backbone("convmixer")
def convmixer(
    num_classes: int = 10,
    dim: int = 256,
    depth: int = 8,
    kernel_size: int = 9,
    patch_size: int = 1,
    in_chans: int = 3,
    activation: str = "gelu",
) -> ConvMixer:
    """ConvMixer-``dim``/``depth`` (kernel-sharing paper: patch size 1, kernel size 9, GELU)."""
    if activation not in ACTIVATIONS:
        raise ConfigError(f"convmixer: activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if dim < 1 or depth < 1:
        raise ConfigError(f"convmixer needs dim >= 1 and depth >= 1, got dim={dim}, depth={depth}")
    from timm.models.convmixer import ConvMixer  # here: importing timm costs seconds of every run's start-up

    return ConvMixer(
        dim,
        depth,
        kernel_size=kernel_size,
        patch_size=patch_size,
        in_chans=in_chans,
        num_classes=num_classes,
        act_layer=ACTIVATIONS[activation],
    )
