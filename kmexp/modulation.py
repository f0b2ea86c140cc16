"""Explicit kernel modulation (Kernel Modulation paper, Sec. III-A, Fig. 2).

Each convolution layer i gets its own kernel modulator g_i: the frozen weight of shape
(kn, kc, kh, kw) is reshaped to (kn*kc, kh*kw), passed row by row through a small MLP
with kh*kw inputs and outputs (no biases) and reshaped back (steps A-E of Fig. 2).

The modulator is attached with :mod:`torch.nn.utils.parametrize`, so the convolution
module keeps its type and forward: ``conv.weight`` *is* the modulated weight, and the
frozen base weight lives at ``conv.parametrizations.weight.original``. This works for
any ``nn.Conv2d`` (3x3, 1x1, 7x7, depthwise, grouped) and for kernels tied across
layers by kernel sharing (each use gets its own modulator over the shared kernel).

:func:`fold_modulators` bakes the modulated weights into plain convolutions, so a
deployed model costs nothing extra (Sec. I, Fig. 1).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Collection
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from kmexp.components import InjectedModule
from kmexp.errors import ConfigError

ACTIVATIONS = {
    "tanh": nn.Tanh,
    "sin": None,  # torch has no nn.Sin module; see _Sin below
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(negative_slope=0.1),  # Sec. IV-D: slope 0.1
}
INITS = ("default", "orthogonal", "diagonal")


class _Sin(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x)


@dataclass(frozen=True)
class ModulatorConfig:
    """Construction of a kernel modulator (Sec. III-A; ablations of Sec. IV-D, Fig. 5).

    Attributes:
        activation: nonlinearity between MLP layers: tanh (paper default), sin, relu,
            leaky_relu (negative slope 0.1).
        init: ``default`` = I + N(0, std) (Eq. 4); ``orthogonal`` (Saxe et al.);
            ``diagonal`` = only the diagonal trains, initialised 1 + N(0, std).
        depth: number of linear layers (the paper's default is 2; Fig. 5C: 1 to 50).
        init_std: standard deviation of the noise in Eq. 4 (0.001).
    """

    activation: str = "tanh"
    init: str = "default"
    depth: int = 2
    init_std: float = 1e-3

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ConfigError(
                f"modulator.activation={self.activation!r} is not one of {sorted(ACTIVATIONS)}"
            )
        if self.init not in INITS:
            raise ConfigError(f"modulator.init={self.init!r} is not one of {list(INITS)}")
        if not isinstance(self.depth, int) or not 1 <= self.depth <= 50:
            raise ConfigError(f"modulator.depth={self.depth!r} must be an integer in 1..50")
        if not self.init_std >= 0:
            raise ConfigError(f"modulator.init_std={self.init_std!r} must be >= 0")

    @classmethod
    def from_dict(cls, cfg: dict | None) -> ModulatorConfig:
        cfg = dict(cfg or {})
        unknown = set(cfg) - {"activation", "init", "depth", "init_std"}
        if unknown:
            raise ConfigError(f"unknown modulator option(s): {sorted(unknown)}")
        return cls(**cfg)


def _make_activation(name: str) -> nn.Module:
    return _Sin() if name == "sin" else ACTIVATIONS[name]()


def _outside_autocast(forward):
    """Run a parametrization's forward with autocast off: in the dtype of its tensors (fp32
    under ``bf16-mixed``/``16-mixed``, where weights stay fp32), see :class:`KernelModulator`."""

    @functools.wraps(forward)
    def run(self, weight: torch.Tensor) -> torch.Tensor:
        device = weight.device.type
        if device not in ("cpu", "cuda") or not torch.is_autocast_enabled(device):
            return forward(self, weight)  # e.g. meta tensors (FLOP and parameter counts)
        with torch.autocast(device, enabled=False):
            return forward(self, weight)

    return run


class KernelModulator(InjectedModule):
    """The MLP g_i of Eq. 3: maps each kh*kw kernel slice of W_i to the modulated one.

    Used as a parametrization: ``forward(weight) -> modulated weight`` of the same shape.
    Layers are bias-free square matrices, so a 3x3 kernel's modulator has depth * 81
    parameters (162 for the default depth 2, Sec. III-A). Its parameters are the
    ``explicit`` component and get no weight decay: decay would pull U towards 0, away
    from the identity it starts at (Eq. 4).

    Mixed precision: the modulator runs in fp32 even under bf16/fp16 autocast, so W_mod is
    bitwise the fp32 one; only the convolution that reads it rounds it, once, as it rounds
    any fp32 weight. bf16 is not safe here: its 8-bit significand spaces numbers in [1, 2)
    by 2^-7 = 0.0078, so the diagonal of U = I + N(0, 0.001) (Eq. 4) rounds to exactly 1,
    and learned changes of the diagonal below 0.004 are invisible to the forward pass. The
    cost is small: the modulator matmuls are (kn*kc, kh*kw) x (kh*kw, kh*kw).
    """

    component = "explicit"
    weight_decay = 0.0

    def __init__(self, kernel_numel: int, config: ModulatorConfig = ModulatorConfig()):
        super().__init__()
        self.kernel_numel = kernel_numel
        self.config = config
        self.diagonal = config.init == "diagonal"
        k = kernel_numel
        if self.diagonal:
            self.weights = nn.ParameterList(
                nn.Parameter(1.0 + config.init_std * torch.randn(k)) for _ in range(config.depth)
            )
        else:
            self.weights = nn.ParameterList(
                nn.Parameter(self._square_init(k, config)) for _ in range(config.depth)
            )
        self.activation = _make_activation(config.activation)

    @staticmethod
    def _square_init(k: int, config: ModulatorConfig) -> torch.Tensor:
        if config.init == "orthogonal":
            w = torch.empty(k, k)
            nn.init.orthogonal_(w)
            return w
        return torch.eye(k) + config.init_std * torch.randn(k, k)  # Eq. 4

    @_outside_autocast
    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        shape = weight.shape
        x = weight.reshape(-1, self.kernel_numel)  # step B: (kn*kc, kh*kw)
        for j, u in enumerate(self.weights):
            if j > 0:
                x = self.activation(x)
            x = x * u if self.diagonal else x @ u.t()
        return x.reshape(shape)  # step E

    def extra_repr(self) -> str:
        c = self.config
        return f"kernel_numel={self.kernel_numel}, depth={c.depth}, activation={c.activation}, init={c.init}"


def is_modulated(conv: nn.Module) -> bool:
    return parametrize.is_parametrized(conv, "weight") and any(
        isinstance(p, KernelModulator) for p in conv.parametrizations.weight
    )


def _classifier_or_none(model: nn.Module) -> nn.Module | None:
    from kmexp.models.heads import HeadNotFoundError, find_head

    try:
        return find_head(model)
    except HeadNotFoundError:  # a bare stack of convolutions: everything is a kernel
        return None


def add_kernel_modulators(
    model: nn.Module, config: ModulatorConfig | dict | None = None, names: Collection[str] | None = None
) -> int:
    """Attach one kernel modulator to every ``nn.Conv2d`` of ``model`` (Sec. III-A).

    ``names``: only the convolutions with these module names (``None`` = all; see
    :func:`kmexp.targets.select_modules`). Returns the number of modulated convolutions.
    Modulators are created on the device and dtype of the convolution weight. A classifier
    that is a 1x1 convolution (timm's BiT head) is the task's head, not a kernel of the base,
    and is left alone.
    """
    if not isinstance(config, ModulatorConfig):
        config = ModulatorConfig.from_dict(config)
    head = _classifier_or_none(model)
    count = 0
    for name, module in list(model.named_modules()):
        if names is not None and name not in names:
            continue
        if isinstance(module, nn.Conv2d) and module is not head and not is_modulated(module):
            w = module.weight
            modulator = KernelModulator(math.prod(w.shape[2:]), config).to(w.device, w.dtype)
            # unsafe=False checks shape/dtype preservation once at registration
            parametrize.register_parametrization(module, "weight", modulator)
            count += 1
    return count


@torch.no_grad()
def fold_modulators(model: nn.Module) -> nn.Module:
    """Bake every modulated weight into its convolution and drop the modulators.

    The result is an ordinary network with identical outputs (same forward, plain
    ``nn.Parameter`` weights), in place; returns ``model`` for chaining.
    """
    # Every modulated weight is computed before any is removed: a kernel shared across
    # layers (kmexp.sharing) is one tensor under several modulators, and torch's
    # leave_parametrized=True would overwrite that shared tensor in place.
    modulated = [(m, m.weight.detach().clone()) for m in model.modules()
                 if isinstance(m, nn.Conv2d) and is_modulated(m)]
    for module, weight in modulated:
        requires_grad = module.parametrizations.weight.original.requires_grad
        _own_parametrized_class(module)
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        module.weight = nn.Parameter(weight, requires_grad=requires_grad)
    return model


def _own_parametrized_class(module: nn.Module) -> None:
    """Give ``module`` a private copy of its parametrized class before removal.

    torch injects one class per parametrized module, but ``copy.deepcopy`` makes the copy
    share it; ``remove_parametrizations`` deletes the property from that class, which
    would silently break every other copy (e.g. folding a deployment copy).
    """
    cls = module.__class__
    attrs = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
    module.__class__ = type(cls.__name__, cls.__bases__, attrs)


def modulator_parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for m in model.modules() if isinstance(m, KernelModulator) for p in m.parameters())
