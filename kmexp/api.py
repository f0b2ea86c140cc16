"""The public library API: parameter-efficient methods on any PyTorch ConvNet, peft style.

::

    import kmexp
    model = kmexp.create_backbone("torchvision", num_classes=10, model_name="resnet50", seed=0)
    model = kmexp.modulate(model, kmexp.KMConfig(activation="tanh", depth=2))
    kmexp.print_trainable_parameters(model)
    ...  # train
    kmexp.save_patch(model, "task.safetensors")
    model = kmexp.load_patch("task.safetensors")   # fresh process: rebuilds base + method
    plain = kmexp.fold(model)                      # merge-and-unload

Methods (each a config class; all train the classifier unless ``train_classifier=False``):

- :class:`KMConfig`: Kernel Modulation (Hu & Liu, Sec. III-A; with ``train_norm`` also the
  implicit modulation of Sec. III-B: the KM row of Table I / TKM-2);
- :class:`SBPatchConfig` / :class:`DWPatchConfig`: model patches (Mudrakarta et al., Sec. 2);
- :class:`TinyTLConfig`: TinyTL-L+B lite residuals (Cai et al. 2020; KM Table II);
- :class:`LoRAConfig`: peft's LoRA on convolutions, rank matched to KM (:mod:`kmexp.lora`);
- :class:`BitFitConfig`: biases only.

A model built by :func:`create_backbone` remembers how (registry name, options, number of
classes, seed), so its patches name their base and :func:`load_patch` can rebuild it. Any
other ``nn.Module`` can be modulated too; its patches then need ``load_patch(path, base=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from kmexp.components import COMPONENTS, apply_trainable, count_parameters
from kmexp.errors import PatchError
from kmexp.methods import build_model, parse_method
from kmexp.modulation import fold_modulators
from kmexp.patch_compat import recipe_mismatches
from kmexp.patches import apply_patch, export_patch, read_patch
from kmexp.targets import Selector

RECIPE = "kmexp_recipe"


@dataclass(frozen=True)
class KMConfig:
    """Kernel Modulation: one modulator MLP per selected convolution (Sec. III-A).

    ``train_norm``: also train normalization gamma/beta (implicit modulation, Sec. III-B).
    ``activation`` / ``init`` / ``depth`` / ``init_std``: the modulator (Fig. 5 ablations).
    """

    target_modules: Selector = None
    exclude_modules: Selector = None
    activation: str = "tanh"
    depth: int = 2
    init: str = "default"
    init_std: float = 1e-3
    train_norm: bool = True
    train_classifier: bool = True

    def method(self) -> dict:
        comps = ["explicit"] + (["implicit"] if self.train_norm else []) + (["classifier"] if self.train_classifier else [])
        return {"name": "km", "components": comps,
                "target_modules": _plain(self.target_modules), "exclude_modules": _plain(self.exclude_modules)}

    def modulator(self) -> dict:
        return {"activation": self.activation, "init": self.init, "depth": self.depth, "init_std": self.init_std}


@dataclass(frozen=True)
class SBPatchConfig:
    """Scale-and-bias patch: normalization gamma, beta and re-estimated statistics (model patches Sec. 2)."""

    train_classifier: bool = True

    def method(self) -> dict:
        return {"name": "sb_patch", "norm_stats": "update", "train_classifier": self.train_classifier}

    def modulator(self) -> None:
        return None


@dataclass(frozen=True)
class DWPatchConfig:
    """Depthwise patch: depthwise kernels (+ S/B with ``train_norm``) (model patches Sec. 2)."""

    train_norm: bool = False
    train_classifier: bool = True

    def method(self) -> dict:
        comps = ["depthwise"] + (["implicit"] if self.train_norm else []) + (["classifier"] if self.train_classifier else [])
        return {"name": "dw_patch", "components": comps}

    def modulator(self) -> None:
        return None


@dataclass(frozen=True)
class TinyTLConfig:
    """TinyTL-L+B: lite residual modules + biases (Cai et al. 2020; options: kmexp.lite_residual)."""

    lite_residual: dict = field(default_factory=lambda: {"expand": 0.25, "groups": 32})
    train_classifier: bool = True

    def method(self) -> dict:
        comps = ["lite_residual", "bias"] + (["classifier"] if self.train_classifier else [])
        return {"name": "tinytl", "components": comps, "lite_residual": dict(self.lite_residual)}

    def modulator(self) -> None:
        return None


@dataclass(frozen=True)
class LoRAConfig:
    """peft LoRA on ungrouped convolutions; ``rank="match_km"`` = KM's budget (kmexp.lora)."""

    rank: int | str = "match_km"
    alpha: float | None = None
    dropout: float = 0.0
    target_modules: Selector = None
    exclude_modules: Selector = None
    train_norm: bool = True
    train_classifier: bool = True

    def method(self) -> dict:
        comps = ["lora"] + (["implicit"] if self.train_norm else []) + (["classifier"] if self.train_classifier else [])
        lora = {"rank": self.rank, "alpha": self.alpha, "dropout": self.dropout,
                "target_modules": _plain(self.target_modules), "exclude_modules": _plain(self.exclude_modules)}
        return {"name": "lora", "components": comps, "lora": lora}

    def modulator(self) -> dict:
        return {}  # the KM budget of rank="match_km" uses the default modulator


@dataclass(frozen=True)
class BitFitConfig:
    """Biases only (Ben Zaken et al. 2022)."""

    train_classifier: bool = True

    def method(self) -> dict:
        return {"name": "bitfit", "components": ["bias"] + (["classifier"] if self.train_classifier else [])}

    def modulator(self) -> None:
        return None


MethodConfig = KMConfig | SBPatchConfig | DWPatchConfig | TinyTLConfig | LoRAConfig | BitFitConfig


def _plain(selector: Selector):
    return list(selector) if selector is not None and not isinstance(selector, str) else selector


def create_backbone(name: str, num_classes: int, seed: int = 0, **options) -> nn.Module:
    """A registered backbone (``kmexp.models.list_backbones()``: ``resnet32``, ``resnet50``,
    ``timm``, ``torchvision`` ...) initialized from ``seed``, remembering its recipe so patches
    can rebuild it. ``options`` are the builder's (``model_name``, ``pretrained``, ``weights_path``)."""
    return _build({"backbone": {"name": name, **options}, "num_classes": num_classes}, seed)


def _build(recipe: dict, seed: int) -> nn.Module:
    from kmexp.models import build_backbone

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if recipe.get("method"):
            model = build_model({**recipe, "sharing": recipe.get("sharing") or {}})
        else:
            backbone = dict(recipe["backbone"])
            model = build_backbone(backbone.pop("name"), num_classes=recipe["num_classes"], **backbone)
    setattr(model, RECIPE, {**getattr(model, RECIPE, {}), **recipe, "seed": seed})
    return model


def apply_method(model: nn.Module, method_cfg: dict, modulator_cfg: dict | None = None) -> nn.Module:
    """Steps 3-4 of :func:`kmexp.methods.build_model` on any network, in place: inject the
    method's modules and freeze every parameter outside its components."""
    method = parse_method(method_cfg)
    method.inject(model, {"modulator": modulator_cfg or {}})
    apply_trainable(model, method.components)
    return model


def modulate(model: nn.Module, config: MethodConfig | None = None) -> nn.Module:
    """Apply a method to ``model`` in place (inject its modules, freeze all but its components)
    and return it. ``config`` defaults to :class:`KMConfig`."""
    config = KMConfig() if config is None else config
    recipe = dict(getattr(model, RECIPE, None) or {})
    if recipe.get("method"):
        raise PatchError(f"model already has method {recipe['method']['name']!r}; modulate a plain backbone")
    method, modulator = config.method(), config.modulator()
    apply_method(model, method, modulator)
    setattr(model, RECIPE, {**recipe, "method": method, "modulator": modulator})
    return model


def trainable_parameters(model: nn.Module) -> dict[str, int]:
    """``{"trainable", "total", <component>: trainable count ...}`` (tied weights counted once).

    Components are the method's (all when the model has none); a parameter may carry
    several tags (a normalization beta is ``implicit`` and ``bias``)."""
    from kmexp.components import tag_parameters

    c = count_parameters(model)
    tags = tag_parameters(model)
    method = (getattr(model, RECIPE, None) or {}).get("method")
    shown = set(method["components"]) if method else set(COMPONENTS)
    per = dict.fromkeys([k for k in COMPONENTS if k in shown], 0)
    for name, p in model.named_parameters():
        if p.requires_grad:
            for t in tags[name] & per.keys():
                per[t] += p.numel()
    return {"trainable": int(c["params/trainable"]), "total": int(c["params/total"]), **{k: v for k, v in per.items() if v}}


def print_trainable_parameters(model: nn.Module) -> str:
    """peft's one line plus the trainable count of each component; printed and returned."""
    counts = trainable_parameters(model)
    pct = 100.0 * counts["trainable"] / max(counts["total"], 1)
    parts = ", ".join(f"{k} {v:,}" for k, v in counts.items() if k not in ("trainable", "total"))
    text = (f"trainable params: {counts['trainable']:,} || all params: {counts['total']:,} || trainable%: {pct:.4f}"
            f"\n  by component: {parts or 'none'}")
    print(text)
    return text


def save_patch(model: nn.Module, path: str | Path) -> Path:
    """Write the task patch of a modulated model, with a self-describing header: method,
    components, modulator and backbone configuration, number of classes, base fingerprint, seed."""
    recipe = getattr(model, RECIPE, None) or {}
    if not recipe.get("method"):
        raise PatchError("model has no kmexp method: apply one with kmexp.modulate(model, config) first")
    method = parse_method(recipe["method"])
    return export_patch(
        model, path, method.name, list(method.components), include_norm_stats=method.norm_stats == "update",
        recipe={k: recipe.get(k) for k in ("backbone", "num_classes", "method", "modulator", "sharing")},
        num_classes=recipe.get("num_classes"), seed=recipe.get("seed"),
        backbone=(recipe.get("backbone") or {}).get("name"),
    )


def load_patch(path: str | Path, base: nn.Module | None = None) -> nn.Module:
    """The patched model, in eval mode.

    ``base=None``: rebuild the base from the header (random bases from the seed, pretrained
    ones from their named weights), apply the method, load the patch. ``base`` = a plain
    backbone: the patch's method is applied to it first; a model that already carries a
    method must match the patch's configuration. Any mismatch raises :class:`PatchError`
    naming it, and the fingerprint check refuses a different base.
    """
    header, _ = read_patch(path)
    recipe = header.get("recipe")
    if base is None:
        if not recipe or not recipe.get("backbone") or header.get("seed") is None:
            raise PatchError(
                f"{path} does not name its base model (it was not built with kmexp.create_backbone or "
                f"kmexp.train): pass the base network, load_patch(path, base=model)"
            )
        model = _build(recipe, int(header["seed"]))
    else:
        model = base
        has_method = bool((getattr(model, RECIPE, None) or {}).get("method")) or _has_injections(model)
        if not has_method:
            if not recipe or not recipe.get("method"):
                raise PatchError(f"{path} does not name its method: pass a base that already carries it")
            mismatches = recipe_mismatches({k: recipe.get(k) for k in ("backbone", "num_classes")}, model)
            if mismatches:
                raise PatchError(f"{path} does not fit this model: {'; '.join(mismatches)}")
            apply_method(model, recipe["method"], recipe.get("modulator"))
            setattr(model, RECIPE, {**(getattr(model, RECIPE, None) or {}), "method": recipe["method"],
                                    "modulator": recipe.get("modulator")})
    apply_patch(model, path)
    return model.eval()


def _has_injections(model: nn.Module) -> bool:
    from kmexp.components import tag_parameters

    return any(t & {"explicit", "lora", "lite_residual"} for t in tag_parameters(model).values())


def fold(model: nn.Module) -> nn.Module:
    """Merge-and-unload: bake kernel modulators and LoRA adapters into plain convolutions
    (identical outputs; KM Sec. I, Fig. 1). In place; returns ``model``. Lite residuals are
    extra branches and stay."""
    fold_modulators(model)
    if any(".lora_A." in n for n, _ in model.named_parameters()):
        from kmexp.lora import merge_lora

        merge_lora(model)
    recipe = getattr(model, RECIPE, None)
    if recipe:
        setattr(model, RECIPE, {**recipe, "folded": True})
    return model


__all__ = [
    "BitFitConfig", "DWPatchConfig", "KMConfig", "LoRAConfig", "SBPatchConfig", "TinyTLConfig",
    "create_backbone", "fold", "load_patch", "modulate", "print_trainable_parameters", "save_patch",
    "trainable_parameters",
]
