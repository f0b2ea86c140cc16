"""Optimizers and learning-rate schedules from plain config (configs/optim/*.yaml).

Keys: ``name`` (sgd | adam | adamw | rmsprop | rbd), ``lr``, ``weight_decay``, ``momentum``,
``nesterov``, ``betas``, ``eps`` (Adam/AdamW); ``scheduler``: ``{name: none | multistep | cosine, ...}``
stepped once per epoch. ``milestones`` are epochs. ``rmsprop`` (``alpha``, ``eps``, ``momentum``) and the
``exponential`` schedule (``gamma`` per ``every_epochs``, stepped per step) are model patches' (Sec. 5).
``rbd`` is Random Bases Descent (KM Table I, LD row; :mod:`kmexp.optim.rbd`): SGD inside a
random subspace of ``dim`` dimensions, with ``seed`` and ``chunk_size`` (configs/optim/rbd.yaml).

Weight decay is ``weight_decay`` except where an injected module declares its own
(:class:`kmexp.components.InjectedModule`: kernel modulators get none).
"""

from __future__ import annotations

import torch

from kmexp.errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "rbd")


def build_optimizer(param_groups: list[dict], cfg: dict) -> torch.optim.Optimizer:
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


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: dict, trainer=None):
    sched = dict(cfg.get("scheduler") or {"name": "none"})
    name = sched.pop("name", "none")
    if name == "none":
        return None
    if name == "multistep":
        s = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(sched["milestones"]),
                                                 gamma=sched.get("gamma", 0.1))
    elif name == "cosine":
        t_max = sched.get("t_max") or (trainer.max_epochs if trainer is not None else None)
        if not t_max or t_max < 0:
            raise ConfigError("optim.scheduler cosine needs t_max or a finite trainer.max_epochs")
        s = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max, eta_min=sched.get("eta_min", 0.0))
    elif name == "exponential":
        return _exponential_decay(optimizer, sched, trainer)
    else:
        raise ConfigError(f"optim.scheduler.name={name!r} is not one of ['none', 'multistep', 'cosine', 'exponential']")
    return {"scheduler": s, "interval": "epoch"}


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


def param_groups(named_params, decay: dict[str, float], cfg: dict, **group_options) -> list[dict]:
    """Optimizer groups of the trainable ``(name, parameter)`` pairs.

    ``decay`` maps names to the weight decay their module declares
    (:func:`kmexp.components.weight_decay_overrides`; kernel modulators: 0, KM Eq. 4);
    with ``no_weight_decay_1d`` biases and norm parameters get none either (the
    timm/ConvNeXt recipe). ``group_options`` (e.g. ``lr``) go into every group.
    """
    skip_1d = cfg.get("no_weight_decay_1d", False)
    regular, one_d = [], []
    declared: dict[float, list] = {}
    for name, p in named_params:
        if not p.requires_grad:
            continue
        if name in decay:
            declared.setdefault(decay[name], []).append(p)
        elif skip_1d and p.ndim <= 1:
            one_d.append(p)
        else:
            regular.append(p)
    groups = [
        {"params": regular, **group_options},
        *({"params": ps, "weight_decay": wd, **group_options} for wd, ps in declared.items()),
        {"params": one_d, "weight_decay": 0.0, **group_options},
    ]
    return [g for g in groups if g["params"]]


def optimizers_for_lightning(optimizer: torch.optim.Optimizer, cfg: dict, trainer=None):
    """What ``configure_optimizers`` returns: the optimizer, with its schedule if it has one."""
    scheduler = build_scheduler(optimizer, cfg, trainer)
    return optimizer if scheduler is None else {"optimizer": optimizer, "lr_scheduler": scheduler}
