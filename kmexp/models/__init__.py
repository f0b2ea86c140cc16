"""Backbones, one file per family; importing this package registers them all."""

from kmexp.models import resnet_cifar  # noqa: F401
from kmexp.models import resnet_tf  # noqa: F401
from kmexp.models import resnet_imagenet  # noqa: F401
from kmexp.models import conv4  # noqa: F401
from kmexp.models import convmixer, se_resnet  # noqa: F401
from kmexp.models import inception, mobilenet  # noqa: F401
from kmexp.models.registry import build_backbone, list_backbones, register_backbone

__all__ = ["build_backbone", "list_backbones", "register_backbone"]
