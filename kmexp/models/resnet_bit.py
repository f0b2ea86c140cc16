"""BiT ResNet-50x1 (Kolesnikov et al. 2020): GroupNorm + weight standardization, from timm.

A second GroupNorm backbone for KM's transfer experiments (Sec. IV-B, Table II): TinyTL,
whose recipe KM follows, starts from a ResNet-50 with GroupNorm *and* weight
standardization; timm's ``resnetv2_50x1_bit`` is the published ImageNet network of that
kind. It is a pre-activation ResNet-50 (``stem.conv``, ``stages.N.blocks.M``, ``head.fc``),
so it is timm's own module, not torchvision's layout: 23,500,352 parameters without the
classifier (torchvision's ResNet-50: 23,508,032), 49 GroupNorm layers, 53 standardized
convolutions, a 1x1-convolution classifier (2,048 x K + K parameters, as a linear layer).
Its weights are ImageNet-21k pretrained, fine-tuned on ImageNet-1k (``goog_in21k_ft_in1k``):
more pretraining data than the paper's ImageNet-1k backbone. TinyTL's lite residuals are
written for torchvision's bottleneck and are not offered here.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from kmexp.errors import WeightsNotFoundError
from kmexp.models.registry import register_backbone
from kmexp.pretrained import load_state_except_head, read_state_dict
from kmexp.timm_weights import resolve_timm_weights

BIT_WEIGHTS = "timm:resnetv2_50x1_bit.goog_in21k_ft_in1k"


@register_backbone("resnetv2_50x1_bit")
def resnetv2_50x1_bit(num_classes: int = 1000, pretrained: bool = True, weights: str = BIT_WEIGHTS,
                      weights_path: str | None = None, drop_rate: float = 0.0) -> nn.Module:
    """timm's BiT-M ResNet-50x1 with a fresh classifier for ``num_classes``.

    Args:
        pretrained: load ``weights`` (``timm:<model>.<tag>``, Hugging Face cache) or ``weights_path``.
        drop_rate: dropout before the classifier.
    """
    import timm

    model = timm.create_model("resnetv2_50x1_bit", pretrained=False, num_classes=num_classes, drop_rate=drop_rate)
    if pretrained:
        if weights_path:
            path = Path(weights_path).expanduser()
            if not path.is_file():
                raise WeightsNotFoundError(f"BiT weights not found at backbone.weights_path={path}")
        else:
            path = resolve_timm_weights(weights)
        load_state_except_head(model, read_state_dict(path), path, "resnetv2_50x1_bit")
    return model
