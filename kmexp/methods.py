"""A method = which modules are injected + which components train (DESIGN.md).

``build_model`` is the single place a network is assembled from plain config:

1. build the backbone from the registry;
2. tie kernels across isomorphic layers if ``sharing`` asks for it (kernel sharing is
   orthogonal to the method and happens before it);
3. inject the method's modules (kernel modulators for KM, lite residuals for TinyTL);
4. freeze every parameter outside the method's components.

The same function rebuilds the model from a checkpoint's hyperparameters, which is
why everything here takes plain dicts and never ``nn.Module`` objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from kmexp.components import apply_trainable, validate_components
from kmexp.errors import ConfigError
from kmexp.models.heads import name_head
from kmexp.models.registry import build_backbone
from kmexp.modulation import ModulatorConfig, add_kernel_modulators

INJECTIONS = ("kernel_modulator", "lite_residual")
NORM_STATS = ("update", "epoch_average", "frozen")


@dataclass(frozen=True)
class Method:
    """Attributes:
    name: short id used in run names and tables (``km``, ``bl`` ...).
    components: trainable components (kmexp.components.COMPONENTS).
    inject: modules added before freezing: ``kernel_modulator``, ``lite_residual``.
    norm_stats: ``update`` = norm layers re-estimate running statistics while training
        (PyTorch's exponential average, momentum 0.1; part of the task patch);
        ``epoch_average`` = re-estimated as a cumulative average over each epoch
        (:mod:`kmexp.norm_statistics`, model patches' S/B patch and Table 6);
        ``frozen`` = they keep the base model's statistics.
    """

    name: str
    components: tuple[str, ...]
    inject: tuple[str, ...] = ()
    norm_stats: str = "update"
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, cfg: dict) -> Method:
        cfg = dict(cfg)
        try:
            name = cfg.pop("name")
            components = tuple(validate_components(cfg.pop("components")))
        except KeyError as e:
            raise ConfigError(f"method config needs {e.args[0]!r}") from e
        inject = tuple(cfg.pop("inject", ()) or ())
        bad = [i for i in inject if i not in INJECTIONS]
        if bad:
            raise ConfigError(f"method {name!r}: unknown injection(s) {bad}; choose from {list(INJECTIONS)}")
        norm_stats = cfg.pop("norm_stats", "update")
        if norm_stats not in NORM_STATS:
            raise ConfigError(f"method.norm_stats={norm_stats!r} is not one of {list(NORM_STATS)}")
        cfg.pop("description", None)
        return cls(name, components, inject, norm_stats, extra=cfg)

    @property
    def modulates(self) -> bool:
        return "kernel_modulator" in self.inject


def build_model(model_cfg: dict) -> nn.Module:
    """Assemble backbone + sharing + method from the plain dict ``model_cfg``.

    Keys: ``backbone`` (``name`` + builder options), ``num_classes``, ``method``,
    ``modulator`` (used when the method injects kernel modulators), ``sharing``.
    """
    backbone_cfg = dict(model_cfg["backbone"])
    name = backbone_cfg.pop("name")
    backbone_cfg.pop("reference_accuracy", None)
    classifier = backbone_cfg.pop("classifier", None)  # explicit head path (kmexp.models.heads)
    model = build_backbone(name, num_classes=model_cfg["num_classes"], **backbone_cfg)
    name_head(model, classifier)

    sharing_cfg = model_cfg.get("sharing") or {}
    if sharing_cfg.get("groups") or sharing_cfg.get("strategy", "none") != "none":
        from kmexp.sharing import apply_sharing

        apply_sharing(model, sharing_cfg)

    method = Method.from_dict(model_cfg["method"])
    if method.modulates:
        add_kernel_modulators(model, ModulatorConfig.from_dict(model_cfg.get("modulator")))
    if "lite_residual" in method.inject:
        from kmexp.lite_residual import add_lite_residuals

        add_lite_residuals(model, **method.extra.get("lite_residual", {}))
    apply_trainable(model, method.components)
    return model
