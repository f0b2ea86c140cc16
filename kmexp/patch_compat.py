"""Is a patch made for this model? Named mismatches instead of a bare fingerprint error.

A self-describing patch (``kmexp.api.save_patch``, ``kmexp.train``) carries in its header
the ``model`` recipe it was trained with: backbone, number of classes, method and
modulator configuration (Kernel Modulation Sec. III-A: activation, init, depth). Before
any tensor is copied, the recipe is compared with what the target model is, so a patch
trained with ``activation=sin`` is refused by a tanh model with a message that says so
(the tensors alone have identical names and shapes and would load silently).
"""

from __future__ import annotations

from torch import nn

from kmexp.modulation import KernelModulator, ModulatorConfig


def _modulator_configs(model: nn.Module) -> list[ModulatorConfig]:
    return list({m.config: None for m in model.modules() if isinstance(m, KernelModulator)})


def _flat(prefix: str, value) -> dict:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flat(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    return {prefix: value}


def _modulates(method_cfg: dict) -> bool:
    """Does the method of a recipe inject kernel modulators (KM, Sec. III-A)?"""
    if not method_cfg:
        return False
    from kmexp.methods import parse_method
    from kmexp.methods.km import KernelModulation

    return isinstance(parse_method(method_cfg), KernelModulation)


def recipe_mismatches(patch_model: dict | None, model: nn.Module) -> list[str]:
    """Differences between a patch's ``model`` recipe and ``model``, as ``key: patch X, model Y``.

    Compared: the modulator configuration of the model's kernel modulators (always), and
    backbone / num_classes / method / modulator of the model's own recipe when it has one
    (``model.kmexp_recipe``, set by :func:`kmexp.methods.build_model` and :func:`kmexp.modulate`).
    """
    if not patch_model:
        return []
    problems = []
    method = patch_model.get("method") or {}
    modulates = _modulates(method)
    found = _modulator_configs(model)
    if modulates and found:
        want = ModulatorConfig.from_dict(patch_model.get("modulator"))
        for cfg in found:
            for key in ("activation", "init", "depth", "init_std"):
                if getattr(cfg, key) != getattr(want, key):
                    problems.append(f"modulator.{key}: patch {getattr(want, key)!r}, model {getattr(cfg, key)!r}")
    elif modulates:
        problems.append(f"the patch's method {method.get('name')!r} injects kernel modulators, this model has none "
                        f"(kmexp.load_patch(path, base=plain_model) applies the method first)")
    elif found:
        problems.append(f"this model has kernel modulators, the patch's method {method.get('name')!r} has none")
    recipe = getattr(model, "kmexp_recipe", None) or {}
    keys = ("backbone", "num_classes", "method") + (() if found else ("modulator",))
    for key in keys:
        if recipe.get(key) is None or patch_model.get(key) is None:
            continue
        mine, theirs = _flat(key, recipe[key]), _flat(key, patch_model[key])
        for k in sorted(set(mine) | set(theirs)):
            if k.endswith(".description") or mine.get(k) == theirs.get(k):
                continue
            problems.append(f"{k}: patch {theirs.get(k)!r}, model {mine.get(k)!r}")
    return list(dict.fromkeys(problems))
