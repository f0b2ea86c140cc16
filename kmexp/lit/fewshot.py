"""Episodic meta-learning: MAML, ANIL and KM few-shot (Kernel Modulation Sec. IV-C, Table III).

Each training batch holds ``meta_batch_size`` tasks. For every task the inner loop
(:class:`kmexp.inner_loop.InnerLoop`) adapts the method's inner-loop components on the
support set with ``inner_steps`` SGD steps of size ``inner_lr``; the loss of the adapted
network on the query set, averaged over the tasks, is the outer-loop loss that Lightning
back-propagates (through the inner loop, second order unless ``first_order``) and hands
to the optimizer (Adam, 1e-3 in MAML). What adapts is named with the component
vocabulary: MAML adapts every parameter, ANIL the classifier (Raghu et al. 2020), KM
the kernel modulators and the classifier; the outer loop meta-learns everything
(``meta.outer_components``), including the convolution weights under KM.

Meta-validation and meta-test adapt a detached copy of the meta-learned parameters on
each task with ``test_inner_steps`` steps of ``test_inner_lr`` and report the query
accuracy's mean and 95% confidence interval over the tasks, 1.96 * std / sqrt(n) with
the population std as in MAML's evaluation code (``val/acc``, ``test/acc``,
``test/acc_ci95``).

Batch normalization uses the statistics of the batch it sees (the backbones keep no
running statistics), as MAML's reference code does: the support set and the query set
are each normalized with their own statistics, at meta-training and meta-test alike
(transductive evaluation).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import MISSING, dataclass, fields

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torchmetrics import CatMetric

from kmexp import batched_tasks, components
from kmexp.components import validate_components
from kmexp.errors import ConfigError
from kmexp.inner_loop import InnerLoop, inner_loop_names
from kmexp.lit.base import MethodModule, plain
from kmexp.methods import Method

# keys of the `meta` config section that only the datamodule reads
DATA_KEYS = ("iterations_per_epoch", "num_val_tasks", "num_test_tasks", "task_seed", "test_query")


@dataclass(frozen=True)
class MetaConfig:
    """The ``meta`` config section (configs/meta/default.yaml).

    Attributes:
        ways, shots, query: N-way K-shot tasks, Q query examples per class.
        meta_batch_size: tasks per outer-loop step.
        inner_lr, inner_steps: inner loop while meta-training (MAML's alpha and steps).
        test_inner_lr, test_inner_steps: inner loop at meta-validation / meta-test.
        first_order: drop the second-order terms of the meta-gradient (first-order MAML).
        outer_components: what the outer loop meta-learns (everything by default).
        inner_components: what the inner loop adapts; ``None`` = the method's
            ``inner_components`` (kmexp/methods/{maml,anil,km}.py).
        batched_tasks: adapt all tasks of a meta-batch in one batched computation
            (:mod:`kmexp.batched_tasks`, same meta-gradient); ``auto`` = on a CUDA device.
    """

    ways: int
    shots: int
    query: int
    meta_batch_size: int
    inner_lr: float
    inner_steps: int
    test_inner_lr: float
    test_inner_steps: int
    first_order: bool = False
    outer_components: tuple[str, ...] = ("convolution", "implicit", "explicit", "classifier")
    inner_components: tuple[str, ...] | None = None
    batched_tasks: str | bool = "auto"

    @classmethod
    def from_dict(cls, cfg: dict) -> MetaConfig:
        cfg = {k: v for k, v in dict(cfg).items() if k not in DATA_KEYS}
        known = {f.name for f in fields(cls)}
        unknown = set(cfg) - known
        if unknown:
            raise ConfigError(f"unknown meta option(s) {sorted(unknown)}; known: {sorted(known | set(DATA_KEYS))}")
        missing = [f.name for f in fields(cls) if f.name not in cfg and f.default is MISSING]
        if missing:
            raise ConfigError(f"meta config needs {missing}")
        for key in ("ways", "shots", "query", "meta_batch_size"):
            if not isinstance(cfg[key], int) or cfg[key] < 1:
                raise ConfigError(f"meta.{key}={cfg[key]!r} must be a positive integer")
        for key in ("inner_steps", "test_inner_steps"):
            if not isinstance(cfg[key], int) or cfg[key] < 0:
                raise ConfigError(f"meta.{key}={cfg[key]!r} must be an integer >= 0")
        for key in ("inner_lr", "test_inner_lr"):
            if not float(cfg[key]) >= 0:
                raise ConfigError(f"meta.{key}={cfg[key]!r} must be >= 0")
        if cfg.get("batched_tasks", "auto") not in batched_tasks.MODES:
            raise ConfigError(f"meta.batched_tasks={cfg['batched_tasks']!r} must be auto, true or false")
        if "outer_components" in cfg:
            cfg["outer_components"] = tuple(validate_components(cfg["outer_components"]))
        if cfg.get("inner_components") is not None:
            cfg["inner_components"] = tuple(validate_components(cfg["inner_components"]))
        return cls(**cfg)


def method_inner_components(method: Method, meta: MetaConfig) -> tuple[str, ...]:
    """``meta.inner_components`` if set, else the method's ``inner_components``."""
    if meta.inner_components is not None:
        return meta.inner_components
    if not method.inner_components:
        raise ConfigError(
            f"method {method.name!r} does not say what its inner loop adapts: use method=maml, anil or km, "
            f"or set meta.inner_components=[...] (components: {list(components.COMPONENTS)})"
        )
    return method.inner_components


@contextmanager
def autograd_enabled():
    """Lightning evaluates under ``no_grad`` (or ``inference_mode``), but adapting to a
    meta-test task needs gradients."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def ci95(values: torch.Tensor) -> float:
    """Half-width of the 95% confidence interval of the mean: 1.96 * std / sqrt(n) (population std)."""
    return float(1.96 * values.std(unbiased=False) / values.numel() ** 0.5) if values.numel() else float("nan")


class FewShotModule(MethodModule):
    """Episodic meta-training and evaluation (KM Sec. IV-C).

    Args:
        model: ``backbone``, ``num_classes`` (= ways), ``method``, ``modulator``, ``sharing``
            (see :func:`kmexp.methods.build_model`); the method's ``components`` are replaced
            by ``meta.outer_components``.
        optim: outer-loop optimizer (see :mod:`kmexp.optim`).
        meta: the ``meta`` section (:class:`MetaConfig`).
    """

    episodic = True  # FewShotDataModule refuses other modules

    def __init__(self, model: dict, optim: dict, meta: dict):
        super().__init__()
        self.save_hyperparameters()
        self.meta = MetaConfig.from_dict(meta)
        if model["num_classes"] != self.meta.ways:
            raise ConfigError(f"the classifier has {model['num_classes']} outputs but tasks are {self.meta.ways}-way")
        self.build_net(model, components=self.meta.outer_components)
        self.inner_components = method_inner_components(self.method, self.meta)
        self.inner = InnerLoop(self.net, inner_loop_names(self.net, self.inner_components))
        if self.meta.batched_tasks is True and (reason := batched_tasks.unsupported_reason(self.net)):
            raise ConfigError(f"meta.batched_tasks=true: {reason}; use meta.batched_tasks=auto or false")
        self.val_task_acc = CatMetric()
        self.test_task_acc = CatMetric()
        self.test_task_loss = CatMetric()

    @classmethod
    def from_config(cls, cfg: DictConfig) -> FewShotModule:
        return cls(model=plain(cfg.model), optim=plain(cfg.optim), meta=plain(cfg.meta))

    def _tasks(self, batch: dict, lr: float, steps: int, first_order: bool, detach: bool):
        """Adapt to each task of the batch; per-task query losses and accuracies."""
        params = self.inner.parameters(detach=detach)
        if batched_tasks.use_batched_tasks(self.meta.batched_tasks, self.device, self.net):
            logits = batched_tasks.batched_query_logits(self.inner, params, batch["support_x"], batch["support_y"],
                                                        batch["query_x"], lr, steps, first_order)
            qy = batch["query_y"]
            losses = F.cross_entropy(logits.flatten(0, 1), qy.flatten(), reduction="none").view(qy.shape).mean(1)
            return losses, (logits.argmax(dim=-1) == qy).float().mean(1).detach()
        losses, accs = [], []
        for sx, sy, qx, qy in zip(batch["support_x"], batch["support_y"], batch["query_x"], batch["query_y"],
                                  strict=True):
            adapted = self.inner.adapt(params, sx, sy, lr, steps, first_order)
            logits = self.inner.forward(adapted, qx)
            losses.append(F.cross_entropy(logits, qy))
            accs.append((logits.argmax(dim=1) == qy).float().mean())
        return torch.stack(losses), torch.stack(accs).detach()

    def training_step(self, batch, batch_idx):
        m = self.meta
        losses, accs = self._tasks(batch, m.inner_lr, m.inner_steps, m.first_order, detach=False)
        loss = losses.mean()
        self.check_finite(loss, "meta-training loss", hint="lower optim.lr or meta.inner_lr")
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(losses))
        self.log("train/acc", accs.mean(), on_step=False, on_epoch=True, prog_bar=True, batch_size=len(losses))
        return loss

    def _evaluate(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        with autograd_enabled():
            batch = {k: v.clone() for k, v in batch.items()}  # inference tensors cannot enter autograd
            losses, accs = self._tasks(batch, self.meta.test_inner_lr, self.meta.test_inner_steps,
                                       first_order=True, detach=True)
        return losses.detach(), accs

    def validation_step(self, batch, batch_idx):
        losses, accs = self._evaluate(batch)
        self.val_task_acc.update(accs)
        self.log("val/loss", losses.mean(), on_step=False, on_epoch=True, batch_size=len(losses), sync_dist=True)

    def test_step(self, batch, batch_idx):
        losses, accs = self._evaluate(batch)
        self.test_task_acc.update(accs)
        self.test_task_loss.update(losses)

    def on_validation_epoch_end(self) -> None:
        accs = self.val_task_acc.compute() if self.val_task_acc.update_count else torch.empty(0)
        self.val_task_acc.reset()
        if accs.numel():
            self.log("val/acc", accs.mean(), prog_bar=True)
            self.log("val/acc_ci95", ci95(accs))

    def on_test_epoch_end(self) -> None:
        accs = self.test_task_acc.compute() if self.test_task_acc.update_count else torch.empty(0)
        losses = self.test_task_loss.compute() if self.test_task_loss.update_count else torch.empty(0)
        self.test_task_acc.reset()
        self.test_task_loss.reset()
        self.log("test/acc", accs.mean() if accs.numel() else float("nan"))
        self.log("test/acc_ci95", ci95(accs))
        self.log("test/loss", losses.mean() if losses.numel() else float("nan"))
        self.log("test/num_tasks", float(accs.numel()))

    def extra_summary(self) -> dict:
        """Inner- and outer-loop parameter counts (KM Sec. IV-C: KM adapts far fewer than MAML)."""
        outer = sum(p.numel() for p in self.net.parameters() if p.requires_grad)
        return {
            "components": list(self.meta.outer_components),
            "inner_components": list(self.inner_components),
            "params/inner_loop": self.inner.num_parameters,
            "params/outer_loop": outer,
            "params/inner_loop_pct": 100.0 * self.inner.num_parameters / max(outer, 1),
            "meta/ways": self.meta.ways,
            "meta/shots": self.meta.shots,
            "meta/first_order": self.meta.first_order,
        }
