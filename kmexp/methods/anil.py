"""ANIL, "almost no inner loop" (Raghu et al. 2020), KM Table III: the inner loop adapts
only the classifier; the outer loop still meta-learns every parameter."""

from kmexp.methods.base import Method, register_method


@register_method("anil")
class ANIL(Method):
    components = ("convolution", "implicit", "classifier")
    inner_components = ("classifier",)
    lightning_modules = ("fewshot",)
