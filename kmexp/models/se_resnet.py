"""SE-ResNet for CIFAR as in the kernel-sharing paper (Sec. 3.1 and 3.3) and its public code.

Squeeze-and-excitation (Hu et al. 2018) basic-block ResNet with a 3x3 stem of 16
channels and three stages of ``depth`` basic blocks with 64, 128 and 256 channels
(strides 1, 2, 2) on 32x32 inputs. A block is conv3x3 -> BN -> ReLU -> conv3x3 -> BN
-> SE -> + shortcut -> ReLU; the SE module is global average pooling -> linear
(C -> C/16, no bias) -> ReLU -> linear (C/16 -> C, no bias) -> sigmoid, scaling the
channels. Where the channel count changes (the first block of every stage, including
16 -> 64 in stage 1) the shortcut is a strided 1x1 conv + BN. Convolutions have no
bias and a He-normal (fan-in) initialisation; BN starts at gamma 1, beta 0.

Every stage holds 2*depth - 1 isomorphic 3x3 convolutions (all but the first block's
conv1), the sharing group of a stage (Sec. 3.3): the baseline SE-ResNet-d8 has
~12.1M parameters and sharing all stages of SE-ResNet-d4 leaves ~1.2M.

Note that kmexp.components tags the SE linear layers ``convolution``: they are base
dense weights of the backbone, trained or frozen with the convolutions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kmexp.errors import ConfigError
from kmexp.models.registry import register_backbone
from kmexp.models.resnet_cifar import ThreeStageCifarNet


class SqueezeExcitation(nn.Module):
    """Channel recalibration of Hu et al. 2018 (Fig. 1), bias-free as in the paper's code."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = channels // reduction
        if hidden < 1:
            raise ValueError(f"SE reduction {reduction} leaves no hidden units for {channels} channels")
        self.fc1 = nn.Linear(channels, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s[:, :, None, None]


class SEBasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, reduction: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.se = SqueezeExcitation(out_channels, reduction)
        if in_channels != out_channels or stride != 1:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return F.relu(out + self.shortcut(x))


class CifarSEResNet(ThreeStageCifarNet):
    """SE-ResNet-d``depth``; ``forward_features`` / ``forward_head`` as in timm."""

    def __init__(
        self,
        depth: int = 2,
        num_classes: int = 10,
        widths: tuple[int, ...] = (64, 128, 256),
        stem_width: int = 16,
        reduction: int = 16,
        in_chans: int = 3,
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"SE-ResNet needs at least one block per stage, got depth={depth}")
        if len(widths) != 3:
            raise ValueError(f"SE-ResNet for CIFAR has three stages, got widths={list(widths)}")
        self.conv1 = nn.Conv2d(in_chans, stem_width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        c_in = stem_width
        for i, c_out in enumerate(widths):
            blocks = []
            for j in range(depth):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(SEBasicBlock(c_in, c_out, stride, reduction))
                c_in = c_out
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.num_features = c_in
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)



@register_backbone("se_resnet")
def se_resnet(num_classes: int = 10, depth: int = 2, **kwargs) -> CifarSEResNet:
    """SE-ResNet-d``depth`` for CIFAR (kernel-sharing paper, Sec. 3.3): 64/128/256 channels."""
    if depth < 1:
        raise ConfigError(f"se_resnet needs depth >= 1 blocks per stage, got depth={depth}")
    if "widths" in kwargs:
        kwargs["widths"] = tuple(kwargs["widths"])
    return CifarSEResNet(depth=depth, num_classes=num_classes, **kwargs)
