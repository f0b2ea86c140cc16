"""Re-estimated normalization statistics as a cumulative average over each epoch.

Model patches Sec. 2 and 5: the S/B patch ships re-estimated batch-norm statistics, and
Table 6 ("+ batchnorm statistics", Appendix B.1) is about the statistics themselves. With
PyTorch's default momentum 0.1 the running mean/variance is an exponential average whose
weight halves every ~7 batches: it reflects the last ~10 batches, not the data. The paper's
TensorFlow models average over a far longer window (TF-slim MobileNet/Inception batch norm
decay 0.997-0.9997, i.e. ~300-3,000 batches). Here the statistics are a *cumulative* average
over the epoch: every BatchNorm gets ``momentum=None`` (PyTorch's cumulative moving average)
and its statistics are reset at the start of each training epoch, so after the epoch they are
the mean over all of its batches of the batch mean and (unbiased) batch variance. With
frozen features before the layer and equal batch sizes, the running mean is exactly the
dataset mean of those features (tests/test_norm_statistics.py).

Selected by ``norm_stats: epoch_average`` in a method config (configs/method/sb_patch*.yaml,
last_layer_bn_stats.yaml); :class:`EpochAverageNormStatistics` is the Lightning callback.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def batch_norms(model: nn.Module) -> list[_BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


_RESET = {"running_mean": 0.0, "running_var": 1.0, "num_batches_tracked": 0}


@torch.no_grad()
def restart_cumulative_statistics(model: nn.Module) -> int:
    """Reset every BatchNorm's statistics and make it average cumulatively from now on;
    returns the number of layers.

    Statistics kept outside the layers are reset too: every buffer named
    ``running_mean`` / ``running_var`` / ``num_batches_tracked`` (after the last ``.`` or
    ``/``), e.g. the private statistics of each task patch in multi-task training
    (:mod:`kmexp.lit.multitask`), which the layers update in place through
    ``functional_call`` with the same cumulative rule.
    """
    layers = batch_norms(model)
    for m in layers:
        m.momentum = None
        m.reset_running_stats()
    for name, buffer in model.named_buffers():
        value = _RESET.get(name.replace("/", ".").rsplit(".", 1)[-1])
        if value is not None:
            buffer.fill_(value)
    return len(layers)


class EpochAverageNormStatistics(pl.Callback):
    """At each training epoch start: statistics restart as a cumulative average (see above)."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        restart_cumulative_statistics(pl_module)
