"""Supervised classification with any method (Kernel Modulation Sec. IV-A and IV-B).

The module is built from plain config dicts only, so ``load_from_checkpoint`` can
rebuild it from the saved hyperparameters. The optimizer sees only trainable
parameters; kernel modulators get no weight decay (decay pulls U towards 0, away
from the identity of Eq. 4).
"""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from kmexp.components import count_parameters, freeze_norm_statistics, tag_parameters
from kmexp.errors import NonFiniteLossError
from kmexp.methods import Method, build_model
from kmexp.optim import build_optimizer, optimizers_for_lightning, param_groups


class ClassificationModule(pl.LightningModule):
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
        self.method = Method.from_dict(model["method"])
        self.net = build_model(model)
        n = model["num_classes"]
        self.train_acc = MulticlassAccuracy(num_classes=n, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=n, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=n, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.method.norm_stats == "frozen":
            freeze_norm_statistics(self.net)
        return self

    def _step(self, batch, stage: str, metric) -> torch.Tensor:
        x, y = batch
        self.input_shape = tuple(x.shape[1:])  # for the FLOP count in extra_summary
        logits = self(x)
        loss = F.cross_entropy(logits, y)  # y may be soft targets (mixup/cutmix, kmexp.data.cifar_randaugment)
        if stage == "train" and not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite training loss ({loss.item()}) at step {self.global_step}; "
                "the last checkpoint is intact: lower the learning rate and resume with resume=true"
            )
        metric(logits, y.argmax(1) if y.is_floating_point() else y)
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

    def on_fit_start(self) -> None:
        counts = {**count_parameters(self.net), **self.extra_summary()}  # RBD: params/trainable = d
        for logger in self.loggers:
            logger.log_hyperparams({k: float(v) for k, v in counts.items() if isinstance(v, (int, float))})

    def configure_optimizers(self):
        cfg = self.hparams.optim
        if "rbd" in self.method.extra:  # LD: SGD inside random subspaces (kmexp/rbd.py)
            from kmexp.rbd import build_rbd_optimizer

            trainable = [p for p in self.net.parameters() if p.requires_grad]
            optimizer = build_rbd_optimizer(trainable, cfg, self.method.extra["rbd"])
        else:
            optimizer = build_optimizer(param_groups(self.net.named_parameters(), tag_parameters(self.net), cfg), cfg)
        return optimizers_for_lightning(optimizer, cfg, self._trainer)

    def extra_summary(self) -> dict:
        """FLOPs (every method) and, for RBD, ``params/trainable`` = the subspace dimension d
        (KM Table I, LD row)."""
        if "rbd" not in self.method.extra:
            return self.flops_summary()
        from kmexp.rbd import rbd_parameter_counts

        return {**self.flops_summary(), **rbd_parameter_counts(self.net, self.method.extra["rbd"]["dim"])}

    def flops_summary(self) -> dict:
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
