"""The depthwise (DW) patch (model patches Sec. 2 and 5.2, Fig. 3): re-learn the
depthwise convolution weights (conv weights with groups == in_channels; MobileNetV2 has
17, 64,224 parameters).

Normalization statistics are re-estimated (``norm_stats: update``) because new spatial
filters change the activations they normalize; the paper does not say which it did, so
``method.norm_stats=frozen`` is the other choice.

Option ``train_classifier``: ``false`` = the classifier stays at its random
initialization; ``true`` = DW patch + last layer (Fig. 3).
"""

from kmexp.methods.base import Method, register_method


@register_method("dw_patch")
class DepthwisePatch(Method):
    components = ("depthwise",)

    def __init__(self, train_classifier: bool = False, **common):
        super().__init__(**common)
        if train_classifier:
            self.also_train("classifier")
