"""TinyTL-L+B (Cai et al. 2020, Sec. 3.2; the TTL row of KM Table II): lite residual modules.

TinyTL-L+B freezes the backbone weights and trains biases ("B") plus lite residual
modules ("L") added beside each residual block's main branch:

    a_{i+1} = F_i(a_i) + R_i(a_i)        R_i = up( norm(conv1x1( act(norm(gconv_kxk( pool(a_i) ))))) )

- ``pool``: 2x2 average pooling ("reduce the resolution by 2x", so the branch stores
  4x smaller activations); the block's own stride is applied by the group conv;
- ``gconv_kxk``: a k x k group convolution (TinyTL: 5 x 5, 2 groups, no channel
  expansion, i.e. it avoids the inverted bottleneck's 6x wider activations);
- ``conv1x1``: projection to the block's output channels;
- ``up``: bilinear upsampling back to the block output's size.

Design choices here (TinyTL's code attaches the module to ProxylessNAS MBConv blocks):

- **Where.** The branch reads the block input and is added to the main branch before the
  block's shortcut sum (and before ResNet's final ReLU), exactly as TinyTL adds it to the
  MBConv. For ResNet blocks (torchvision ``BasicBlock``/``Bottleneck``, and any block
  that names its shortcut attribute in ``lite_residual_slot``, like kmexp's CIFAR
  ``BasicBlock``) it is attached to the shortcut slot: ``shortcut(x) + R(x)`` is summed
  with the main branch by the block's unchanged forward. For torchvision's MobileNetV2
  ``InvertedResidual`` it wraps the main branch ``conv``: ``conv(x) + R(x)``.
- **Start as the identity.** The last normalization has no affine bias and a per-channel
  scale initialized to zero, so the network's output is unchanged at injection
  (TinyTL zero-initializes that gamma, and freezes that beta under "+B" because the
  main branch's bias makes it redundant).
- **Width.** ``expand`` sets the branch width relative to the block input (TinyTL: 1.0),
  rounded to a multiple of 8; ``groups`` is reduced to the largest value that divides
  both widths. TinyTL's values (expand 1, 2 groups, 5 x 5) give ProxylessNAS-Mobile
  modules about half the backbone's size; on ResNet-50, whose block inputs are 4x wider
  (up to 2,048 channels), they would add ~200 M parameters, so configs/method/tinytl.yaml
  uses a narrower setting (see the count there).
- **Norm.** ``norm="auto"`` uses GroupNorm when the backbone has GroupNorm layers (the
  paper's GN ResNet-50; TinyTL also uses GN) and BatchNorm otherwise.

The branch module is a :class:`kmexp.components.InjectedModule`, so its parameters are
tagged ``lite_residual`` (its biases also ``bias``); the wrapped shortcut keeps its own tags.
Options: ``method.lite_residual`` (configs/method/tinytl.yaml).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kmexp.components import InjectedModule
from kmexp.errors import ConfigError
from kmexp.methods.base import Method, register_method

NORMS = ("auto", "group", "batch")
ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "silu": nn.SiLU}


def make_divisible(value: float, divisor: int = 8) -> int:
    return max(divisor, int(round(value / divisor)) * divisor)


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


def _norm(kind: str, channels: int, gn_groups: int, affine: bool = True) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(_largest_divisor(channels, gn_groups), channels, affine=affine)
    return nn.BatchNorm2d(channels, affine=affine)


class LiteResidual(InjectedModule):
    """The branch R of one block: pool -> k x k group conv -> norm -> act -> 1x1 conv -> norm * scale -> upsample."""

    component = "lite_residual"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        downsample: int | None = 2,
        kernel_size: int = 5,
        expand: float = 1.0,
        groups: int = 2,
        norm: str = "group",
        gn_groups: int = 32,
        activation: str = "relu",
        upsample: str = "bilinear",
    ):
        super().__init__()
        if norm not in ("group", "batch"):
            raise ConfigError(f"lite_residual.norm={norm!r} must be group or batch here")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"lite_residual.activation={activation!r} is not one of {sorted(ACTIVATIONS)}")
        mid = make_divisible(in_channels * expand)
        self.downsample = downsample
        self.upsample = upsample
        self.conv1 = nn.Conv2d(in_channels, mid, kernel_size, stride, kernel_size // 2,
                               groups=_largest_divisor(math.gcd(in_channels, mid), groups), bias=False)
        self.norm1 = _norm(norm, mid, gn_groups)
        self.act = ACTIVATIONS[activation]()
        self.conv2 = nn.Conv2d(mid, out_channels, 1, bias=False)
        self.norm2 = _norm(norm, out_channels, gn_groups, affine=False)
        self.scale = nn.Parameter(torch.zeros(out_channels))
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        nn.init.kaiming_normal_(self.conv2.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor, size: torch.Size) -> torch.Tensor:
        if self.downsample and self.downsample > 1:
            # ceil_mode keeps a 1x1 map at 1x1 (tiny test images, the last stage)
            x = F.avg_pool2d(x, self.downsample, self.downsample, ceil_mode=True)
        y = self.act(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y)) * self.scale.view(1, -1, 1, 1)
        if tuple(y.shape[-2:]) != tuple(size):
            align = False if self.upsample in ("bilinear", "bicubic") else None
            y = F.interpolate(y, size=tuple(size), mode=self.upsample, align_corners=align)
        return y


class WithLiteResidual(nn.Module):
    """``inner(x) + lite(x)``: a block's shortcut (or main branch) plus its lite residual."""

    def __init__(self, inner: nn.Module, lite: LiteResidual):
        super().__init__()
        self.inner = inner
        self.lite = lite

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(x)
        return y + self.lite(x, y.shape[-2:])


def _first_conv(module: nn.Module) -> nn.Conv2d:
    return next(m for m in module.modules() if isinstance(m, nn.Conv2d))


def _insertion_point(block: nn.Module) -> tuple[str, int, int, int] | None:
    """(attribute to wrap, block input channels, block output channels, block stride) or None."""
    from torchvision.models.mobilenetv2 import InvertedResidual
    from torchvision.models.resnet import BasicBlock as TVBasic
    from torchvision.models.resnet import Bottleneck as TVBottleneck

    if isinstance(block, TVBottleneck):
        return "downsample", block.conv1.in_channels, block.conv3.out_channels, block.stride
    if isinstance(block, TVBasic):
        return "downsample", block.conv1.in_channels, block.conv2.out_channels, block.stride
    slot = getattr(type(block), "lite_residual_slot", None)
    if slot is not None:  # a backbone's own block names the attribute to wrap (e.g. kmexp's CIFAR BasicBlock)
        return slot, block.conv1.in_channels, block.conv2.out_channels, block.conv1.stride[0]
    if isinstance(block, InvertedResidual):
        return "conv", _first_conv(block.conv).in_channels, block.out_channels, block.stride
    return None


def _backbone_norm(model: nn.Module) -> str:
    return "group" if any(isinstance(m, nn.GroupNorm) for m in model.modules()) else "batch"


def add_lite_residuals(model: nn.Module, norm: str = "auto", **options) -> int:
    """Attach a :class:`LiteResidual` to every supported residual block of ``model``, in place.

    ``options`` go to :class:`LiteResidual` (downsample, kernel_size, expand, groups,
    gn_groups, activation, upsample). Returns the number of modules added; a model
    without supported blocks is a :class:`ConfigError`.
    """
    if norm not in NORMS:
        raise ConfigError(f"lite_residual.norm={norm!r} is not one of {list(NORMS)}")
    norm = _backbone_norm(model) if norm == "auto" else norm
    try:
        blocks = [(b, p) for b in list(model.modules()) if (p := _insertion_point(b)) is not None]
        if not blocks:
            raise ConfigError(
                f"lite residuals: {type(model).__name__} has no supported residual block "
                "(torchvision ResNet BasicBlock/Bottleneck, MobileNetV2 InvertedResidual, kmexp CIFAR BasicBlock)"
            )
        for block, (attr, c_in, c_out, stride) in blocks:
            if isinstance(getattr(block, attr), WithLiteResidual):
                continue
            inner = getattr(block, attr) or nn.Identity()
            device = next(block.parameters()).device
            lite = LiteResidual(c_in, c_out, stride, norm=norm, **options).to(device).train(block.training)
            setattr(block, attr, WithLiteResidual(inner, lite))
    except TypeError as e:  # an unknown option in method.lite_residual
        raise ConfigError(f"method.lite_residual: {e}") from e
    return len(blocks)


def lite_residual_parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for m in model.modules() if isinstance(m, LiteResidual) for p in m.parameters())


@register_method("tinytl")
class TinyTL(Method):
    """Frozen weights; lite residual modules ("L"), every bias including the normalization
    betas ("B") and the classifier train."""

    components = ("lite_residual", "bias", "classifier")

    def __init__(self, lite_residual: dict | None = None, **common):
        super().__init__(**common)
        self.lite_residual = dict(lite_residual or {})

    def inject(self, model: nn.Module, model_cfg: dict) -> None:
        add_lite_residuals(model, **self.lite_residual)
