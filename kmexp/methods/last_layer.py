"""Last layer (logits) only (model patches Table 2/3 "Last layer", Table 6; TBL-1 in KM
Fig. 4): a linear classifier on the frozen network.

``norm_stats``: ``frozen`` (default) = normalization layers keep the pretrained statistics
(model patches Appendix B.1, "fine-tuning with frozen statistics"; Table 6 first row);
``update`` = they re-estimate their running mean/variance on the new data (KM's TBL-1,
whose backbone runs in training mode); ``epoch_average`` = the same as a cumulative
average over each epoch (:mod:`kmexp.norm_statistics`): model patches Table 6 second row,
"readjusted to keep activation space at mean 0/variance 1", after Li et al. 2016.
"""

from kmexp.methods.base import Method, register_method


@register_method("last_layer")
class LastLayer(Method):
    components = ("classifier",)
    norm_stats = "frozen"
