"""BatchNorm -> GroupNorm on BN-trained weights (only with ``backbone.swap_bn_weights=true``).

KM Sec. IV-B trains ResNet-50 with GroupNorm; :mod:`kmexp.models.resnet_imagenet` loads
weights *pretrained* with GroupNorm for that. Swapping the norm layers of a BN-trained
network keeps its weights but not its features (on the bundled digits a small BN network
fell from 89% to 25% test accuracy with 16 groups), so this is an explicit opt-in.

"To accommodate a small batch size [8] during KM, we replace BN with GN." GroupNorm
(Wu & He 2018) normalizes each sample over groups of channels, so its statistics do not
depend on the batch. The affine parameters gamma and beta of every BN layer are carried
over to its GN replacement (they are the "implicit modulation" of KM Sec. III-B); the
running statistics have no GN counterpart and are dropped. Parameter counts are
unchanged: both layers have 2 x C affine parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from kmexp.errors import ConfigError

DEFAULT_GROUPS = 32  # Wu & He 2018: 32 groups is their default and best setting for ResNet-50


@torch.no_grad()
def batchnorm_to_groupnorm(model: nn.Module, num_groups: int = DEFAULT_GROUPS) -> int:
    """Replace every ``nn.BatchNorm2d`` of ``model`` in place; returns how many were replaced."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.BatchNorm2d):
                continue
            c = child.num_features
            if c % num_groups:
                raise ConfigError(f"gn_groups={num_groups} does not divide the {c} channels of {name}")
            gn = nn.GroupNorm(num_groups, c, eps=child.eps, affine=True)
            gn = gn.to(device=child.weight.device if child.affine else None)
            if child.affine:
                gn.weight.copy_(child.weight)
                gn.bias.copy_(child.bias)
            setattr(parent, name, gn)
            replaced += 1
    return replaced
