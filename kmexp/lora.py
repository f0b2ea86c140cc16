"""LoRA on convolutions through peft, and the rank rule that matches Kernel Modulation.

Not in the papers: a head-to-head of the two ways of adapting frozen kernels.

- **KM** (Kernel Modulation Sec. III-A) trains a (kh*kw) x (kh*kw) MLP per convolution:
  ``depth * (kh*kw)**2`` parameters (162 for a 3x3 kernel at depth 2), independent of
  the layer's width.
- **LoRA** (Hu et al. 2021) on a convolution, as implemented by peft
  (``peft.tuners.lora.layer.Conv2d``): ``lora_A`` is a ``kh x kw`` convolution from
  ``c_in`` to ``r`` channels and ``lora_B`` a 1x1 convolution from ``r`` to ``c_out``,
  so ``r * (c_in*kh*kw + c_out)`` parameters; the update ``B A`` is added to the frozen
  kernel (``lora_B`` starts at zero, so the network is unchanged at injection).

**Rank rule** (``rank: match_km``): the LoRA budget is the number of kernel-modulator
parameters KM would train on the same targets (same backbone, same modulator config).
With ``C = sum_i (c_in,i*kh*kw + c_out,i)`` the rank-1 cost of all targets:

1. if ``C <= budget``: every target gets the uniform rank ``r = floor(budget / C)``;
2. otherwise (the usual case: one rank-1 LoRA of a 64-channel 3x3 convolution already
   costs 640 parameters, KM's whole modulator 162), targets are taken at rank 1 in
   network order (input first), each one only if it still fits in the remaining budget.

So LoRA never trains more than KM, and falls short by less than the rank-1 cost of one
convolution. peft only adapts grouped convolutions when the rank is a multiple of the
groups, so grouped and depthwise convolutions are not LoRA targets.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from torch import nn

from kmexp.errors import ConfigError
from kmexp.modulation import ModulatorConfig
from kmexp.targets import Selector, select_modules

ADAPTER = "default"  # peft's adapter name


def _ungrouped(m: nn.Module) -> bool:
    return getattr(m, "groups", 1) == 1


def lora_targets(model: nn.Module, target_modules: Selector = None, exclude_modules: Selector = None) -> list[str]:
    """Ungrouped ``nn.Conv2d`` modules selected by the peft-style target/exclude rules."""
    return select_modules(model, target_modules, exclude_modules, accept=_ungrouped)


def rank1_cost(conv: nn.Conv2d) -> int:
    """Parameters of a rank-1 peft LoRA on ``conv``: ``c_in*kh*kw + c_out``."""
    return conv.in_channels * math.prod(conv.kernel_size) + conv.out_channels


def km_budget(model: nn.Module, names: Sequence[str], modulator: ModulatorConfig | dict | None = None) -> int:
    """Kernel-modulator parameters KM trains on the convolutions ``names`` (Sec. III-A)."""
    cfg = modulator if isinstance(modulator, ModulatorConfig) else ModulatorConfig.from_dict(modulator)
    total = 0
    for name in names:
        k = math.prod(model.get_submodule(name).kernel_size)
        total += cfg.depth * (k if cfg.init == "diagonal" else k * k)
    return total


def match_budget(model: nn.Module, names: Sequence[str], budget: int) -> tuple[list[str], int]:
    """(targets, rank) of the rank rule above for ``budget`` parameters."""
    costs = [rank1_cost(model.get_submodule(n)) for n in names]
    if sum(costs) <= budget:
        return list(names), budget // sum(costs)
    chosen, left = [], budget
    for name, cost in zip(names, costs, strict=True):
        if cost <= left:
            chosen.append(name)
            left -= cost
    if not chosen:
        raise ConfigError(f"a KM-matched LoRA budget of {budget} parameters fits no rank-1 LoRA of the targets")
    return chosen, 1


def add_lora(model: nn.Module, names: Sequence[str], rank: int, alpha: float | None = None, dropout: float = 0.0) -> int:
    """Inject peft LoRA adapters of rank ``rank`` into the convolutions ``names``, in place.

    ``alpha`` defaults to ``rank`` (scaling alpha/r = 1). Returns the number of adapted layers.
    """
    from peft import LoraConfig, inject_adapter_in_model

    if not isinstance(rank, int) or rank < 1:
        raise ConfigError(f"lora rank={rank!r} must be a positive integer or 'match_km'")
    config = LoraConfig(
        r=rank,
        lora_alpha=float(rank if alpha is None else alpha),
        lora_dropout=dropout,
        target_modules="^(?:" + "|".join(re.escape(n) for n in names) + ")$",
    )
    inject_adapter_in_model(config, model, adapter_name=ADAPTER)
    return len(names)


def apply_lora(model: nn.Module, options: dict | None, modulator: dict | None = None) -> dict:
    """The ``lora`` injection of a method config (``method.lora``): choose targets and rank, inject.

    Options: ``rank`` (int or ``match_km``), ``alpha``, ``dropout``, ``target_modules``,
    ``exclude_modules``. Returns ``{"targets": n, "rank": r, "budget": km budget or None}``.
    """
    options = dict(options or {})
    unknown = set(options) - {"rank", "alpha", "dropout", "target_modules", "exclude_modules"}
    if unknown:
        raise ConfigError(f"unknown method.lora option(s): {sorted(unknown)}")
    names = lora_targets(model, options.get("target_modules"), options.get("exclude_modules"))
    rank = options.get("rank", "match_km")
    budget = None
    if rank == "match_km":
        budget = km_budget(model, names, modulator)
        names, rank = match_budget(model, names, budget)
    add_lora(model, names, rank, options.get("alpha"), options.get("dropout", 0.0))
    return {"targets": len(names), "rank": rank, "budget": budget}


def merge_lora(model: nn.Module) -> nn.Module:
    """peft's merge-and-unload without a PeftModel: merge each adapter into its base
    convolution and put the plain convolution back; in place, returns ``model``."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge(safe_merge=True)
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())
    return model
