"""Multi-task learning with private model patches (model patches Sec. 2 "Multitask learning",
Sec. 5.3 / Table 4) and multi-resolution domain adaptation (Sec. 5.4 / Table 5).

One network is shared by every task; each task owns a private *patch*: its own copy of the
parameters of the components listed in ``multitask.private``

- ``[implicit, classifier]``: the S/B patch + last layer (Table 4, first column),
- ``[classifier]``: only the last layer is private (Table 4, second column),
- ``[implicit]``: the S/B patch with a shared classifier (Table 5, multi-resolution),
- ``[]``: everything shared (Table 5, "All shared"),
- ``[depthwise, ...]`` (DW patch) or ``[explicit, ...]`` (kernel modulators; beyond the papers),

plus the normalization statistics whenever ``implicit`` is private (the S/B patch is gamma,
beta, mu and sigma, Sec. 2). The method (``configs/method``) says what trains at all: the
paper trains every weight (``method=full``); a private component must select trainable weights.

**How a patch is applied.** The network object holds the shared tensors; a task's patch is a
set of tensors under the network's own parameter names, swapped in for one forward pass with
``torch.func.functional_call(net, patch_t, x)``. So there is one network and no copies of
modules: a private patch receives gradients only from its own task's loss, the shared
weights the sum over all tasks, and batch norm updates the running statistics of the patch
it runs with. The network's own copies of private tensors are never used (they are frozen
and only initialize the patches). ``task_model(t)`` materializes a standalone network for
task ``t``; ``task_patches/<t>.safetensors`` (written after testing) is its patch in the
format of :mod:`kmexp.patches`, so ``apply_patch`` loads it into such a network. (The entry
point's own ``patch.safetensors`` would hold the shared trainable weights; the presets set
``export_patch: false``.)

**Steps and learning rates.** The paper trains asynchronously: every task has the same
number of workers sending gradients to a parameter server, and it keeps the tasks'
learning rates "comparable at any given point in time" by choosing the epochs per decay so
that all tasks decay at the same step (Sec. 5.3). Here every step takes one batch of each
task (each task's own dataset through :class:`kmexp.data.multitask.MultiTaskDataModule`, or
the run's dataset for all of them) and sums the task losses: the shared weights move by the
sum of the tasks' gradients, what the parameter server does with one update from each task's
worker (to first order), i.e. equally many workers per task. One step-based schedule
(``optim.scheduler``) then gives every task the same learning rate at every step by
construction; ``lr_scale`` and ``loss_weight`` per task change that on purpose.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn
from torch.func import functional_call
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from kmexp.components import classifier_module, tag_parameters, validate_components, weight_decay_overrides
from kmexp.data.multitask import TaskSpec, group_streams, parse_tasks
from kmexp.errors import ConfigError
from kmexp.lit.base import MethodModule, plain
from kmexp.models.mobilenet import resize_input
from kmexp.optim import param_groups
from kmexp.patches import norm_statistics


class TaskPatch(nn.Module):
    """The private tensors of one task, stored under the network's names ('.' -> '/')."""

    def __init__(self, parameters: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor]):
        super().__init__()
        for name, t in parameters.items():
            self.register_parameter(name.replace(".", "/"), nn.Parameter(t.detach().clone()))
        for name, t in buffers.items():
            self.register_buffer(name.replace(".", "/"), t.detach().clone())

    def tensors(self) -> dict[str, torch.Tensor]:
        """Network name -> tensor, for ``functional_call``."""
        out = {k.replace("/", "."): p for k, p in self.named_parameters(recurse=False)}
        out.update({k.replace("/", "."): b for k, b in self.named_buffers(recurse=False)})
        return out

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters(recurse=False))


def classifier_name(model: nn.Module) -> str:
    head = classifier_module(model)
    names = [n for n, m in model.named_modules() if m is head and n]
    if not names:
        raise ConfigError(f"{type(model).__name__} exposes no classifier (get_classifier() or .fc)")
    return names[0]


def fresh_classifier(model: nn.Module, num_classes: int) -> nn.Linear:
    """A new last layer for ``num_classes``, initialized like the backbone's own
    (``model.init_classifier``) when it says how, else as ``nn.Linear``."""
    head = classifier_module(model)
    if not isinstance(head, nn.Linear):
        raise ConfigError(f"a private classifier per task needs an nn.Linear head, got {type(head).__name__}")
    linear = nn.Linear(head.in_features, num_classes, bias=head.bias is not None)
    init = getattr(model, "init_classifier", None)
    if callable(init):
        init(linear)
    return linear


def replace_classifier(model: nn.Module, linear: nn.Linear) -> None:
    parent_name, _, child = classifier_name(model).rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, linear)


class MultiTaskModule(MethodModule):
    def __init__(self, model: dict, optim: dict, multitask: dict):
        """Args:
        model: as for :func:`kmexp.methods.build_model`; ``num_classes`` is the run's dataset's,
            for tasks that read it. The first task's classes give the network's own classifier.
        optim: optimizer and schedule (see :mod:`kmexp.optim`).
        multitask: ``private`` (components private to every task) and ``tasks`` (see
            :mod:`kmexp.data.multitask`).
        """
        super().__init__()
        self.save_hyperparameters()
        self.private = tuple(validate_components(multitask.get("private") or []))
        self.specs: list[TaskSpec] = parse_tasks(multitask.get("tasks"), model.get("num_classes"))
        self.task_names = [s.name for s in self.specs]
        self.spec = {s.name: s for s in self.specs}
        classes = {s.num_classes for s in self.specs}
        if "classifier" not in self.private and len(classes) > 1:
            raise ConfigError(
                f"tasks have different numbers of classes {sorted(classes)}: the classifier must be private "
                "(add classifier to multitask.private)"
            )
        self.build_net(model, num_classes=self.specs[0].num_classes)
        if getattr(self.net, "input_size", None) and any(s.input_size for s in self.specs):
            raise ConfigError(
                "the tasks resize their inputs (multitask.tasks.<name>.input_size) and so does the backbone "
                f"(backbone.input_size={self.net.input_size}), which would undo it: set backbone.input_size=null"
            )

        tags = tag_parameters(self.net)
        params = dict(self.net.named_parameters())
        not_trained = [c for c in self.private if not any(p.requires_grad and c in tags[n] for n, p in params.items())]
        if not_trained:
            raise ConfigError(
                f"multitask.private has {not_trained}, which method {self.method.name!r} does not train "
                f"(its components: {list(self.method.components)})"
            )
        self.private_names = [n for n, p in params.items() if p.requires_grad and tags[n] & set(self.private)]
        head = classifier_name(self.net) + "." if "classifier" in self.private else None
        private_buffers = norm_statistics(self.net) if "implicit" in self.private else {}
        patches = {}
        for spec in self.specs:
            tensors = {n: params[n] for n in self.private_names if not (head and n.startswith(head))}
            if head:
                linear = fresh_classifier(self.net, spec.num_classes)
                tensors.update({head + n: p for n, p in linear.named_parameters()})
            patches[spec.name] = TaskPatch(tensors, private_buffers)
        self.patches = nn.ModuleDict(patches)
        for n in self.private_names:  # the network's copies only initialized the patches
            params[n].requires_grad_(False)
        self.shared_names = [n for n, p in params.items() if n not in set(self.private_names)]

        def accuracies():
            return nn.ModuleDict({s.name: MulticlassAccuracy(num_classes=s.num_classes, average="micro")
                                  for s in self.specs})

        def means():
            return nn.ModuleDict({s.name: MeanMetric() for s in self.specs})

        self.train_acc = accuracies()
        self.val_acc, self.val_loss = accuracies(), means()
        self.test_acc, self.test_loss = accuracies(), means()
        self.tasks_of_stream = group_streams(self.specs)
        self.stream_of = {t: s for s, ts in self.tasks_of_stream.items() for t in ts}

    # ----------------------------------------------------------------------------- forward
    def task_forward(self, task: str, x: torch.Tensor) -> torch.Tensor:
        """Logits of ``task``: the shared network with the task's patch swapped in."""
        x = resize_input(x, self.spec[task].input_size)
        return functional_call(self.net, self.patches[task].tensors(), (x,), strict=False)

    def forward(self, x: torch.Tensor, task: str | None = None) -> torch.Tensor:
        return self.task_forward(task or self.task_names[0], x)

    @classmethod
    def from_config(cls, cfg: DictConfig) -> MultiTaskModule:
        """Needs ``multitask`` (``private``, ``tasks``; configs/multitask/), and ``dataset=multitask``
        when tasks name datasets."""
        if cfg.get("multitask") is None:
            raise ConfigError(
                "lightning_module=multitask needs a multitask config: add +multitask=sb_patch_last_layer "
                "(configs/multitask/) and tasks with +dataset@multitask.tasks.<name>.dataset=<dataset>, or use a preset"
            )
        return cls(model=plain(cfg.model), optim=plain(cfg.optim), multitask=plain(cfg.multitask))

    # ----------------------------------------------------------------------------- steps
    def on_fit_start(self) -> None:
        streams = getattr(self.trainer.datamodule, "stream_names", None)
        if self.specs[0].dataset is None:  # every task reads the run's dataset
            if streams is not None:
                raise ConfigError("the tasks name no dataset of their own: train on one dataset (e.g. dataset=imagenet), "
                                  "or give each task one (+dataset@multitask.tasks.<name>.dataset=...)")
        elif streams != list(self.tasks_of_stream):
            raise ConfigError(
                "the tasks of multitask.tasks name their datasets: use dataset=multitask "
                "(configs/dataset/multitask.yaml), whose datamodule combines them"
            )
        super().on_fit_start()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        total = 0.0
        for task in self.task_names:
            x, y = batch[self.stream_of[task]] if isinstance(batch, dict) else batch  # one stream: a plain batch
            logits = self.task_forward(task, x)
            loss = F.cross_entropy(logits, y)
            self.check_finite(loss, f"training loss of task {task!r}")
            self.train_acc[task](logits, y)
            self.log(f"train/{task}/loss", loss, on_step=False, on_epoch=True)
            self.log(f"train/{task}/acc", self.train_acc[task], on_step=False, on_epoch=True)
            total = total + self.spec[task].loss_weight * loss
        self.log("train/loss", total, on_step=True, on_epoch=True, prog_bar=True)
        return total

    def _eval_step(self, batch, dataloader_idx: int, acc: nn.ModuleDict, losses: nn.ModuleDict) -> None:
        x, y = batch
        stream = list(self.tasks_of_stream)[dataloader_idx]
        for task in self.tasks_of_stream[stream]:
            logits = self.task_forward(task, x)
            acc[task].update(logits, y)
            losses[task].update(F.cross_entropy(logits, y), weight=len(y))

    def _eval_epoch_end(self, stage: str, acc: nn.ModuleDict, losses: nn.ModuleDict) -> None:
        # Logged here, outside any dataloader, so every task's numbers reach every result dict.
        accs = []
        for task in self.task_names:
            if acc[task].update_count == 0:
                continue
            a = acc[task].compute()
            accs.append(a)
            self.log(f"{stage}/{task}/acc", a)
            self.log(f"{stage}/{task}/loss", losses[task].compute())
            acc[task].reset()
            losses[task].reset()
        if accs:
            self.log(f"{stage}/acc", torch.stack(accs).mean(), prog_bar=True)  # mean over tasks

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx, self.val_acc, self.val_loss)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val", self.val_acc, self.val_loss)

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx, self.test_acc, self.test_loss)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test", self.test_acc, self.test_loss)

    def on_test_end(self) -> None:
        if self.trainer.is_global_zero:
            self.export_task_patches(Path(self.trainer.default_root_dir) / "task_patches")

    # ----------------------------------------------------------------------------- optimizer
    def optimizer_groups(self) -> list[dict]:
        cfg = self.hparams.optim
        decay = weight_decay_overrides(self.net)
        tags = tag_parameters(self.net)
        groups = param_groups(self.net.named_parameters(), decay, cfg, tags, lr=cfg["lr"])
        for task in self.task_names:  # one group per task: its own lr_scale
            named = [(k.replace("/", "."), p) for k, p in self.patches[task].named_parameters(recurse=False)]
            groups += param_groups(named, decay, cfg, tags, name_prefix=f"{task}/", lr=cfg["lr"] * self.spec[task].lr_scale)
        return groups

    # ----------------------------------------------------------------------------- patches
    def task_model(self, task: str) -> nn.Module:
        """A standalone network for ``task``: the shared weights with the task's patch loaded;
        exactly the private components are trainable (so it is a single-task model of the patch)."""
        model = copy.deepcopy(self.net)
        tensors = self.patches[task].tensors()
        if "classifier" in self.private:
            replace_classifier(model, fresh_classifier(model, self.spec[task].num_classes))
        own = {**dict(model.named_parameters()), **dict(model.named_buffers())}
        with torch.no_grad():
            for name, t in tensors.items():
                own[name].copy_(t)
        tags = tag_parameters(model)
        for name, p in model.named_parameters():
            p.requires_grad_(bool(tags[name] & set(self.private)))
        return model.to(next(self.net.parameters()).device)

    def export_task_patches(self, out_dir: str | Path) -> dict[str, Path]:
        """``<out_dir>/<task>.safetensors`` for every task (format of :mod:`kmexp.patches`)."""
        from kmexp.patches import export_patch

        paths = {}
        for task in self.task_names:
            paths[task] = export_patch(
                self.task_model(task), Path(out_dir) / f"{task}.safetensors", self.method.name,
                list(self.private), include_norm_stats="implicit" in self.private, task=task,
                dataset=(self.spec[task].dataset or {}).get("name"),
            )
        return paths

    # ----------------------------------------------------------------------------- summary
    def parameter_counts(self) -> dict[str, float]:
        """What storing all tasks costs: the shared weights once plus every private patch."""
        params = dict(self.net.named_parameters())
        shared = sum(params[n].numel() for n in self.shared_names)
        shared_trainable = sum(params[n].numel() for n in self.shared_names if params[n].requires_grad)
        private = {t: self.patches[t].num_parameters() for t in self.task_names}
        total = shared + sum(private.values())
        trainable = shared_trainable + sum(private.values())
        return {
            "params/total": total,
            "params/trainable": trainable,
            "params/trainable_pct": 100.0 * trainable / max(total, 1),
            "params/shared": shared,
            **{f"params/private/{t}": n for t, n in private.items()},
        }

    def extra_summary(self) -> dict:
        return {
            **self.parameter_counts(),
            "tasks": {t: {"dataset": (self.spec[t].dataset or {}).get("name"), "num_classes": self.spec[t].num_classes,
                          "input_size": self.spec[t].input_size} for t in self.task_names},
            "private_components": list(self.private),
        }
