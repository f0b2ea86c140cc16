"""MAML (Finn et al. 2017), KM Table III: the inner loop adapts every parameter. Outside
meta-learning it trains everything, like ``full``."""

from kmexp.methods.base import Method, register_method


@register_method("maml")
class MAML(Method):
    components = ("convolution", "implicit", "classifier")
    inner_components = ("convolution", "implicit", "classifier")
    lightning_modules = ("fewshot",)
