"""Random Bases Descent (RBD; Gressmann et al. 2020), the LD row of Kernel Modulation Table I.

KM Sec. IV-A: RBD "trains a low-dimensional trainable parameter vector and updates the
network via a set of random bases that are sampled at every training iteration". At
every step t, with g the gradient of the loss with respect to all D network weights
theta (flattened):

1. draw d random directions b_1..b_d in R^D from a seed that depends only on
   (``seed``, t): Gaussian vectors, each normalised to unit length;
2. the d coordinates of the step are the directional derivatives c_i = <b_i, g>
   (the gradient of the loss with respect to the coordinates of theta + B^T c at c = 0);
3. theta <- theta - lr * B^T c.

So the weights move only inside the d-dimensional span of that step's bases, and the
bases are never stored: they are regenerated from (seed, t) in chunks of
``chunk_size`` rows (memory O(chunk_size * D), not O(d * D)). The step counter lives
in the optimizer state, so a resumed run draws the same bases it would have drawn.

Where the KM paper is silent we follow Gressmann et al.'s recipe and code
(graphcore-research/random-bases): one subspace for the whole network (no
compartments), coordinates reset to zero at every step, plain SGD in the subspace
(no momentum, constant learning rate). Bases are normalised to exactly unit length (the
original divides Gaussian vectors by sqrt(D), their expected length). RBD is an optimizer
(``optim=rbd``, configs/optim/rbd.yaml), not a method: it moves whatever the method
trains (``method=full`` for the LD row). ``momentum`` and ``weight_decay`` are
accepted so that it also runs with a ResNet SGD schedule: weight decay
is added to the gradient *before* the projection (the step stays in the subspace);
momentum is heavy-ball on the projected steps (the velocity then mixes recent
subspaces, as in the original code's optional momentum).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from kmexp.errors import ConfigError


@dataclass(frozen=True)
class RBDConfig:
    """RBD's own options in the optim section (configs/optim/rbd.yaml).

    Attributes:
        dim: d, the dimension of the random subspace (KM Table I, LD: 8.0 K).
        seed: base seed of the random bases (the run's seed by default).
        chunk_size: bases generated per chunk; bounds memory to chunk_size * D floats.
    """

    dim: int
    seed: int = 0
    chunk_size: int = 512

    def __post_init__(self) -> None:
        if not isinstance(self.dim, int) or self.dim < 1:
            raise ConfigError(f"optim.dim={self.dim!r} must be a positive integer")
        if not isinstance(self.chunk_size, int) or self.chunk_size < 1:
            raise ConfigError(f"optim.chunk_size={self.chunk_size!r} must be a positive integer")
        if not isinstance(self.seed, int):
            raise ConfigError(f"optim.seed={self.seed!r} must be an integer")

    @classmethod
    def from_optim(cls, optim_cfg: dict) -> RBDConfig:
        """The RBD keys of the optim section (the others are the SGD step's)."""
        if optim_cfg.get("dim") is None:
            raise ConfigError("optim=rbd needs optim.dim (the random subspace dimension d)")
        return cls(**{k: optim_cfg[k] for k in ("dim", "seed", "chunk_size") if k in optim_cfg})


def chunk_seed(seed: int, step: int, chunk: int) -> int:
    """A 63-bit generator seed for chunk ``chunk`` of the bases of step ``step``."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFF, seed >> 32 & 0xFFFFFFFF, step, chunk])
    return int(state.generate_state(1, np.uint64)[0] >> np.uint64(1))


def random_bases(numel: int, dim: int, seed: int, step: int, chunk_size: int = 512,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Iterator[torch.Tensor]:
    """Yield the ``dim`` bases of step ``step`` as (rows, numel) chunks of unit-length Gaussian rows.

    Chunk j is drawn from its own generator (``chunk_seed(seed, step, j)``), so the
    same call always regenerates the same bases, and nothing has to be stored.
    """
    device = torch.device(device)
    for chunk, start in enumerate(range(0, dim, chunk_size)):
        rows = min(chunk_size, dim - start)
        generator = torch.Generator(device=device).manual_seed(chunk_seed(seed, step, chunk))
        bases = torch.randn((rows, numel), generator=generator, device=device, dtype=dtype)
        yield bases / bases.norm(dim=1, keepdim=True)


def project_on_random_bases(flat_grad: torch.Tensor, dim: int, seed: int, step: int,
                            chunk_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (B^T c, c) with c = B g: the gradient seen through step ``step``'s subspace."""
    update = torch.zeros_like(flat_grad)
    coordinates = []
    for bases in random_bases(flat_grad.numel(), dim, seed, step, chunk_size, flat_grad.device, flat_grad.dtype):
        c = bases @ flat_grad
        update.add_(c @ bases)
        coordinates.append(c)
    return update, torch.cat(coordinates)


class RandomBasesDescent(torch.optim.Optimizer):
    """SGD restricted to a random ``dim``-dimensional subspace re-drawn at every step.

    One parameter group holds every trainable parameter (they form one vector theta
    of length D). ``step`` counts optimizer steps and, with ``seed``, defines the bases.
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float, dim: int, seed: int = 0,
                 chunk_size: int = 512, momentum: float = 0.0, weight_decay: float = 0.0):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ConfigError(f"RBD needs lr, momentum, weight_decay >= 0 (got {lr}, {momentum}, {weight_decay})")
        defaults = dict(lr=lr, dim=dim, seed=seed, chunk_size=chunk_size, momentum=momentum,
                        weight_decay=weight_decay, step=0)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("RandomBasesDescent optimizes one vector: pass a single parameter group")

    @property
    def num_weights(self) -> int:
        """D: the number of weights that move (inside the subspace)."""
        return sum(p.numel() for p in self.param_groups[0]["params"])

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group = self.param_groups[0]
        params = group["params"]
        grads = []
        for p in params:
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            if group["weight_decay"]:
                g = g.add(p, alpha=group["weight_decay"])
            grads.append(g.reshape(-1))
        update, _ = project_on_random_bases(torch.cat(grads), group["dim"], group["seed"], group["step"],
                                            group["chunk_size"])
        offset = 0
        for p in params:
            u = update[offset: offset + p.numel()].view_as(p)
            offset += p.numel()
            if group["momentum"]:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = u.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(u)
                u = state["momentum_buffer"]
            p.add_(u, alpha=-group["lr"])
        group["step"] += 1
        return loss


def build_rbd_optimizer(params: list[nn.Parameter], optim_cfg: dict) -> RandomBasesDescent:
    """``optim=rbd``: ``lr`` / ``momentum`` / ``weight_decay`` of the SGD step + ``dim``, ``seed``, ``chunk_size``."""
    rbd = RBDConfig.from_optim(optim_cfg)
    if optim_cfg.get("nesterov", False):
        raise ConfigError("optim=rbd steps with plain SGD inside the random subspace: optim.nesterov is not supported")
    numel = sum(p.numel() for p in params)
    if rbd.dim > numel:
        raise ConfigError(f"optim.dim={rbd.dim} exceeds the {numel:,} trainable weights")
    return RandomBasesDescent(params, lr=optim_cfg["lr"], dim=rbd.dim, seed=rbd.seed, chunk_size=rbd.chunk_size,
                              momentum=optim_cfg.get("momentum", 0.0), weight_decay=optim_cfg.get("weight_decay", 0.0))


def rbd_parameter_counts(model: nn.Module, dim: int) -> dict:
    """Summary keys for an RBD run: ``params/trainable`` is d, the trained coordinates per step.

    ``params/total`` stays the network size D (KM Table I, LD: 8.0 K of 78.3 K); the D
    weights that move inside the subspace are reported as ``params/subspace_weights``,
    and ``trainable_note`` says so in words (not under ``params/``: loggers get numbers only).
    """
    total = sum(p.numel() for p in model.parameters())
    moving = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "params/trainable": dim,
        "params/trainable_pct": 100.0 * dim / max(total, 1),
        "params/subspace_weights": moving,
        "trainable_note": (
            f"Random Bases Descent: {dim:,} coordinates per step in a random subspace re-drawn every "
            f"step; all {moving:,} weights move inside it"
        ),
    }
