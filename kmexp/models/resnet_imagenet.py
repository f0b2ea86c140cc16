"""ImageNet ResNet-50 (He et al. 2016) from torchvision, for transfer learning (KM Sec. IV-B).

The architecture is torchvision's, so its ImageNet weights load directly (see
:mod:`kmexp.pretrained`); without the classifier it has 23,508,032 parameters (the
paper's "23.5 M"). The builder

- loads ImageNet weights when ``pretrained`` (hub caches or ``weights_path``);
- re-initializes the classifier for the target dataset's classes;
- with ``norm="group"`` (the paper trains with batch size 8 and "replace[s] BN with GN")
  builds GroupNorm layers with ``gn_groups`` groups and loads weights *pretrained with
  GroupNorm*: timm's ``resnet50_gn`` (``weights=timm:resnet50_gn.a1h_in1k``), whose
  module names and shapes are exactly torchvision's ResNet-50 with GN in place of BN,
  so every key matches. TinyTL, whose recipe KM follows, likewise starts from
  GN-pretrained weights;
- swaps BatchNorm for GroupNorm on BN-trained weights only when asked explicitly
  (``swap_bn_weights=True``), with a warning: BN-trained features are not GN features
  (on the bundled digits a small BN network fell from 89% to 25% test accuracy);
- optionally applies dropout before the classifier (``drop_rate``; TinyTL's recipe uses 0.2).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

from kmexp.errors import ConfigError
from kmexp.models.group_norm import DEFAULT_GROUPS, batchnorm_to_groupnorm
from kmexp.models.registry import register_backbone
from kmexp.pretrained import DEFAULT_WEIGHTS, load_state_except_head, read_state_dict, resolve_weights
from kmexp.timm_weights import is_timm_tag, resolve_timm_weights

log = logging.getLogger(__name__)

NORMS = ("batch", "group")
GN_WEIGHTS = "timm:resnet50_gn.a1h_in1k"  # timm's ResNet-50 trained on ImageNet with GroupNorm (32 groups)
TIMM_GN_GROUPS = 32  # timm.layers.GroupNorm's default, used by resnet50_gn


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


def _group_norm(groups: int):
    def norm_layer(channels: int) -> nn.GroupNorm:
        if channels % groups:
            raise ConfigError(f"gn_groups={groups} does not divide the {channels} channels of a ResNet-50 layer")
        return nn.GroupNorm(groups, channels)

    return norm_layer


def _is_batchnorm_state(state: dict) -> bool:
    return any(k.endswith("running_mean") for k in state)


@register_backbone("resnet50")
def resnet50(
    num_classes: int = 1000,
    pretrained: bool = True,
    weights_path: str | None = None,
    weights: str = DEFAULT_WEIGHTS,
    norm: str = "batch",
    gn_groups: int = DEFAULT_GROUPS,
    drop_rate: float = 0.0,
    swap_bn_weights: bool = False,
) -> ImageNetResNet:
    """ResNet-50 for transfer learning (KM Sec. IV-B, Fig. 4, Table II).

    Args:
        num_classes: classes of the target dataset; the classifier is freshly initialized.
        pretrained: load ImageNet weights (else keep torchvision's random init).
        weights_path: explicit state-dict file (.pth or .safetensors); ``None`` = the caches.
        weights: ``timm:<model>.<tag>`` (timm's weights, Hugging Face cache) or a torchvision
            tag (torch hub cache).
        norm: ``batch`` or ``group``; the weights must have been trained with the same norm.
        gn_groups: GroupNorm groups; timm's GN weights were trained with 32.
        drop_rate: dropout before the classifier.
        swap_bn_weights: with ``norm=group``, accept BN-trained weights and swap every BN
            for GN (gamma/beta carried over, running statistics dropped). Off by default.
    """
    if norm not in NORMS:
        raise ConfigError(f"backbone.norm={norm!r} is not one of {list(NORMS)}")
    norm_layer = _group_norm(gn_groups) if norm == "group" else None
    if not pretrained:
        return ImageNetResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes, drop_rate=drop_rate,
                              norm_layer=norm_layer)
    if is_timm_tag(weights) and not weights_path:
        path = resolve_timm_weights(weights)
    else:
        path = resolve_weights("resnet50", weights_path, weights)
    state = read_state_dict(path)
    bn_trained = _is_batchnorm_state(state)
    if norm == "batch" and not bn_trained:
        raise ConfigError(f"{path} holds GroupNorm weights; use backbone.norm=group (backbone=resnet50_gn)")
    if norm == "group" and bn_trained:
        if not swap_bn_weights:
            raise ConfigError(
                f"{path} holds BatchNorm-trained weights, but backbone.norm=group. Swapping BN for GN on them "
                f"destroys the pretrained features (running statistics are lost). Use GroupNorm-pretrained weights "
                f"(backbone.weights={GN_WEIGHTS}), or backbone.swap_bn_weights=true to swap anyway"
            )
        log.warning("backbone.swap_bn_weights=true: BatchNorm-trained weights run under GroupNorm; expect far lower "
                    "accuracy than from GroupNorm-pretrained weights (on digits a BN network fell from 89%% to 25%%)")
        model = ImageNetResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes, drop_rate=drop_rate)
        load_state_except_head(model, state, path, "resnet50")
        batchnorm_to_groupnorm(model, gn_groups)
        return model
    if norm == "group" and is_timm_tag(weights) and gn_groups != TIMM_GN_GROUPS:
        raise ConfigError(f"{weights} was trained with {TIMM_GN_GROUPS} GroupNorm groups, not backbone.gn_groups={gn_groups}")
    model = ImageNetResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes, drop_rate=drop_rate, norm_layer=norm_layer)
    load_state_except_head(model, state, path, "resnet50")
    return model
