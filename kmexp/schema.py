"""Typed schema of the composed configuration: every value's type and range, checked at
composition, before a run directory, a trainer or a queue job exists.

Each rule names what is allowed; a violation is one line naming the key, the value and
that description (:class:`kmexp.errors.ConfigError`)::

    error: optim.lr=-1 is not allowed: a number > 0

Keys absent from a configuration are not required here (many are group-specific, e.g.
``optim.betas``); sections with their own typed constructors are checked there too
(``method`` by :class:`kmexp.methods.Method`, ``modulator`` by
:class:`kmexp.modulation.ModulatorConfig`, ``meta`` by :class:`kmexp.lit.fewshot.MetaConfig`).
Combinations of groups are checked by :mod:`kmexp.validate`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import DictConfig, ListConfig, OmegaConf

from kmexp.errors import ConfigError
from kmexp.optim import OPTIMIZERS


@dataclass(frozen=True)
class Rule:
    """A predicate on one value and the words that describe what it accepts."""

    accepts: Callable[[object], bool]
    allowed: str


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def integer(low: int | None = None, high: int | None = None, null: bool = False, also: tuple = ()) -> Rule:
    words = "an integer" + (f" >= {low}" if low is not None else "") + (f" <= {high}" if high is not None else "")
    words += "".join(f" or {a!r}" for a in also) + (" or null" if null else "")
    return Rule(lambda v: (null and v is None) or (not isinstance(v, bool) and v in also) or (
        _is_int(v) and (low is None or v >= low) and (high is None or v <= high)), words)


def number(low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False,
           null: bool = False) -> Rule:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high}")
    words = "a number" + (" " + " and ".join(parts) if parts else "") + (" or null" if null else "")

    def ok(v) -> bool:
        if null and v is None:
            return True
        if not _is_number(v) or v != v:  # NaN
            return False
        if low is not None and (v <= low if low_open else v < low):
            return False
        return high is None or (v < high if high_open else v <= high)

    return Rule(ok, words)


def boolean(null: bool = False, also: tuple = ()) -> Rule:
    words = "true or false" + "".join(f" or {a!r}" for a in also) + (" or null" if null else "")
    return Rule(lambda v: isinstance(v, bool) or (null and v is None) or (v in also and not isinstance(v, bool)), words)


def one_of(*choices, null: bool = False) -> Rule:
    return Rule(lambda v: (null and v is None) or (not isinstance(v, bool) and v in choices),
                "one of " + ", ".join(map(str, choices)) + (" or null" if null else ""))


def text(null: bool = False) -> Rule:
    return Rule(lambda v: isinstance(v, str) and v != "" or (null and v is None), "a string" + (" or null" if null else ""))


def int_list(low: int = 0) -> Rule:
    return Rule(lambda v: isinstance(v, (list, tuple)) and all(_is_int(x) and x >= low for x in v),
                f"a list of integers >= {low}")


def fraction_or_count() -> Rule:
    """Lightning's ``limit_*_batches``: a fraction of the batches (float in [0, 1]) or a count (int >= 0)."""
    return Rule(lambda v: (_is_int(v) and v >= 0) or (isinstance(v, float) and 0.0 <= v <= 1.0),
                "a fraction in [0.0, 1.0] or a number of batches >= 0")


def devices() -> Rule:
    return Rule(lambda v: (_is_int(v) and (v >= 1 or v == -1)) or v == "auto"
                or (isinstance(v, (list, tuple)) and v and all(_is_int(x) and x >= 0 for x in v)),
                "an integer >= 1, -1 (all), 'auto' or a list of device ids")


def betas() -> Rule:
    return Rule(lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_number(b) and 0 <= b < 1 for b in v),
                "two numbers in [0, 1)")


def strategy() -> Rule:
    def ok(v) -> bool:
        if isinstance(v, dict):
            return "_target_" in v
        if not isinstance(v, str):
            return False
        from pytorch_lightning.strategies import StrategyRegistry

        return v == "auto" or v in StrategyRegistry.available_strategies()

    return Rule(ok, "'auto', a Lightning strategy name (ddp, ddp_spawn, fsdp ...) or a {_target_: ...} strategy config")


PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true", "64", "16", "bf16",
              "transformer-engine", "transformer-engine-float16")

# Every key a kmexp run reads, with its type and range. Ranges follow what the consumer
# accepts (Lightning's Trainer arguments, torch.optim, the data modules), not taste.
SCHEMA: dict[str, Rule] = {
    # top level (configs/train.yaml)
    "seed": integer(0, 2**32 - 1),
    "resume": Rule(lambda v: isinstance(v, bool) or v == "auto", "auto, true or false"),  # kmexp/runs/resume.py
    "checkpointing.interval_s": number(0),
    "test_ckpt": one_of("last", "best"),
    "export_patch": boolean(),
    "save_init_checkpoint": boolean(),
    "memory_format": one_of("auto", "channels_last", "contiguous"),  # kmexp/lit/speed.py
    "compile": Rule(lambda v: isinstance(v, (bool, str)) and v != "", "true, false or a torch.compile backend name"),
    "reference_accuracy": number(0, 1, low_open=True, null=True),
    "experiment_name": text(null=True),
    "callbacks.progress_bar": one_of("rich", "tqdm", "none"),
    "callbacks.checkpoint.monitor": text(null=True),
    "callbacks.checkpoint.mode": one_of("min", "max"),
    # trainer (configs/trainer/, pytorch_lightning.Trainer)
    "trainer.accelerator": one_of("auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu"),
    "trainer.devices": devices(),
    "trainer.num_nodes": integer(1),
    "trainer.strategy": strategy(),
    "trainer.max_epochs": integer(-1, null=True),
    "trainer.min_epochs": integer(0, null=True),
    "trainer.max_steps": integer(-1),
    "trainer.limit_train_batches": fraction_or_count(),
    "trainer.limit_val_batches": fraction_or_count(),
    "trainer.limit_test_batches": fraction_or_count(),
    "trainer.precision": one_of(*PRECISIONS, 16, 32, 64),
    "trainer.gradient_clip_val": number(0, null=True),
    "trainer.accumulate_grad_batches": integer(1),
    "trainer.log_every_n_steps": integer(1),
    "trainer.check_val_every_n_epoch": integer(1, null=True),
    "trainer.val_check_interval": number(0, low_open=True, null=True),
    "trainer.num_sanity_val_steps": integer(-1),
    "trainer.deterministic": boolean(null=True, also=("warn",)),
    "trainer.benchmark": boolean(null=True),
    "trainer.fast_dev_run": Rule(lambda v: isinstance(v, bool) or (_is_int(v) and v >= 0),
                                 "true, false or a number of batches >= 0"),
    "trainer.sync_batchnorm": boolean(),
    # optimizer (configs/optim/, kmexp.optim)
    "optim.name": one_of(*OPTIMIZERS),
    "optim.lr": number(0, low_open=True),
    "optim.weight_decay": number(0),
    "optim.modulator_weight_decay": number(0),
    "optim.no_weight_decay_1d": boolean(),
    "optim.momentum": number(0, 1, high_open=True),
    "optim.nesterov": boolean(),
    "optim.betas": betas(),
    "optim.eps": number(0, low_open=True),
    "optim.alpha": number(0, 1, low_open=True),
    "optim.scheduler.name": one_of("none", "multistep", "cosine", "exponential"),
    "optim.scheduler.milestones": int_list(0),
    "optim.scheduler.gamma": number(0, low_open=True),
    "optim.scheduler.t_max": integer(1, null=True),
    "optim.scheduler.eta_min": number(0),
    "optim.scheduler.every_epochs": number(0, low_open=True),
    "optim.scheduler.staircase": boolean(),
    # dataset (configs/dataset/, kmexp.data)
    "dataset.name": text(),
    "dataset.num_classes": integer(1, null=True),
    "dataset.datamodule.batch_size": integer(1, null=True),
    "dataset.datamodule.eval_batch_size": integer(1, null=True),
    "dataset.datamodule.num_workers": integer(0, null=True),
    "dataset.datamodule.val_size": integer(0),
    "dataset.datamodule.test_size": integer(1),
    "dataset.datamodule.split_seed": integer(0),
    "dataset.datamodule.download": boolean(),
    "dataset.datamodule.pin_memory": boolean(),
    "dataset.datamodule.label_smoothing": number(0, 1, high_open=True),
    # few-shot episodes (configs/meta/, kmexp.lit.fewshot.MetaConfig)
    "meta.ways": integer(1),
    "meta.shots": integer(1),
    "meta.query": integer(1),
    "meta.meta_batch_size": integer(1),
    "meta.inner_lr": number(0),
    "meta.inner_steps": integer(0),
    "meta.test_inner_lr": number(0),
    "meta.test_inner_steps": integer(0),
    "meta.first_order": boolean(),
    "meta.batched_tasks": boolean(also=("auto",)),
    "meta.iterations_per_epoch": integer(1),
    "meta.num_val_tasks": integer(0),
    "meta.num_test_tasks": integer(1),
    "meta.task_seed": integer(0),
    # model identity
    "backbone.name": text(),
    "method.name": text(),
}

_ABSENT = object()


def check_schema(cfg: DictConfig, schema: dict[str, Rule] = SCHEMA) -> None:
    """Raise ConfigError on the first value that breaks its rule (keys absent from ``cfg`` pass)."""
    for key, rule in schema.items():
        value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
        if value is _ABSENT:
            continue
        if isinstance(value, (DictConfig, ListConfig)):
            value = OmegaConf.to_container(value, resolve=True)
        if not rule.accepts(value):
            shown = value if isinstance(value, str) and value else repr(value)
            raise ConfigError(f"{key}={shown} is not allowed: {rule.allowed}")
