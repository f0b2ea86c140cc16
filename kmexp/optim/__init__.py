"""Optimizers and learning-rate schedules from plain config (configs/optim/*.yaml).

Keys: ``name`` (sgd | adam | adamw | rmsprop | rbd), ``lr``, ``weight_decay``, ``momentum``,
``nesterov``, ``betas``, ``eps`` (Adam/AdamW); ``scheduler``: ``{name: none | multistep | cosine, ...}``
stepped once per epoch. ``milestones`` are epochs, or optimizer steps with ``interval: step``; ``warmup``
(``until``, ``factor``) scales the lr down at the start. ``rmsprop`` (``alpha``, ``eps``, ``momentum``) and the
``exponential`` schedule (``gamma`` per ``every_epochs``, stepped per step) are model patches' (Sec. 5).
``rbd`` is Random Bases Descent (KM Table I, LD row; :mod:`kmexp.optim.rbd`): SGD inside a
random subspace of ``dim`` dimensions, with ``seed`` and ``chunk_size`` (configs/optim/rbd.yaml).

Weight decay is ``weight_decay`` except where an injected module declares its own
(:class:`kmexp.components.InjectedModule`: kernel modulators get none).
"""

from __future__ import annotations

import bisect

import torch

from kmexp.components import COMPONENTS
from kmexp.errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "rbd")
# Keys of an optim config that describe the schedule or the parameter groups, not the optimizer.
NOT_OPTIMIZER_ARGUMENTS = ("_target_", "name", "scheduler", "modulator_weight_decay", "no_weight_decay_1d")


def build_optimizer(param_groups: list[dict], cfg: dict) -> torch.optim.Optimizer:
    """The optimizer named by ``cfg``: ``_target_`` (any optimizer class, e.g. timm's
    ``timm.optim.RMSpropTF``, called with every other key but the schedule's) or ``name``."""
    if cfg.get("_target_"):
        return instantiate_optimizer(param_groups, cfg)
    name = cfg.get("name", "sgd")
    lr = cfg["lr"]
    if name == "rbd":
        from kmexp.optim.rbd import build_rbd_optimizer

        return build_rbd_optimizer([p for g in param_groups for p in g["params"]], cfg)
    wd = cfg.get("weight_decay", 0.0)
    if name == "sgd":
        return torch.optim.SGD(param_groups, lr=lr, momentum=cfg.get("momentum", 0.9),
                               weight_decay=wd, nesterov=cfg.get("nesterov", False))
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(param_groups, lr=lr, weight_decay=wd, betas=tuple(cfg.get("betas", (0.9, 0.999))),
                   eps=cfg.get("eps", 1e-8))
    if name == "rmsprop":  # model patches Sec. 5 (TF-slim's RMSProp: decay 0.9, momentum 0.9, epsilon 1.0)
        return torch.optim.RMSprop(param_groups, lr=lr, alpha=cfg.get("alpha", 0.9), eps=cfg.get("eps", 1.0),
                                   momentum=cfg.get("momentum", 0.9), weight_decay=wd)
    raise ConfigError(f"optim.name={name!r} is not one of {list(OPTIMIZERS)}")


def optimizer_summary(model, cfg: dict) -> dict:
    """Summary figures the optimizer changes: under RBD ``params/trainable`` is the subspace
    dimension d (KM Table I, LD row), see :func:`kmexp.optim.rbd.rbd_parameter_counts`."""
    if cfg.get("name") != "rbd":
        return {}
    from kmexp.optim.rbd import rbd_parameter_counts

    return rbd_parameter_counts(model, cfg["dim"])


def instantiate_optimizer(param_groups: list[dict], cfg: dict) -> torch.optim.Optimizer:
    from hydra.utils import get_class

    try:
        cls = get_class(cfg["_target_"])
    except Exception as e:  # noqa: BLE001 - Hydra wraps import errors of every kind
        raise ConfigError(f"optim._target_={cfg['_target_']!r} is not an importable optimizer class: {e}") from e
    kwargs = {k: v for k, v in cfg.items() if k not in NOT_OPTIMIZER_ARGUMENTS}
    try:
        return cls(param_groups, **kwargs)
    except TypeError as e:  # an argument the class does not take
        raise ConfigError(f"optim: {cls.__name__} {e}") from e


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: dict, trainer=None):
    sched = dict(cfg.get("scheduler") or {"name": "none"})
    name = sched.pop("name", "none")
    if name == "none":
        return None
    if name == "multistep" and (sched.get("interval", "epoch") == "step" or sched.get("warmup")):
        return _multistep_with_warmup(optimizer, sched)
    if name == "multistep":
        s = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(sched["milestones"]),
                                                 gamma=sched.get("gamma", 0.1))
    elif name == "cosine":
        t_max = sched.get("t_max")
        if t_max is None and trainer is not None:
            t_max = trainer.max_epochs
        if t_max is None or t_max < 0:
            raise ConfigError("optim.scheduler cosine needs t_max or a finite trainer.max_epochs")
        # max_epochs=0 (evaluate a checkpoint): the schedule is never stepped; T_max must be > 0
        t_max = max(int(t_max), 1)
        s = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max, eta_min=sched.get("eta_min", 0.0))
    elif name == "exponential":
        return _exponential_decay(optimizer, sched, trainer)
    else:
        raise ConfigError(f"optim.scheduler.name={name!r} is not one of ['none', 'multistep', 'cosine', 'exponential']")
    return {"scheduler": s, "interval": "epoch"}


def _multistep_with_warmup(optimizer: torch.optim.Optimizer, sched: dict) -> dict:
    """lr * gamma ** (milestones passed), times ``warmup.factor`` before ``warmup.until``.

    ``interval: step`` counts optimizer steps (He et al. 2016 give their CIFAR schedule in
    iterations: lr / 10 at 32k and 48k); ``warmup`` is He et al.'s ResNet-110 warm-up
    (lr 0.01 = 0.1 x 0.1 until training error is below 80%, "about 400 iterations").
    Milestones and ``warmup.until`` are in units of ``interval``.
    """
    interval = sched.get("interval", "epoch")
    if interval not in ("epoch", "step"):
        raise ConfigError(f"optim.scheduler.interval={interval!r} is not 'epoch' or 'step'")
    milestones = sorted(int(m) for m in sched["milestones"])
    gamma = float(sched.get("gamma", 0.1))
    warmup = sched.get("warmup") or {}
    until, warm_factor = int(warmup.get("until", 0)), float(warmup.get("factor", 1.0))

    def factor(t: int) -> float:
        return (warm_factor if t < until else 1.0) * gamma ** bisect.bisect_right(milestones, t)

    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "interval": interval}


def _exponential_decay(optimizer: torch.optim.Optimizer, sched: dict, trainer) -> dict:
    """lr * gamma ** (epochs / every_epochs), stepped per optimizer step; ``staircase`` (default)
    decays in whole periods. Model patches Sec. 5: "decay factor 0.98 per 2.5 epochs"."""
    gamma, every = float(sched["gamma"]), float(sched.get("every_epochs", 1.0))
    staircase = sched.get("staircase", True)
    if trainer is None:
        raise ConfigError("optim.scheduler exponential needs the trainer (epoch length in steps)")
    trainer.estimated_stepping_batches  # noqa: B018 - sets up the train dataloader, so its length is known
    batches = trainer.num_training_batches
    if batches == float("inf") or not batches:
        raise ConfigError("optim.scheduler exponential needs a train dataloader of known length")
    period = max(1.0, every * batches / max(1, trainer.accumulate_grad_batches))

    def factor(step: int) -> float:
        return gamma ** (step // period if staircase else step / period)

    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "interval": "step"}


def param_groups(named_params, decay: dict[str, float], cfg: dict, tags: dict[str, set[str]] | None = None,
                 name_prefix: str = "", **group_options) -> list[dict]:
    """Optimizer groups of the trainable ``(name, parameter)`` pairs, one per component.

    ``decay`` maps names to the weight decay their module declares
    (:func:`kmexp.components.weight_decay_overrides`; kernel modulators: 0, KM Eq. 4);
    with ``no_weight_decay_1d`` biases and norm parameters get none either (the
    timm/ConvNeXt recipe; group ``<component>/no_decay``). ``group_options`` (e.g. ``lr``)
    go into every group. Each group is named by its component from ``tags``
    (:func:`kmexp.components.tag_parameters`: ``implicit``, ``explicit``, ``classifier`` ...),
    ``name_prefix`` in front (e.g. a multi-task run's task), so learning-rate series read
    ``lr/explicit`` rather than ``pg2`` (:mod:`kmexp.lr_logging`).
    """
    skip_1d = cfg.get("no_weight_decay_1d", False)
    groups: dict[tuple[str, float | None], dict] = {}
    for name, p in named_params:
        if not p.requires_grad:
            continue
        component = next((c for c in COMPONENTS if c in (tags or {}).get(name, ())), "params")
        wd = None
        if name in decay:
            wd = decay[name]
        elif skip_1d and p.ndim <= 1:
            component, wd = f"{component}/no_decay", 0.0
        key = (name_prefix + component, wd)
        if key not in groups:
            taken = {g["name"] for g in groups.values()}
            label = key[0] if key[0] not in taken else f"{key[0]}/weight_decay={wd}"
            groups[key] = {"params": [], "name": label, **({"weight_decay": wd} if wd is not None else {}),
                           **group_options}
        groups[key]["params"].append(p)
    return list(groups.values())


def optimizers_for_lightning(optimizer: torch.optim.Optimizer, cfg: dict, trainer=None):
    """What ``configure_optimizers`` returns: the optimizer, with its schedule if it has one."""
    scheduler = build_scheduler(optimizer, cfg, trainer)
    return optimizer if scheduler is None else {"optimizer": optimizer, "lr_scheduler": scheduler}
