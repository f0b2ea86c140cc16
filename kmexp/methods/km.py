"""Kernel Modulation (KM Sec. III, Table I; TKM-2 in transfer learning, Table II).

Every convolution gets a kernel modulator (:mod:`kmexp.modulation`; its options are the
``modulator`` config section, KM Sec. IV-D / Fig. 5). Implicit modulation (normalization
gamma, beta), the explicit modulators and the classifier train. TKM-1 (KM Fig. 4,
Table II: normalization frozen) is ``method.components=[explicit,classifier]``. In
meta-learning (KM Sec. IV-C, Table III) the inner loop adapts modulators and classifier.
Modulators declare their own optimizer needs (no weight decay, Eq. 4).
"""

from torch import nn

from kmexp.methods.base import Method, register_method
from kmexp.modulation import ModulatorConfig, add_kernel_modulators


@register_method("km")
class KernelModulation(Method):
    components = ("implicit", "explicit", "classifier")
    inner_components = ("explicit", "classifier")

    def __init__(self, target_modules=None, exclude_modules=None, **common):
        """``target_modules`` / ``exclude_modules``: modulate only some convolutions
        (peft-style regex or name list, :mod:`kmexp.targets`); default: every one (Sec. III-A)."""
        super().__init__(**common)
        self.target_modules, self.exclude_modules = target_modules, exclude_modules

    def inject(self, model: nn.Module, model_cfg: dict) -> None:
        names = None
        if self.target_modules is not None or self.exclude_modules is not None:
            from kmexp.targets import select_modules

            names = select_modules(model, self.target_modules, self.exclude_modules)
        add_kernel_modulators(model, ModulatorConfig.from_dict(model_cfg.get("modulator")), names)
