"""Supervised classification with any method (Kernel Modulation Sec. IV-A and IV-B).

The shared parts (method, network, norm freezing, NaN guard, optimizer, summary) are in
:class:`kmexp.lit.base.MethodModule`; this module holds the step logic and the FLOP count.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torchmetrics.classification import MulticlassAccuracy

from kmexp.lit.base import MethodModule, plain


class ClassificationModule(MethodModule):
    reuses_parametrized_weights = True  # W_mod once per optimizer step / evaluation (kmexp.modulated_weights)

    def __init__(self, model: dict, optim: dict, reference_accuracy: float | None = None):
        """Args:
        model: ``backbone``, ``num_classes``, ``method``, ``modulator``, ``sharing`` (see
            :func:`kmexp.methods.build_model`).
        optim: optimizer and schedule (see :mod:`kmexp.optim`).
        reference_accuracy: accuracy of the fully trained network, in [0, 1], for the
            recovered accuracy ratio (Table I); ``None`` to skip it.
        """
        super().__init__()
        self.save_hyperparameters()
        self.build_net(model)
        n = model["num_classes"]
        self.train_acc = MulticlassAccuracy(num_classes=n, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=n, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=n, average="micro")

    @classmethod
    def from_config(cls, cfg: DictConfig) -> ClassificationModule:
        return cls(model=plain(cfg.model), optim=plain(cfg.optim), reference_accuracy=cfg.reference_accuracy)

    def _step(self, batch, stage: str, metric) -> torch.Tensor:
        x, y = batch
        self.input_shape = tuple(x.shape[1:])  # for the FLOP count in extra_summary
        logits = self(x)
        loss = F.cross_entropy(logits, y)  # y may be soft targets (mixup/cutmix, kmexp.data.cifar_randaugment)
        if stage == "train":
            self.check_finite(loss)
        metric.update(logits, y.argmax(1) if y.is_floating_point() else y)  # logged per epoch: no per-batch value
        on_step = stage == "train"
        # evaluation losses are averaged over every DDP rank (accuracies sync through torchmetrics)
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=stage != "test",
                 sync_dist=stage != "train")
        self.log(f"{stage}/acc", metric, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train", self.train_acc)

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val", self.val_acc)

    def test_step(self, batch, batch_idx):
        self._step(batch, "test", self.test_acc)

    def extra_summary(self) -> dict:
        """``params/flops`` and ``params/gflops`` of one image of the size seen in training
        (counted as in :mod:`kmexp.flops`; kernel-sharing paper, Table 1 and Figs. 3-5)."""
        shape = getattr(self, "input_shape", None)
        if shape is None or len(shape) != 3:
            return {}
        from kmexp.flops import count_flops

        try:
            flops = count_flops(self.net, shape)
        except Exception as e:  # noqa: BLE001 - a finished run must still write its summary
            logging.getLogger(__name__).warning("FLOPs not counted: %s: %s", type(e).__name__, e)
            return {}
        return {"params/flops": flops, "params/gflops": flops / 1e9}
