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


# Rows per chunk when reducing over all kernel rows: MKL does not split one long
# inner dimension across threads, a batch of chunks it does (about 2x on 2 cores).
_REDUCTION_CHUNK = 2048


def _rows_t_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a.T @ b`` for ``a`` (N, k), ``b`` (N, j) with N large: summed per chunk of rows.

    BLAS is fastest when the left factor's rows are contiguous (a transposed view of a
    (k, N) tensor): 1.5-2.5x against the other layouts on one core, so the product is
    turned around when only ``b`` has that layout.
    """
    if a.stride(0) != 1 and b.stride(0) == 1:
        return _rows_t_matmul(b, a).t()
    n = a.shape[0]
    chunks = n // _REDUCTION_CHUNK
    if chunks < 4:
        return a.t() @ b
    m = chunks * _REDUCTION_CHUNK
    out = torch.bmm(a[:m].reshape(chunks, _REDUCTION_CHUNK, -1).transpose(1, 2),
                    b[:m].reshape(chunks, _REDUCTION_CHUNK, -1)).sum(0)
    return out if m == n else out + a[m:].t() @ b[m:]


def _common(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """The tensors in one dtype (under autocast the incoming gradient may be bf16)."""
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return [t.to(dtype) for t in tensors]


class _KernelMatmul(torch.autograd.Function):
    """``u @ xt``: one modulator layer applied to the (k, N) transposed kernel rows.

    The backward is written out so that the reduction over the N kernel rows for the
    gradient of ``u`` runs chunked (:func:`_rows_t_matmul`); it is made of
    differentiable ops, so second-order gradients (MAML-style inner loops) still work.
    """

    @staticmethod
    def forward(ctx, u: torch.Tensor, xt: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(u, xt)
        return u @ xt

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        u, xt = ctx.saved_tensors
        grad, u, xt = _common(grad, u, xt)
        grad_u = _rows_t_matmul(grad.t(), xt.t()) if ctx.needs_input_grad[0] else None
        grad_xt = u.t() @ grad if ctx.needs_input_grad[1] else None
        return grad_u, grad_xt


class _Scale(torch.autograd.Function):
    """``x * u`` for a 1x1 kernel's (1, 1) modulator layer ``u``: a scalar product."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(u, x)
        return x * u.reshape(())

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        u, x = ctx.saved_tensors
        grad, u, x = _common(grad, u, x)
        grad_u = torch.dot(grad.reshape(-1), x.reshape(-1)).reshape(u.shape) if ctx.needs_input_grad[0] else None
        grad_x = grad * u.reshape(()) if ctx.needs_input_grad[1] else None
        return grad_u, grad_x


def _under_functorch() -> bool:
    """Inside ``torch.func`` transforms (vmap over few-shot tasks, :mod:`kmexp.batched_tasks`)
    the custom autograd functions above have no vmap rule; the same products as plain ops do."""
    return torch._C._are_functorch_transforms_active()


def _kernel_matmul(u: torch.Tensor, xt: torch.Tensor) -> torch.Tensor:
    return u @ xt if _under_functorch() else _KernelMatmul.apply(u, xt)


def _scale(u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return x * u.reshape(()) if _under_functorch() else _Scale.apply(u, x)


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
        """Eq. 3 on every kernel row; three exact evaluations of the same MLP.

        The matrix product of Eq. 3 is applied as ``U @ X^T`` on the (kh*kw, kn*kc)
        transposed view of the weight rather than as ``X @ U^T`` on its rows: a
        (k x k) by (k x N) product with N in the millions (ResNet-50) is several times
        faster in BLAS than the skinny (N x k) by (k x k) one, and its gradients are
        computed by :class:`_KernelMatmul`. 1x1 kernels (k = 1) scale the whole
        weight by a scalar, and diagonal modulators multiply each row elementwise, so
        neither needs a matrix product at all. Same function and gradients as the
        row-by-row form (:func:`modulate_rows`; tests/test_modulation_fast_path.py).
        """
        shape, k = weight.shape, self.kernel_numel
        if self.diagonal:
            x = weight.reshape(-1, k)  # step B: (kn*kc, kh*kw)
            for j, u in enumerate(self.weights):
                if j > 0:
                    x = self.activation(x)
                x = x * u
            return x.reshape(shape)  # step E
        if k == 1:
            x = weight
            for j, u in enumerate(self.weights):
                if j > 0:
                    x = self.activation(x)
                x = _scale(u, x)
            return x
        xt = weight.reshape(-1, k).t()  # step B, transposed view: (kh*kw, kn*kc)
        for j, u in enumerate(self.weights):
            if j > 0:
                xt = self.activation(xt)
            xt = _kernel_matmul(u, xt)
        return xt.t().reshape(shape).contiguous()  # step E

    def extra_repr(self) -> str:
        c = self.config
        return f"kernel_numel={self.kernel_numel}, depth={c.depth}, activation={c.activation}, init={c.init}"


def modulate_rows(modulator: KernelModulator, weight: torch.Tensor) -> torch.Tensor:
    """Eq. 3 in its literal form, the reference for :meth:`KernelModulator.forward`.

    Each (kh*kw) row of the reshaped kernel goes through the MLP as ``rows @ U^T``
    (Fig. 2, steps A-E) and autograd derives the gradients. It was the implementation
    until the faster, equal evaluation replaced it; tests and ``scripts/bench_km_cost.py``
    compare against it.
    """
    shape = weight.shape
    x = weight.reshape(-1, modulator.kernel_numel)
    for j, u in enumerate(modulator.weights):
        if j > 0:
            x = modulator.activation(x)
        x = x * u if modulator.diagonal else x @ u.t()
    return x.reshape(shape)


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
