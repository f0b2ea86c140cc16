"""LightningModules: one base (:mod:`kmexp.lit.base`) and one file per kind of training.

The config key ``lightning_module`` names the module: a short name ``<name>`` is the
:class:`~kmexp.lit.base.MethodModule` subclass defined in ``kmexp/lit/<name>.py``
(``classification``, ``fewshot``, ``multitask``); a dotted path (``pkg.mod.Class``)
names any other subclass. Each builds itself from the composed config with
``from_config(cfg)``.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import hydra
from omegaconf import DictConfig

from kmexp.errors import ConfigError


def _known() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in ("base", "summary", "callbacks", "speed"))


def lightning_module_class(name: str) -> type:
    from kmexp.lit.base import MethodModule

    if "." in name:
        cls = hydra.utils.get_class(name)
    else:
        if name not in _known():
            raise ConfigError(f"lightning_module={name!r} is not one of {_known()} (or a dotted class path)")
        module = importlib.import_module(f"{__name__}.{name}")
        found = [c for _, c in inspect.getmembers(module, inspect.isclass)
                 if issubclass(c, MethodModule) and c.__module__ == module.__name__]
        cls = found[0] if len(found) == 1 else None
    if cls is None or not issubclass(cls, MethodModule):
        raise ConfigError(f"lightning_module={name!r} names no kmexp.lit.base.MethodModule subclass")
    return cls


def build_lightning_module(cfg: DictConfig):
    return lightning_module_class(cfg.get("lightning_module", "classification")).from_config(cfg)
