"""Backbones, one file per family; importing this package registers them all."""

from kmexp.models import (  # noqa: F401
    conv4,  # noqa: F401
    convmixer,
    generic,  # timm / torchvision models by name
    inception,
    mobilenet,
    resnet_bit,  # noqa: F401
    resnet_cifar,  # noqa: F401
    resnet_imagenet,  # noqa: F401
    resnet_tf,  # noqa: F401
    se_resnet,
)
from kmexp.models.registry import build_backbone, list_backbones, register_backbone

__all__ = ["build_backbone", "list_backbones", "register_backbone"]
