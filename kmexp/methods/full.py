"""Train everything: the fully trained reference (KM Table I "Full"; TBL-2 / FTL in
transfer learning, KM Fig. 4 and Table II)."""

from kmexp.methods.base import Method, register_method


@register_method("full")
class Full(Method):
    components = ("convolution", "implicit", "classifier")
