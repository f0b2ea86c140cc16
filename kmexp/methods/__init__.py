"""Training methods, one file each, in the spirit of peft's tuners.

A method is a :class:`~kmexp.methods.base.Method` subclass registered under its name
with :func:`~kmexp.methods.base.register_method`. It declares its trainable components
and the modules it injects; injected modules tag their own parameters and declare
their optimizer needs (:class:`kmexp.components.InjectedModule`).

**Adding a method = one Python file + one YAML:** ``kmexp/methods/<name>.py`` (the
class, with ``@register_method("<name>")``; every module of this package is imported
here, so there is nothing else to register) and ``configs/method/<name>.yaml`` (``name:``
plus the method's options). tests/test_methods.py shows it with a throwaway method.

Paper-row labels (TKM-1, TBL-2, NC, ...) are not methods: a table row names a method
plus overrides (e.g. TKM-1 is ``method=km method.components=[explicit,classifier]``).

:func:`build_model` is the single place a network is assembled from plain config:

1. build the backbone from the registry;
2. tie kernels across isomorphic layers if ``sharing`` asks for it (kernel sharing is
   orthogonal to the method and happens before it);
3. inject the method's modules;
4. freeze every parameter outside the method's components.

The same function rebuilds the model from a checkpoint's hyperparameters, which is
why it takes plain dicts and never ``nn.Module`` objects.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable

from torch import nn

from kmexp.components import apply_trainable
from kmexp.methods.base import METHODS, Method, parse_method, register_method
from kmexp.models.heads import name_head
from kmexp.models.registry import build_backbone

__all__ = ["METHODS", "Method", "build_model", "parse_method", "register_method"]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def build_model(model_cfg: dict, method: Method | None = None, components: Iterable[str] | None = None) -> nn.Module:
    """Assemble backbone + sharing + method from the plain dict ``model_cfg``.

    Keys: ``backbone`` (``name`` + builder options), ``num_classes``, ``method``,
    ``modulator`` (read by KM), ``sharing``. ``method``: the already parsed method (else
    parsed from ``model_cfg["method"]``); ``components``: train these instead of the
    method's (few-shot outer loop).
    """
    backbone_cfg = dict(model_cfg["backbone"])
    name = backbone_cfg.pop("name")
    classifier = backbone_cfg.pop("classifier", None)  # explicit head path (kmexp.models.heads)
    model = build_backbone(name, num_classes=model_cfg["num_classes"], **backbone_cfg)
    name_head(model, classifier)

    sharing_cfg = model_cfg.get("sharing") or {}
    if sharing_cfg.get("groups") or sharing_cfg.get("strategy", "none") != "none":
        from kmexp.sharing import apply_sharing

        apply_sharing(model, sharing_cfg)

    method = method or parse_method(model_cfg["method"])
    method.inject(model, model_cfg)
    apply_trainable(model, method.components if components is None else components)
    # how the model was built, for self-describing patches (kmexp.api.save_patch, kmexp.patch_compat)
    model.kmexp_recipe = {k: model_cfg.get(k) for k in ("backbone", "num_classes", "method", "modulator", "sharing")}
    return model
