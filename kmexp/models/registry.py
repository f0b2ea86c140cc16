"""Backbone registry (timm style): ``@register_backbone("name")`` on a builder function.

A builder takes ``num_classes`` plus its own keyword options and returns an
``nn.Module`` whose final linear layer is reachable by ``get_classifier()`` or ``.fc``.
Backbone configs (configs/backbone/*.yaml) name the builder and its options.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from kmexp.errors import ConfigError

_BACKBONES: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str) -> Callable:
    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BACKBONES:
            raise ValueError(f"backbone {name!r} registered twice")
        _BACKBONES[name] = fn
        return fn

    return decorator


def list_backbones() -> list[str]:
    _import_all()
    return sorted(_BACKBONES)


def build_backbone(name: str, num_classes: int, **kwargs) -> nn.Module:
    _import_all()
    if name not in _BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; registered: {sorted(_BACKBONES)}")
    try:
        return _BACKBONES[name](num_classes=num_classes, **kwargs)
    except TypeError as e:  # an unknown option in the backbone config
        raise ConfigError(f"backbone {name!r}: {e}") from e


def _import_all() -> None:
    # Importing the model package runs every @register_backbone.
    import kmexp.models  # noqa: F401
