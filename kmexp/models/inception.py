"""Inception V3 (Szegedy et al. 2016), the second network of model patches (Mudrakarta et al.,
Sec. 5.2, Table 2): torchvision's architecture, registered as ``inception_v3``.

The auxiliary classifier is left out: it only adds a training loss and never affects
predictions. Without it the network has 23,834,568 parameters (1,000 classes) and its
scale-and-bias patch (gamma/beta of 94 batch-norm layers) 34,432. The paper's counts
("36K" for the S/B patch, "25M" in all, Table 2) include the auxiliary head: its two
batch-norm layers add 1,792 to the S/B patch (36,224). ``tests/test_model_patches.py``
asserts both. Inception V3 has no depthwise convolutions, so it has no DW patch.

Options:
    input_size: inputs are resized to ``input_size x input_size`` (bilinear) first; the
        paper uses 299x299 (Sec. 5). ``None`` feeds inputs as they come (at least 75x75).
    transform_input: torchvision's conversion from ImageNet-normalized inputs to the
        [-1, 1] scaling the ported TensorFlow weights expect; defaults to ``pretrained``.
    pretrained / weights_path / weights: ImageNet weights through :func:`kmexp.pretrained.load_pretrained`;
        the classifier is re-initialized for ``num_classes``.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.inception import Inception3

from kmexp.models.mobilenet import resize_input
from kmexp.models.registry import register_backbone
from kmexp.pretrained import DEFAULT_WEIGHTS, load_pretrained


class InceptionV3(Inception3):
    """torchvision's Inception3 without the auxiliary head, with timm-style accessors."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5, input_size: int | None = 299,
                 transform_input: bool = False, init_weights: bool = True):
        super().__init__(num_classes=num_classes, aux_logits=False, transform_input=transform_input,
                         init_weights=False, dropout=dropout)
        self.input_size = input_size
        self.num_features = self.fc.in_features
        if init_weights:
            self._init_weights()
        else:  # pretrained weights follow; only the new classifier needs an init
            self.init_classifier(self.fc)

    @torch.no_grad()
    def _init_weights(self) -> None:
        """torchvision's Inception3 initialization, 3x faster: it draws conv/linear weights from
        N(0, 0.1^2) truncated to [-2, 2]; those bounds lie 20 standard deviations out, so a
        normal draw (clamped, which never bites in practice) has the same distribution."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, 0.1).clamp_(-2.0, 2.0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def get_classifier(self) -> nn.Linear:
        return self.fc

    @staticmethod
    @torch.no_grad()
    def init_classifier(linear: nn.Linear) -> None:
        """torchvision's Inception3 initialization of linear layers: N(0, 0.1^2) truncated to
        [-2, 2] (see ``_init_weights``); the bias keeps nn.Linear's."""
        nn.init.normal_(linear.weight, 0.0, 0.1).clamp_(-2.0, 2.0)

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes)
        self.init_classifier(self.fc)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._transform_input(resize_input(x, self.input_size))
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
                     "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)
        return x

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.dropout(self.avgpool(x)), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_backbone("inception_v3")
def inception_v3(num_classes: int = 1000, dropout: float = 0.5, input_size: int | None = 299,
                 transform_input: bool | None = None, pretrained: bool = False,
                 weights_path: str | None = None, weights: str = DEFAULT_WEIGHTS) -> InceptionV3:
    """Inception V3; ``pretrained=true`` loads ImageNet weights (model patches Sec. 5.2, Table 2):
    torchvision's ``IMAGENET1K_V1`` (top-1 77.3%; the paper's has 76.6%), auxiliary head dropped."""
    model = InceptionV3(num_classes=num_classes, dropout=dropout, input_size=input_size,
                        transform_input=pretrained if transform_input is None else transform_input,
                        init_weights=not pretrained)
    if pretrained:  # the file's auxiliary head is not loaded, like the new classifier
        load_pretrained(model, "inception_v3", weights_path, weights, exclude=("fc.", "AuxLogits."))
    return model
