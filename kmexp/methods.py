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
from kmexp.models.registry import build_backbone
from kmexp.modulation import ModulatorConfig, add_kernel_modulators

INJECTIONS = ("kernel_modulator", "lite_residual", "lora")
NORM_STATS = ("update", "frozen")


@dataclass(frozen=True)
class Method:
    """Attributes:
    name: short id used in run names and tables (``km``, ``bl`` ...).
    components: trainable components (kmexp.components.COMPONENTS).
    inject: modules added before freezing: ``kernel_modulator``, ``lite_residual``.
    norm_stats: ``update`` = norm layers re-estimate running statistics while training
        (part of the task patch); ``frozen`` = they keep the base model's statistics.
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
    model = build_backbone(name, num_classes=model_cfg["num_classes"], **backbone_cfg)

    sharing_cfg = model_cfg.get("sharing") or {}
    if sharing_cfg.get("groups") or sharing_cfg.get("strategy", "none") != "none":
        from kmexp.sharing import apply_sharing

        apply_sharing(model, sharing_cfg)

    apply_method(model, model_cfg["method"], model_cfg.get("modulator"))
    model.kmexp_recipe = {k: model_cfg.get(k) for k in ("backbone", "num_classes", "method", "modulator", "sharing")}
    return model


def apply_method(model: nn.Module, method_cfg: dict, modulator_cfg: dict | None = None) -> nn.Module:
    """Steps 3-4 of :func:`build_model` on any network, in place: inject the method's modules
    and freeze every parameter outside its components (the public ``kmexp.modulate``).

    Method keys ``target_modules`` / ``exclude_modules`` restrict the kernel modulators to
    some convolutions (:mod:`kmexp.targets`); ``lora`` holds the LoRA options (:mod:`kmexp.lora`).
    """
    method = Method.from_dict(method_cfg)
    if method.modulates:
        from kmexp.targets import select_modules

        names = None
        if method.extra.get("target_modules") is not None or method.extra.get("exclude_modules") is not None:
            names = select_modules(model, method.extra.get("target_modules"), method.extra.get("exclude_modules"))
        add_kernel_modulators(model, ModulatorConfig.from_dict(modulator_cfg), names)
    if "lite_residual" in method.inject:
        from kmexp.lite_residual import add_lite_residuals

        add_lite_residuals(model, **method.extra.get("lite_residual", {}))
    if "lora" in method.inject:
        from kmexp.lora import apply_lora

        apply_lora(model, method.extra.get("lora"), modulator_cfg)
    apply_trainable(model, method.components)
    return model
