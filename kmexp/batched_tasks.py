"""All tasks of a meta-batch in one batched computation: the GPU path of MAML / ANIL / KM few-shot.

The sequential loop (:meth:`kmexp.inner_loop.InnerLoop.adapt`, one task after another) issues
every kernel once per task and per inner step; a Conv4 on 28x28 images is far too small to fill
a GPU, so that loop is bound by kernel launches. Here one call adapts every task of the batch
at once: :func:`torch.func.vmap` over the task dimension of ``(support_x, support_y, query_x,
query_y)`` maps the per-task inner loop, written with :func:`torch.func.grad` (``autograd.grad``
cannot run under ``vmap``) and :func:`torch.func.functional_call`. The shared meta-parameters
enter unbatched (``in_dims=None``); after the first inner step the adapted weights carry the task
dimension, and the convolutions run as batched (grouped) kernels.

The meta-gradient stays exact and second order: ``torch.func.grad`` composes with ordinary
autograd, so the outer ``loss.backward()`` differentiates through the inner gradients
(Hessian-vector terms included) exactly as through the sequential loop's
``autograd.grad(create_graph=True)``; ``first_order=True`` detaches the inner gradients, as the
sequential loop does. tests/test_batched_tasks.py checks MAML, ANIL and KM against the sequential
loop (same losses and meta-gradients).

Batch normalization (the Conv4 backbones normalize every forward pass with the statistics of
its own batch, ``track_running_stats=False``) must normalize each task with that task's own
statistics. Inside ``vmap`` every task is its own batch, so the statistics are per task; but
PyTorch's batching rule for ``batch_norm`` gave a wrong second-order meta-gradient when the
scale and offset are adapted per task (MAML: max difference 0.04 against the sequential loop in
float64, torch 2.14), so while tasks are batched each such layer computes the same function
written out — mean and biased variance over (N, H, W), ``(x - mean) / sqrt(var + eps) * w + b`` —
whose derivatives are ordinary autograd (:func:`batch_norm_by_hand`). Layers that keep running
statistics update them in place, which a batched task cannot do: such networks use the
sequential loop (:func:`unsupported_reason`).
"""

from __future__ import annotations

import types
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from kmexp.inner_loop import InnerLoop, Params, _prefixed

MODES = ("auto", True, False)


def unsupported_reason(net: nn.Module) -> str | None:
    """Why the tasks of ``net`` cannot be batched, or ``None`` if they can."""
    for name, m in net.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            return (f"batch norm layer {name!r} keeps running statistics (updated in place, which a batched "
                    "task cannot do)")
    return None


def use_batched_tasks(mode: str | bool, device: torch.device, net: nn.Module) -> bool:
    """``meta.batched_tasks``: ``auto`` = on for CUDA devices when the network allows it."""
    if mode == "auto":
        return device.type == "cuda" and unsupported_reason(net) is None
    return bool(mode)


def _batch_norm_forward(self: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """``F.batch_norm(x, None, None, weight, bias, training=True, eps=eps)`` written out."""
    dims = [0, *range(2, x.dim())]
    mean = x.mean(dims, keepdim=True)
    var = x.var(dims, keepdim=True, unbiased=False)
    y = (x - mean) * torch.rsqrt(var + self.eps)
    if self.affine:
        shape = [1, -1] + [1] * (x.dim() - 2)
        y = y * self.weight.reshape(shape) + self.bias.reshape(shape)
    return y


@contextmanager
def batch_norm_by_hand(net: nn.Module):
    """While inside, every batch-norm layer of ``net`` (none with running statistics) runs
    :func:`_batch_norm_forward` (see the module docstring for why)."""
    reason = unsupported_reason(net)
    if reason is not None:
        raise ValueError(f"cannot batch the tasks: {reason}")
    layers = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in layers:
        m.forward = types.MethodType(_batch_norm_forward, m)
    try:
        yield
    finally:
        for m in layers:
            del m.forward


def batched_query_logits(inner: InnerLoop, params: Params, support_x: torch.Tensor, support_y: torch.Tensor,
                         query_x: torch.Tensor, lr: float, steps: int, first_order: bool = False) -> torch.Tensor:
    """Query logits ``(tasks, query, classes)`` after adapting to every task's support set.

    The same computation as, per task ``t``, ``inner.forward(inner.adapt(params, support_x[t],
    support_y[t], lr, steps, first_order), query_x[t])``, batched over the tasks; differentiable
    w.r.t. ``params`` (second order unless ``first_order``).
    """
    names = inner.names

    def one_task(params: Params, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor) -> torch.Tensor:
        fast = {n: params[n] for n in names}
        if inner.head_only:
            features = functional_call(inner._features, _prefixed(params), (sx,))

            def support_loss(fast: Params) -> torch.Tensor:
                return F.cross_entropy(functional_call(inner._head, _prefixed(fast), (features,)), sy)
        else:
            def support_loss(fast: Params) -> torch.Tensor:
                return F.cross_entropy(functional_call(inner.net, {**params, **fast}, (sx,)), sy)

        for _ in range(steps):
            grads = grad(support_loss)(fast)
            if first_order:
                grads = {n: g.detach() for n, g in grads.items()}
            fast = {n: fast[n] - lr * grads[n] for n in names}
        return functional_call(inner.net, {**params, **fast}, (qx,))

    with batch_norm_by_hand(inner.net):
        # dropout, if any: a mask per task, as in the sequential loop
        return vmap(one_task, in_dims=(None, 0, 0, 0), randomness="different")(params, support_x, support_y, query_x)
