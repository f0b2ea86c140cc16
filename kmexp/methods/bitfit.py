"""BitFit (Ben Zaken et al. 2022; not in the papers): every bias trains (normalization betas
and any conv/linear bias), plus the classifier. The cheapest baseline of KM vs LoRA."""

from kmexp.methods.base import Method, register_method


@register_method("bitfit")
class BitFit(Method):
    components = ("bias", "classifier")
