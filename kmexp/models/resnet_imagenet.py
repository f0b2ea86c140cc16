"""ImageNet ResNet-50 (He et al. 2016) from torchvision, for transfer learning (KM Sec. IV-B).

The architecture is torchvision's, so its ImageNet weights load directly (see
:mod:`kmexp.pretrained`); without the classifier it has 23,508,032 parameters (the
paper's "23.5 M"). The builder

- loads ImageNet weights when ``pretrained`` (hub cache or ``weights_path``);
- re-initializes the classifier for the target dataset's classes;
- with ``norm="group"`` replaces every BatchNorm by GroupNorm with ``gn_groups`` groups,
  carrying over gamma and beta (the paper trains with batch size 8);
- optionally applies dropout before the classifier (``drop_rate``; TinyTL's recipe uses 0.2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

from kmexp.errors import ConfigError
from kmexp.models.group_norm import DEFAULT_GROUPS, batchnorm_to_groupnorm
from kmexp.models.registry import register_backbone
from kmexp.pretrained import DEFAULT_WEIGHTS, load_pretrained

NORMS = ("batch", "group")


class ImageNetResNet(ResNet):
    """torchvision's ResNet (same module names, so torchvision state dicts load) with
    timm's ``get_classifier`` / ``forward_features`` / ``forward_head`` and head dropout."""

    def __init__(self, block, layers, num_classes: int = 1000, drop_rate: float = 0.0, **kwargs):
        super().__init__(block, layers, num_classes=num_classes, **kwargs)
        self.drop_rate = drop_rate
        self.num_features = self.fc.in_features

    def get_classifier(self) -> nn.Module:
        return self.fc

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        if self.drop_rate:
            x = F.dropout(x, self.drop_rate, self.training)
        return self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_backbone("resnet50")
def resnet50(
    num_classes: int = 1000,
    pretrained: bool = True,
    weights_path: str | None = None,
    weights: str = DEFAULT_WEIGHTS,
    norm: str = "batch",
    gn_groups: int = DEFAULT_GROUPS,
    drop_rate: float = 0.0,
) -> ImageNetResNet:
    """ResNet-50 for transfer learning (KM Sec. IV-B, Fig. 4, Table II).

    Args:
        num_classes: classes of the target dataset; the classifier is freshly initialized.
        pretrained: load ImageNet weights (else keep torchvision's random init).
        weights_path: explicit state-dict file; ``None`` = the torch hub cache.
        weights: torchvision weights tag to look for in the hub cache.
        norm: ``batch`` (as pretrained) or ``group`` (BN -> GN, gamma/beta carried over).
        gn_groups: GroupNorm groups; 32 divides every ResNet-50 width (64 ... 2048).
        drop_rate: dropout before the classifier.
    """
    if norm not in NORMS:
        raise ConfigError(f"backbone.norm={norm!r} is not one of {list(NORMS)}")
    model = ImageNetResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes, drop_rate=drop_rate)
    if pretrained:
        load_pretrained(model, "resnet50", weights_path, weights)
    if norm == "group":
        batchnorm_to_groupnorm(model, gn_groups)
    return model
