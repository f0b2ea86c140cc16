"""BL (KM Table I): random frozen convolutions; normalization affine parameters (implicit
modulation, Sec. III-B) and the classifier train. The same setup is NC in transfer
learning (KM Table II: NC-1, Mudrakarta et al. 2019; NC-2, TinyTL's "FT-Norm+Last")."""

from kmexp.methods.base import Method, register_method


@register_method("bl")
class Baseline(Method):
    components = ("implicit", "classifier")
