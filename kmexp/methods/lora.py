"""LoRA on convolutions through peft (not in the papers: the KM-vs-LoRA comparison).

peft's own ``LoraConfig`` / ``inject_adapter_in_model`` adapt every ungrouped ``nn.Conv2d``
(or the ``target_modules`` / ``exclude_modules`` subset); the adapters are the ``lora``
component, which trains with normalization (implicit) and the classifier, like KM. The
rank rule (``rank: match_km``, at most KM's modulator budget) is in :mod:`kmexp.lora`.
Option ``lora``: ``rank``, ``alpha``, ``dropout``, ``target_modules``, ``exclude_modules``.
"""

from torch import nn

from kmexp.methods.base import Method, register_method


@register_method("lora")
class LoRA(Method):
    components = ("lora", "implicit", "classifier")

    def __init__(self, lora: dict | None = None, **common):
        super().__init__(**common)
        self.lora = dict(lora or {})

    def inject(self, model: nn.Module, model_cfg: dict) -> None:
        from kmexp.lora import apply_lora

        apply_lora(model, self.lora, model_cfg.get("modulator"))
