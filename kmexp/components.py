"""Components: the vocabulary of *which parts of a network train*.

Every table of the three papers is a grid of trainable components (Kernel Modulation,
Table I: "Convolution / Implicit / Explicit / Classifier"). A method is a set of them
(configs/method/*.yaml). Each parameter is tagged with one or more components:

=================  ==========================================================
``convolution``    base weights of the backbone: conv (and other dense) weights
                   and their biases
``implicit``       affine parameters of normalization layers, gamma and beta
                   ("implicit modulation", Sec. III-B)
``norm_offset``    the offsets beta of normalization layers alone (a subset of
                   ``implicit``; KM's few-shot inner loop variant, Table III "< 51X")
``explicit``       kernel-modulator weights (Sec. III-A)
``classifier``     the final linear layer
``depthwise``      depthwise conv weights (model patches' DW patch)
``bias``           every bias (TinyTL's "B")
``lite_residual``  TinyTL lite residual modules
``lora``           LoRA adapters injected by peft (``lora_A``/``lora_B``; kmexp.lora)
=================  ==========================================================

A parameter trains iff one of its tags is in the method's set; everything else gets
``requires_grad=False``. Tags are derived from module structure, like peft does for
target modules, so new backbones need no annotations beyond naming the classifier.

Modules a method adds to a network (kernel modulators, lite residuals, ...) subclass
:class:`InjectedModule` and so tag their own parameters: this module knows no method.
A new component name declared by an injected module joins the vocabulary on its own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import ClassVar

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from kmexp.errors import ConfigError

COMPONENTS = (
    "convolution",
    "implicit",
    "norm_offset",
    "explicit",
    "classifier",
    "depthwise",
    "bias",
    "lite_residual",
    "lora",
)
LORA_MARKERS = (".lora_A.", ".lora_B.")  # peft's adapter ModuleDicts inside a LoraLayer
NORM_TYPES = (_BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)


class InjectedModule(nn.Module):
    """Base of every module a method injects into a network.

    Class attributes:
        component: the component every parameter under the module carries (its biases
            also carry ``bias``). A name outside :data:`COMPONENTS` is added to it.
        weight_decay: ``None`` = the optimizer's ``weight_decay``; a number = the decay
            these parameters always get (kernel modulators: 0, see kmexp.modulation).
    """

    component: ClassVar[str]
    weight_decay: ClassVar[float | None] = None

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        global COMPONENTS
        name = getattr(cls, "component", None)
        if name is not None and name not in COMPONENTS:
            COMPONENTS = (*COMPONENTS, name)


def _injected_owner(model: nn.Module) -> dict[int, InjectedModule]:
    """id(parameter) -> the outermost injected module holding it."""
    owner: dict[int, InjectedModule] = {}
    for m in model.modules():
        if isinstance(m, InjectedModule):
            for p in m.parameters():
                owner.setdefault(id(p), m)
    return owner


def classifier_module(model: nn.Module) -> nn.Module:
    """The final linear layer, as the backbone names it (:func:`kmexp.models.heads.find_head`:
    ``backbone.classifier``, ``get_classifier()``, timm's ``pretrained_cfg``, a torchvision
    family); a network that names none is an error, never a silently frozen random head."""
    from kmexp.models.heads import find_head  # kmexp.models imports this module

    return find_head(model)


def _is_depthwise(conv: nn.Module) -> bool:
    return isinstance(conv, nn.Conv2d) and conv.groups > 1 and conv.groups == conv.in_channels


def tag_parameters(model: nn.Module) -> dict[str, set[str]]:
    """Map every parameter name (as in ``named_parameters()``) to its components."""
    classifier_ids = {id(p) for p in classifier_module(model).parameters()}
    injected = _injected_owner(model)

    by_id: dict[int, set[str]] = defaultdict(set)
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            owner = module
            tags = by_id[id(p)]
            if pname == "original":  # frozen base weight under a parametrization
                owner = _parametrized_owner(model, module)
                pname = "weight"
            if id(p) in injected:
                tags.add(injected[id(p)].component)
            elif id(p) in classifier_ids:
                tags.add("classifier")
            elif isinstance(owner, NORM_TYPES):
                tags.add("implicit")
                if pname == "bias":
                    tags.add("norm_offset")
            else:
                tags.add("convolution")
                if _is_depthwise(owner) and pname == "weight":
                    tags.add("depthwise")
            if pname == "bias":
                tags.add("bias")
    names = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if any(m in f".{name}" for m in LORA_MARKERS):
            by_id[id(p)] = {"lora"}
        names[name] = by_id[id(p)]
    return names


def _parametrized_owner(model: nn.Module, plist: nn.Module) -> nn.Module:
    for m in model.modules():
        if hasattr(m, "parametrizations") and any(v is plist for v in m.parametrizations.values()):
            return m
    return plist


def weight_decay_overrides(model: nn.Module) -> dict[str, float]:
    """Parameter name -> the fixed weight decay its injected module declares (if any)."""
    injected = _injected_owner(model)
    return {
        name: injected[id(p)].weight_decay
        for name, p in model.named_parameters(remove_duplicate=False)
        if id(p) in injected and injected[id(p)].weight_decay is not None
    }


def validate_components(components: Iterable[str]) -> list[str]:
    components = list(components)
    unknown = [c for c in components if c not in COMPONENTS]
    if unknown:
        raise ConfigError(f"unknown component(s) {unknown}; choose from {list(COMPONENTS)}")
    return components


def apply_trainable(model: nn.Module, components: Iterable[str]) -> dict[str, bool]:
    """Freeze every parameter that is not in ``components``; return name -> trainable."""
    wanted = set(validate_components(components))
    trainable = {}
    tags = tag_parameters(model)
    params = dict(model.named_parameters(remove_duplicate=False))
    for name, comps in tags.items():
        on = bool(comps & wanted)
        params[name].requires_grad_(on)
        trainable[name] = on
    return trainable


def parameters_of(model: nn.Module, components: Iterable[str]) -> dict[str, nn.Parameter]:
    """Named (deduplicated) parameters carrying any of ``components``."""
    wanted = set(components)
    tags = tag_parameters(model)
    return {n: p for n, p in model.named_parameters() if tags[n] & wanted}


def count_parameters(model: nn.Module) -> dict[str, float]:
    """``params/total``, ``params/trainable``, ``params/trainable_pct`` (tied weights counted once)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "params/total": total,
        "params/trainable": trainable,
        "params/trainable_pct": 100.0 * trainable / max(total, 1),
    }


def component_counts(model: nn.Module) -> dict[str, int]:
    """Number of parameters carrying each component tag (a parameter may have several)."""
    tags = tag_parameters(model)
    counts = dict.fromkeys(COMPONENTS, 0)
    for name, p in model.named_parameters():
        for c in tags[name]:
            counts[c] += p.numel()
    return counts


def describe(model: nn.Module) -> str:
    """One line in peft's style: ``trainable params: N || all params: M || trainable%: x``."""
    c = count_parameters(model)
    return (
        f"trainable params: {c['params/trainable']:,} || all params: {c['params/total']:,} "
        f"|| trainable%: {c['params/trainable_pct']:.4f}"
    )


def freeze_norm_statistics(model: nn.Module) -> None:
    """Put every normalization layer in eval mode: it keeps the base model's running
    statistics instead of re-estimating them (``method.norm_stats: frozen``)."""
    for m in model.modules():
        if isinstance(m, NORM_TYPES):
            m.eval()
