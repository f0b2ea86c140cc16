"""The 4-block ConvNets of MAML (Finn et al. 2017, Sec. 5.2), used for Kernel Modulation's
meta-learning experiments (KM Sec. IV-C, Table III).

Each block is a 3x3 convolution (with bias), batch normalization and ReLU; then either
the convolution has stride 2 (Omniglot: 64 filters, 28x28 grey images, the 2x2 output
is averaged) or a 2x2 max pool follows (mini-ImageNet: 32 filters, 84x84 RGB images,
the 5x5 output is flattened). Initialization follows MAML's reference code: Glorot
uniform convolutions, zero biases, and a classifier drawn from N(0, 1) (Omniglot) or
Glorot uniform (mini-ImageNet).

Batch normalization keeps no running statistics (``track_running_stats=False``): every
forward pass normalizes with the statistics of its own batch, during meta-training and
at meta-test alike (support and query sets separately, i.e. transductively), which is
what MAML's reference code does. Unlike MAML's TensorFlow batch norm (offset only), the
layers have both a scale and an offset (PyTorch's default, as in learn2learn).
"""

from __future__ import annotations

import torch
from torch import nn

from kmexp.models.registry import register_backbone

DOWNSAMPLING = ("stride", "maxpool")
HEAD_INITS = ("normal", "glorot")


class ConvBlock(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, downsampling: str):
        stride = 2 if downsampling == "stride" else 1
        layers = [
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=True),
            nn.BatchNorm2d(out_channels, track_running_stats=False),
            nn.ReLU(inplace=False),
        ]
        if downsampling == "maxpool":
            layers.append(nn.MaxPool2d(2))
        super().__init__(*layers)


class Conv4(nn.Module):
    """MAML's 4-block ConvNet with ``forward_features`` / ``forward_head`` (timm style).

    Args:
        num_classes: ways of the few-shot tasks.
        in_channels: 1 for Omniglot, 3 for mini-ImageNet.
        hidden: filters per convolution (64 Omniglot, 32 mini-ImageNet).
        downsampling: ``stride`` (stride-2 convolutions, spatial mean at the end) or
            ``maxpool`` (2x2 max pooling after each block, flatten at the end).
        image_size: input height = width (28 or 84); sets the classifier's input size.
        head_init: ``normal`` (N(0, 1), MAML's Omniglot) or ``glorot`` (MAML's mini-ImageNet).
    """

    def __init__(self, num_classes: int, in_channels: int, hidden: int, downsampling: str, image_size: int,
                 head_init: str):
        super().__init__()
        if downsampling not in DOWNSAMPLING:
            raise ValueError(f"downsampling={downsampling!r} is not one of {list(DOWNSAMPLING)}")
        if head_init not in HEAD_INITS:
            raise ValueError(f"head_init={head_init!r} is not one of {list(HEAD_INITS)}")
        self.downsampling = downsampling
        self.features = nn.Sequential(*(
            ConvBlock(in_channels if i == 0 else hidden, hidden, downsampling) for i in range(4)
        ))
        if downsampling == "maxpool":
            side = image_size
            for _ in range(4):
                side //= 2
            num_features = hidden * side * side
        else:
            num_features = hidden
        self.num_features = num_features
        self.classifier = nn.Linear(num_features, num_classes)
        self._init_weights(head_init)

    def _init_weights(self, head_init: str) -> None:
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        if head_init == "normal":
            nn.init.normal_(self.classifier.weight, 0.0, 1.0)
        else:
            nn.init.xavier_uniform_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return x.flatten(1) if self.downsampling == "maxpool" else x.mean(dim=(2, 3))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_backbone("conv4_omniglot")
def conv4_omniglot(num_classes: int, in_channels: int = 1, hidden: int = 64, image_size: int = 28,
                   head_init: str = "normal") -> Conv4:
    """MAML's Omniglot network: 64 filters, stride-2 convolutions, 28x28 inputs."""
    return Conv4(num_classes, in_channels, hidden, "stride", image_size, head_init)


@register_backbone("conv4_miniimagenet")
def conv4_miniimagenet(num_classes: int, in_channels: int = 3, hidden: int = 32, image_size: int = 84,
                       head_init: str = "glorot") -> Conv4:
    """MAML's mini-ImageNet network: 32 filters, 2x2 max pooling, 84x84 inputs."""
    return Conv4(num_classes, in_channels, hidden, "maxpool", image_size, head_init)
