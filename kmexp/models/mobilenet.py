"""MobileNetV2 (Sandler et al. 2018), the main network of model patches (Mudrakarta et al.,
"K for the price of 1", Sec. 5): torchvision's architecture, registered as ``mobilenet_v2``.

The network has 3,504,872 parameters at width 1.0 with 1,000 classes. Its scale-and-bias
patch (the gamma/beta of its 52 batch-norm layers, the ``implicit`` component) has 34,112
parameters, about 1% of the network (Sec. 2; Table 3 prints "34K"); its depthwise-convolution
patch (the ``depthwise`` component: the 17 convolutions with ``groups == in_channels``) has
64,224, under 3% (Sec. 2). ``tests/test_model_patches.py`` asserts these counts.

Options:
    width_mult: channel multiplier (1.0 in the paper; small values give tiny test networks).
    input_size: if set, inputs are resized to ``input_size x input_size`` with bilinear
        interpolation before the first layer ("We use bilinear interpolation to scale images
        before feeding them to the model", Sec. 5.4). This also lets 32x32 CIFAR images run
        at the paper's 224x224 (Sec. 5: "224x224 images for MobilenetV2").
    pretrained / weights_path / weights: start from ImageNet weights (Sec. 5.2) through
        :func:`kmexp.pretrained.load_pretrained`; the classifier is re-initialized for
        ``num_classes``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.mobilenetv2 import MobileNetV2 as _TorchvisionMobileNetV2

from kmexp.models.registry import register_backbone
from kmexp.pretrained import DEFAULT_WEIGHTS, load_pretrained


def resize_input(x: torch.Tensor, input_size: int | None) -> torch.Tensor:
    """Bilinear resize to ``input_size`` (model patches Sec. 5.4); a no-op when it already fits."""
    if input_size is None or tuple(x.shape[-2:]) == (input_size, input_size):
        return x
    return F.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=False)


class MobileNetV2(_TorchvisionMobileNetV2):
    """torchvision's MobileNetV2 with the timm-style accessors the framework uses."""

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2,
                 input_size: int | None = None):
        super().__init__(num_classes=num_classes, width_mult=width_mult, dropout=dropout)
        self.input_size = input_size
        self.num_features = self.last_channel

    def get_classifier(self) -> nn.Linear:
        return self.classifier[-1]

    @staticmethod
    def init_classifier(linear: nn.Linear) -> None:
        """The classifier initialization of torchvision's MobileNetV2: N(0, 0.01), zero bias."""
        nn.init.normal_(linear.weight, 0.0, 0.01)
        nn.init.zeros_(linear.bias)

    def reset_classifier(self, num_classes: int) -> None:
        linear = nn.Linear(self.num_features, num_classes)
        self.init_classifier(linear)
        self.classifier[-1] = linear

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(resize_input(x, self.input_size))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_backbone("mobilenet_v2")
def mobilenet_v2(num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2,
                 input_size: int | None = None, pretrained: bool = False,
                 weights_path: str | None = None, weights: str = DEFAULT_WEIGHTS) -> MobileNetV2:
    """MobileNetV2; ``pretrained=true`` loads ImageNet weights (model patches Sec. 5.2): torchvision's
    ``IMAGENET1K_V1`` (top-1 71.9%; the paper's MobileNetV2 has 71.8%) from the hub cache or ``weights_path``."""
    model = MobileNetV2(num_classes=num_classes, width_mult=width_mult, dropout=dropout, input_size=input_size)
    if pretrained:
        load_pretrained(model, "mobilenet_v2", weights_path, weights)
    return model
