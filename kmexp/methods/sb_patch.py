"""The scale-and-bias (S/B) patch (model patches Sec. 2 and 5.2).

Every normalization gamma, beta (the implicit component) trains, and the statistics mu,
sigma are re-estimated and shipped in the patch: ``norm_stats: epoch_average`` = a
cumulative average over each epoch (:mod:`kmexp.norm_statistics`), not the last ~10
batches of PyTorch's momentum 0.1; the paper's TensorFlow batch norm averages over
hundreds of batches.

Option ``train_classifier``: ``false`` = "S/B only (random last)" (Table 2/3): the
classifier stays fixed at its random initialization (Sec. 2: "When the last layer is not
trained, it is fixed to its random initial value"); ``true`` = "S/B + last layer"
(Table 2/3; Table 6 "+ scales and biases").
"""

from kmexp.methods.base import Method, register_method


@register_method("sb_patch")
class ScaleBiasPatch(Method):
    components = ("implicit",)
    norm_stats = "epoch_average"

    def __init__(self, train_classifier: bool = False, **common):
        super().__init__(**common)
        if train_classifier:
            self.also_train("classifier")
