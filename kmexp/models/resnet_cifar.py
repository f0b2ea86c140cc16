"""CIFAR ResNets of He et al. 2016, Sec. 4.2 (ResNet-20/32/44/56/110).

Three stages of n basic blocks with 16/32/64 channels on 32x32 inputs, 6n+2 layers.
Shortcuts are identity; where the shape changes, option A of the paper: stride-2
subsampling and zero-padding of the extra channels, so shortcuts add no parameters
(ResNet-32 has 464,154 parameters, Kernel Modulation Table I). ``shortcut="projection"``
gives option B (1x1 conv + BN) for baselines that use it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kmexp.models.registry import register_backbone


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

    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride == 1 and in_channels == out_channels:
            self.shortcut = nn.Identity()
        elif shortcut == "zero_pad":
            self.shortcut = ZeroPadShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
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
    ):
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        if shortcut not in ("zero_pad", "projection"):
            raise ValueError(f"shortcut must be 'zero_pad' or 'projection', got {shortcut!r}")
        n = (depth - 2) // 6
        widths = [width, 2 * width, 4 * width]
        self.conv1 = nn.Conv2d(in_chans, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        stages, c_in = [], width
        for i, c_out in enumerate(widths):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(c_in, c_out, stride, shortcut))
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
    def build(num_classes: int = 10, **kwargs) -> CifarResNet:
        return CifarResNet(depth=depth, num_classes=num_classes, **kwargs)

    build.__doc__ = f"ResNet-{depth} for CIFAR (He et al. 2016, Sec. 4.2)."
    return build


for _depth in (8, 20, 32, 44, 56, 110):
    register_backbone(f"resnet{_depth}")(_builder(_depth))
