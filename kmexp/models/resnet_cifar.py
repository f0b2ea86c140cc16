"""CIFAR ResNets of He et al. 2016, Sec. 4.2 (ResNet-20/32/44/56/110).

Three stages of n basic blocks with 16/32/64 channels on 32x32 inputs, 6n+2 layers.
Shortcuts are identity; where the shape changes, option A of the paper: stride-2
subsampling and zero-padding of the extra channels, so shortcuts add no parameters
(ResNet-32 has 464,154 parameters, Kernel Modulation Table I). ``shortcut="projection"``
gives option B (1x1 conv + BN) for baselines that use it.

``norm="group"`` builds GroupNorm layers (``gn_groups`` groups) in place of BatchNorm, the
normalization KM's transfer recipe uses (Sec. IV-B: "we replace BN with GN"); the digits
profile pretrains such a network on digits 0-4 and transfers it (``pretrained`` +
``weights_path``: a state dict or a kmexp run's checkpoint, classifier re-initialized,
:func:`kmexp.pretrained.load_state_except_head`).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from kmexp.errors import ConfigError, WeightsNotFoundError
from kmexp.models.registry import register_backbone

NORMS = ("batch", "group")


def norm_layer(norm: str, gn_groups: int):
    """``channels -> nn.Module``: BatchNorm, or GroupNorm with ``gn_groups`` groups."""
    if norm not in NORMS:
        raise ConfigError(f"backbone.norm={norm!r} is not one of {list(NORMS)}")
    if norm == "batch":
        return nn.BatchNorm2d

    def group_norm(channels: int) -> nn.GroupNorm:
        if channels % gn_groups:
            raise ConfigError(f"backbone.gn_groups={gn_groups} does not divide a layer's {channels} channels")
        return nn.GroupNorm(gn_groups, channels)

    return group_norm


class ZeroPadShortcut(nn.Module):
    """Option A shortcut: subsample spatially, zero-pad channels (parameter-free)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.pad = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        half = self.pad // 2
        return F.pad(x, (0, 0, 0, 0, half, self.pad - half))


class BasicBlock(nn.Module):
    lite_residual_slot = "shortcut"  # where TinyTL attaches its lite residual (kmexp.methods.tinytl)

    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: str, norm=nn.BatchNorm2d):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = norm(out_channels)
        if stride == 1 and in_channels == out_channels:
            self.shortcut = nn.Identity()
        elif shortcut == "zero_pad":
            self.shortcut = ZeroPadShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                norm(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ThreeStageCifarNet(nn.Module):
    """The forward of CIFAR ResNets: stem ``conv1``/``bn1``/ReLU, ``layer1..3``, global
    average pooling and ``fc``; ``forward_features`` / ``forward_head`` as in timm.
    Subclasses build those modules."""

    def get_classifier(self) -> nn.Module:
        return self.fc

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class CifarResNet(ThreeStageCifarNet):
    """ResNet-(6n+2) for 32x32 inputs."""

    def __init__(
        self,
        depth: int = 32,
        num_classes: int = 10,
        width: int = 16,
        shortcut: str = "zero_pad",
        in_chans: int = 3,
        norm: str = "batch",
        gn_groups: int = 8,
    ):
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        if shortcut not in ("zero_pad", "projection"):
            raise ValueError(f"shortcut must be 'zero_pad' or 'projection', got {shortcut!r}")
        n = (depth - 2) // 6
        widths = [width, 2 * width, 4 * width]
        make_norm = norm_layer(norm, gn_groups)
        self.conv1 = nn.Conv2d(in_chans, width, 3, 1, 1, bias=False)
        self.bn1 = make_norm(width)
        stages, c_in = [], width
        for i, c_out in enumerate(widths):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(c_in, c_out, stride, shortcut, make_norm))
                c_in = c_out
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.num_features = c_in
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight)  # He et al.'s CIFAR code



def _builder(depth: int):
    def build(num_classes: int = 10, pretrained: bool = False, weights_path: str | None = None,
              **kwargs) -> CifarResNet:
        model = CifarResNet(depth=depth, num_classes=num_classes, **kwargs)
        if pretrained:
            load_cifar_weights(model, f"resnet{depth}", weights_path)
        return model

    build.__doc__ = (f"ResNet-{depth} for CIFAR (He et al. 2016, Sec. 4.2); ``pretrained`` loads "
                     "``weights_path`` (every key but the classifier's).")
    return build


def load_cifar_weights(model: nn.Module, arch: str, weights_path: str | None) -> Path:
    """Load a CIFAR ResNet's weights from ``weights_path`` (nothing ships pretrained: the file
    is the user's, e.g. the digits profile's pretraining run), classifier re-initialized."""
    from kmexp.pretrained import load_state_except_head, read_state_dict

    if not weights_path:
        raise ConfigError(f"backbone.pretrained=true on {arch}: no published weights exist, so name a file "
                          "with backbone.weights_path=<state dict or run checkpoint>")
    path = Path(weights_path).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"{arch} weights not found at backbone.weights_path={path} (train the "
                                   "pretraining run first, or point at a state dict)")
    load_state_except_head(model, read_state_dict(path), path, arch)
    return path


for _depth in (8, 20, 32, 44, 56, 110):
    register_backbone(f"resnet{_depth}")(_builder(_depth))
