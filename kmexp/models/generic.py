"""Any timm or torchvision classifier as a backbone (``backbone=timm`` / ``backbone=torchvision``).

Kernel Modulation attaches to any ``nn.Conv2d`` (Sec. III-A), so every ConvNet of the two
libraries can be modulated, patched or LoRA-adapted from the command line::

    python -m kmexp.train backbone=timm backbone.model_name=convnext_tiny
    python -m kmexp.train backbone=torchvision backbone.model_name=mobilenet_v3_small

Pretrained weights are never downloaded: ``weights_path`` names a local state dict, or
(``pretrained: true`` without it) timm's / torchvision's own local cache is used. The
classifier is re-initialized for the dataset's classes and is the ``classifier``
component; it is named by the model:

- timm: ``model.get_classifier()`` (the head of ``pretrained_cfg["classifier"]``);
- torchvision: :func:`torchvision_head_name` -- an explicit table of each family's head
  path, else the last ``nn.Linear`` in module order. The model is wrapped in
  :class:`TorchvisionBackbone`, which exposes that head as ``get_classifier()``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from kmexp.errors import ConfigError, WeightsNotFoundError
from kmexp.models.registry import register_backbone
from kmexp.pretrained import DEFAULT_WEIGHTS, load_pretrained

# torchvision family (model-name prefix) -> module path of its final linear layer.
TORCHVISION_HEADS = {
    "resnet": "fc", "resnext": "fc", "wide_resnet": "fc", "regnet": "fc", "googlenet": "fc",
    "inception": "fc", "shufflenet": "fc",
    "densenet": "classifier",
    "mobilenet_v2": "classifier.1", "mobilenet_v3": "classifier.3",
    "efficientnet": "classifier.1", "mnasnet": "classifier.1",
    "convnext": "classifier.2", "vgg": "classifier.6", "alexnet": "classifier.6", "maxvit": "classifier.5",
    "swin": "head", "vit": "heads.head",
}


def torchvision_head_name(model_name: str, model: nn.Module) -> str:
    """Module path of the classifier of torchvision's ``model_name``.

    The family table above first (longest matching prefix); otherwise the last
    ``nn.Linear`` in module order. A model without a linear head (SqueezeNet's head is a
    convolution) is refused.
    """
    for prefix in sorted(TORCHVISION_HEADS, key=len, reverse=True):
        if model_name.startswith(prefix):
            name = TORCHVISION_HEADS[prefix]
            if isinstance(model.get_submodule(name), nn.Linear):
                return name
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(f"torchvision model {model_name!r} has no nn.Linear classifier kmexp can re-initialize")
    return linears[-1]


class TorchvisionBackbone(nn.Module):
    """A torchvision classifier plus timm's ``get_classifier()`` naming its head."""

    def __init__(self, model: nn.Module, head_name: str):
        super().__init__()
        self.model = model
        self.head_name = head_name

    def get_classifier(self) -> nn.Module:
        return self.model.get_submodule(self.head_name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out.logits if hasattr(out, "logits") else out  # GoogLeNet/Inception namedtuples in train mode


@register_backbone("torchvision")
def torchvision_backbone(
    num_classes: int,
    model_name: str,
    pretrained: bool = False,
    weights: str = DEFAULT_WEIGHTS,
    weights_path: str | None = None,
    **kwargs,
) -> TorchvisionBackbone:
    """``torchvision.models.get_model(model_name, num_classes=...)``, ImageNet weights
    (except the head) from ``weights_path`` or the torch hub cache when ``pretrained``."""
    from torchvision.models import get_model, list_models

    if model_name not in list_models():
        raise ConfigError(f"backbone.model_name={model_name!r} is not a torchvision model (see torchvision.models.list_models())")
    if model_name.startswith(("googlenet", "inception")):
        kwargs.setdefault("aux_logits", False)
        kwargs.setdefault("init_weights", True)
    model = get_model(model_name, weights=None, num_classes=num_classes, **kwargs)
    head = torchvision_head_name(model_name, model)
    if pretrained:
        load_pretrained(model, model_name, weights_path, weights, exclude=(f"{head}.",))
    return TorchvisionBackbone(model, head)


@register_backbone("timm")
def timm_backbone(
    num_classes: int,
    model_name: str,
    pretrained: bool = False,
    weights_path: str | None = None,
    **kwargs,
) -> nn.Module:
    """``timm.create_model(model_name, num_classes=...)``; pretrained from ``weights_path``
    (timm's ``pretrained_cfg_overlay=dict(file=...)``) or timm's local Hugging Face cache.
    timm drops the pretrained classifier when the class count differs."""
    import timm

    if not timm.is_model(model_name):
        raise ConfigError(f"backbone.model_name={model_name!r} is not a timm model (see timm.list_models())")
    if weights_path:
        if not Path(weights_path).expanduser().is_file():
            raise WeightsNotFoundError(f"timm weights for {model_name} not found at backbone.weights_path={weights_path}")
        kwargs["pretrained_cfg_overlay"] = dict(file=str(Path(weights_path).expanduser()))
    try:
        return timm.create_model(model_name, pretrained=pretrained, num_classes=num_classes, **kwargs)
    except (OSError, RuntimeError) as e:
        if not pretrained:
            raise
        raise WeightsNotFoundError(
            f"pretrained timm weights for {model_name} could not be loaded offline ({type(e).__name__}: {e}); "
            f"pass backbone.weights_path=<file> or fill the Hugging Face cache on a machine with internet"
        ) from e
