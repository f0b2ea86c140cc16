"""Classifier heads: every backbone names its head; nothing is guessed.

Each task re-initializes the classifier for its own classes (KM Sec. IV-B) and the
``classifier`` component trains it (KM Table I/II), so the head must be found without
fail: a head that is not found stays random *and frozen*, and a run would train without
complaint to a meaningless accuracy. The head is, in this order:

1. an explicit module path (``backbone.classifier`` in the backbone config, e.g.
   ``classifier.3``; stored on the network as ``head_path``);
2. ``get_classifier()`` (timm's convention, which every kmexp backbone follows);
3. timm's ``pretrained_cfg["classifier"]`` (e.g. ``head.fc``);
4. the documented head of a torchvision family (:data:`TORCHVISION_HEADS`: torchvision's
   model classes keep the last layer at fixed paths, e.g. MobileNetV3's ``classifier.3``).

If none applies, :class:`HeadNotFoundError` says how to name it.
"""

from __future__ import annotations

from torch import nn

from kmexp.errors import ConfigError

HEAD_PATH_ATTRIBUTE = "head_path"

# torchvision class name -> path of its final nn.Linear (torchvision/models/<family>.py).
TORCHVISION_HEADS = {
    "AlexNet": "classifier.6",
    "ConvNeXt": "classifier.2",
    "DenseNet": "classifier",
    "EfficientNet": "classifier.1",
    "GoogLeNet": "fc",
    "Inception3": "fc",
    "MNASNet": "classifier.1",
    "MobileNetV2": "classifier.1",
    "MobileNetV3": "classifier.3",
    "RegNet": "fc",
    "ResNet": "fc",
    "ShuffleNetV2": "fc",
    "VGG": "classifier.6",
}


class HeadNotFoundError(ConfigError):
    """The backbone does not name its classifier."""


def _module_path(model: nn.Module, module: nn.Module) -> str | None:
    for name, m in model.named_modules():
        if m is module and name:
            return name
    return None


def _torchvision_head(model: nn.Module) -> str | None:
    if not type(model).__module__.startswith("torchvision."):
        return None
    for cls in type(model).__mro__:
        if cls.__name__ in TORCHVISION_HEADS and cls.__module__.startswith("torchvision."):
            return TORCHVISION_HEADS[cls.__name__]
    return None


def head_path(model: nn.Module, path: str | None = None) -> str:
    """Module path of the classifier of ``model`` (see the module docstring for the order)."""
    path = path or getattr(model, HEAD_PATH_ATTRIBUTE, None)
    source = "backbone.classifier"
    if not path and hasattr(model, "get_classifier"):
        head = model.get_classifier()
        path, source = (_module_path(model, head) if isinstance(head, nn.Module) else None), "get_classifier()"
    if not path:
        cfg = getattr(model, "pretrained_cfg", None) or {}
        path, source = cfg.get("classifier"), "timm pretrained_cfg['classifier']"
    if not path:
        path, source = _torchvision_head(model), "torchvision family"
    if not path:
        raise HeadNotFoundError(
            f"{type(model).__name__} does not name its classifier: give the module path of its last linear layer "
            f"as backbone.classifier=<path> (e.g. classifier.3), or give the model get_classifier()"
        )
    try:
        model.get_submodule(path)
    except AttributeError as e:
        raise HeadNotFoundError(f"classifier {path!r} (from {source}) is not a module of {type(model).__name__}") from e
    return path


def find_head(model: nn.Module, path: str | None = None) -> nn.Module:
    """The classifier module of ``model``; :class:`HeadNotFoundError` if it names none."""
    return model.get_submodule(head_path(model, path))


def replace_head(model: nn.Module, num_classes: int, path: str | None = None) -> nn.Linear:
    """Put a freshly initialized ``nn.Linear(features, num_classes)`` where the head is.

    The new head is recorded as ``model.head_path`` so that later look-ups (component
    tags, patches) find the same module.
    """
    path = head_path(model, path)
    old = model.get_submodule(path)
    if not isinstance(old, nn.Linear):
        raise HeadNotFoundError(f"classifier {path!r} of {type(model).__name__} is a {type(old).__name__}, not nn.Linear")
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None).to(old.weight.device)
    model.set_submodule(path, new)
    setattr(model, HEAD_PATH_ATTRIBUTE, path)
    if hasattr(model, "num_classes"):
        model.num_classes = num_classes
    return new


def name_head(model: nn.Module, path: str | None = None) -> str:
    """Record ``path`` (``backbone.classifier``; ``None`` = the model's own naming) as the
    head of ``model`` and check that one is found before anything trains."""
    if path:
        setattr(model, HEAD_PATH_ATTRIBUTE, path)
    return head_path(model)
