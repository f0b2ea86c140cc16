"""The CIFAR ResNet v1 of TensorFlow's official models, the network of Gressmann et al. 2020.

Random Bases Descent (KM Table I, LD row) trains "a D = 78,330 parameter ResNet-8"
(Gressmann et al. 2020, Fig. 1). kmexp's ``resnet8`` (He et al.'s option A, zero-padding
shortcuts) has 75,290 parameters, and option B (projection where the shape changes) has
78,042. The count 78,330 is exactly the TensorFlow official-models CIFAR ResNet v1: like
option B, but the first block of *every* stage has a projection shortcut (1x1 conv + BN),
stage 1 included, where input and output are both 16 x 32 x 32:
78,042 + 16 * 16 + 2 * 16 = 78,330.
"""

from __future__ import annotations

from torch import nn

from kmexp.models.registry import register_backbone
from kmexp.models.resnet_cifar import CifarResNet


def tf_cifar_resnet(depth: int, num_classes: int = 10, width: int = 16, in_chans: int = 3) -> CifarResNet:
    """CIFAR ResNet-(6n+2) with a projection shortcut at the first block of each of the 3 stages."""
    model = CifarResNet(depth=depth, num_classes=num_classes, width=width, shortcut="projection", in_chans=in_chans)
    first = model.layer1[0]
    first.shortcut = nn.Sequential(nn.Conv2d(width, width, 1, 1, bias=False), nn.BatchNorm2d(width))
    nn.init.kaiming_normal_(first.shortcut[0].weight, mode="fan_out", nonlinearity="relu")
    return model


@register_backbone("resnet8_tf")
def resnet8_tf(num_classes: int = 10, **kwargs) -> CifarResNet:
    """ResNet-8 of Gressmann et al. 2020 (78,330 parameters on CIFAR-10)."""
    return tf_cifar_resnet(8, num_classes=num_classes, **kwargs)
