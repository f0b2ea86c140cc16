"""When the modulated weights are computed: once per optimizer step, once per evaluation.

Kernel Modulation (KM Sec. III-A) makes every convolution weight a function of its frozen
kernel, W_mod = g(W). Attached through :mod:`torch.nn.utils.parametrize`, that function runs
on every read of ``conv.weight``: on every micro-batch under gradient accumulation and on
every evaluation batch, although W_mod only changes when the optimizer steps.

- :class:`StepWeights` (training): the first micro-batch of an optimizer step computes each
  W_mod once, with its autograd graph, and hands the network a detached leaf copy. Every
  micro-batch's backward accumulates dL/dW_mod into that leaf; at the optimizer step the
  summed gradient is chained through the modulators once. This is exact by linearity:
  d(sum_b L_b)/d(theta) = (sum_b dL_b/dW_mod) * dW_mod/d(theta), and costs one modulator
  forward and one modulator backward per optimizer step instead of one each per
  micro-batch. (Keeping W_mod's graph and backpropagating through it on every micro-batch
  would need ``retain_graph``; ``parametrize.cached()`` around a whole accumulated step
  fails with "backward through the graph a second time".)
- :func:`evaluation_weights` (validation / test / predict): every parametrized weight
  computed once, without a graph, and reused by every batch: evaluation runs on the folded
  weights, with the same values as :func:`kmexp.modulation.fold_modulators` gives.

Both hand the precomputed tensors to the network through torch's parametrization cache
(:func:`using_weights`), so the network, its modules and its state dict stay unchanged.
This module decides *when* a parametrized weight is computed, not *how*: that is the
parametrization's own forward (:class:`kmexp.modulation.KernelModulator`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.utils import parametrize

Key = tuple[nn.Module, str]


def parametrized_tensors(net: nn.Module) -> list[Key]:
    """Every (module, tensor name) of ``net`` whose value is computed by a parametrization."""
    keys = []
    for module in net.modules():
        if parametrize.is_parametrized(module):
            keys.extend((module, name) for name in module.parametrizations)
    return keys


@contextmanager
def using_weights(weights: dict[Key, torch.Tensor]) -> Iterator[None]:
    """Inside: reading ``module.<name>`` returns ``weights[(module, name)]`` instead of
    running its parametrization (torch's parametrization cache, pre-filled)."""
    with parametrize.cached():
        # the cache dict is replaced on exit of the outermost cached(): look it up inside
        parametrize._cache.update({(id(m), name): w for (m, name), w in weights.items()})
        yield


@torch.no_grad()
def evaluation_weights(net: nn.Module) -> dict[Key, torch.Tensor]:
    """Each parametrized weight of ``net`` computed once (no graph), for a whole evaluation."""
    return {(m, name): getattr(m, name) for m, name in parametrized_tensors(net)}


class StepWeights:
    """The parametrized weights of one optimizer step (see the module docstring).

    Use: ``forward(net, x)`` for every training micro-batch; :meth:`backward` once, after the
    step's last backward and before the optimizer reads the gradients (the LightningModule
    calls it inside the optimizer closure, so gradient clipping and a gradient scaler see
    the chained gradients).
    """

    def __init__(self) -> None:
        self._graph: dict[Key, torch.Tensor] = {}
        self._leaves: dict[Key, torch.Tensor] = {}
        self._keys: tuple[int, list[Key]] | None = None  # (id of the network, its parametrized tensors)

    def _parametrized(self, net: nn.Module) -> list[Key]:
        if self._keys is None or self._keys[0] != id(net):
            self._keys = (id(net), parametrized_tensors(net))
        return self._keys[1]

    @property
    def open(self) -> bool:
        return bool(self._leaves)

    def forward(self, net: nn.Module, *args, **kwargs):
        if not self._leaves:
            for m, name in self._parametrized(net):
                w = getattr(m, name)  # the parametrization runs here, once per optimizer step
                self._graph[(m, name)] = w
                self._leaves[(m, name)] = w.detach().requires_grad_(w.requires_grad)
        with using_weights(self._leaves):
            return net(*args, **kwargs)

    def backward(self) -> None:
        """Chain the gradients accumulated on the leaves through the parametrizations, once,
        and close the step (the next forward recomputes the weights from the new parameters)."""
        pairs = [(self._graph[k], leaf.grad) for k, leaf in self._leaves.items() if leaf.grad is not None]
        self.reset()
        if pairs:
            outputs, grads = zip(*pairs, strict=True)
            torch.autograd.backward(outputs, grads)

    def reset(self) -> None:
        self._graph, self._leaves = {}, {}
