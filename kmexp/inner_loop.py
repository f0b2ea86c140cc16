"""The inner loop of MAML-style meta-learning, over any subset of components (KM Sec. IV-C).

MAML (Finn et al. 2017, Eq. 1) adapts parameters theta on a task's support set with a few
gradient steps, theta' = theta - alpha * grad L_support(theta), and meta-learns theta in an
outer loop on the loss of theta' on the query set. Which parameters adapt is named with
the component vocabulary of :mod:`kmexp.components`:

==========  =====================================  ==========================
method      inner loop adapts                      reference
==========  =====================================  ==========================
``maml``    every parameter                        Finn et al. 2017
``anil``    ``classifier``                         Raghu et al. 2020
``km``      ``explicit`` + ``classifier``          KM Sec. IV-C
==========  =====================================  ==========================

The outer loop meta-learns everything (also the convolution weights under KM).

Implementation: :func:`torch.func.functional_call` runs the network with a dict of
tensors in place of its parameters, so adapted weights are plain tensors of the autograd
graph, the module is never copied, and any subset of parameters can adapt while the
outer loop differentiates all of them. (learn2learn's ``MAML.clone()/adapt()`` clones the
wrapped module and adapts all of its parameters; restricting that to KM's modulators,
which live inside the convolutions, would take one wrapper per modulator.) The functional call runs
Kernel Modulation's ``torch.nn.utils.parametrize`` modules unchanged: their parameters
are named ``<conv>.parametrizations.weight.original`` (the base kernel) and
``<conv>.parametrizations.weight.0.weights.<j>`` (the modulator), and replacing either
re-computes the modulated kernel in the forward pass. For full MAML both loops run the
same autograd graph and the same speed (scripts/bench_fewshot.py); ANIL is faster here
because the features are computed once per task (:class:`InnerLoop`).

Second order by default (``create_graph=True`` keeps the inner gradients differentiable,
so the meta-gradient includes the Hessian-vector terms); ``first_order=True`` treats the
inner gradients as constants (first-order MAML, Finn et al. 2017 Sec. 5.2).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from kmexp.components import classifier_module, tag_parameters, validate_components
from kmexp.errors import ConfigError

Params = dict[str, torch.Tensor]


def inner_loop_names(net: nn.Module, components: Iterable[str]) -> list[str]:
    """Names (as in ``named_parameters()``) of the parameters the inner loop adapts."""
    wanted = set(validate_components(components))
    tags = tag_parameters(net)
    names = [n for n, _ in net.named_parameters() if tags[n] & wanted]
    if not names:
        raise ConfigError(f"the inner loop adapts {sorted(wanted)}, but the network has no such parameters")
    return names


def _prefixed(params: Params) -> Params:
    return {f"net.{n}": t for n, t in params.items()}


class _MethodCall(nn.Module):
    """``forward`` runs one method of ``net``, so that :func:`functional_call` can run it."""

    def __init__(self, net: nn.Module, method: str):
        super().__init__()
        self.net = net
        self.method = method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.net, self.method)(x)


def _adapts_only_head(net: nn.Module, names: list[str]) -> bool:
    classifier = classifier_module(net)
    if classifier is None or not (hasattr(net, "forward_features") and hasattr(net, "forward_head")):
        return False
    head = {id(p) for p in classifier.parameters()}
    params = dict(net.named_parameters())
    return all(id(params[n]) in head for n in names)


class InnerLoop:
    """Gradient-descent adaptation of ``names`` of ``net`` on a support set.

    When only the classifier adapts (ANIL) and the network splits into
    ``forward_features`` / ``forward_head`` (timm convention), the support features are
    computed once per task and only the head is re-run in the inner loop, as Raghu et
    al. (2020) do; the result, and its meta-gradient, are the same as re-running the
    whole network, since the features do not depend on the adapted parameters.

    Args:
        net: the network; its modules are called functionally, never modified.
        names: parameters that adapt (see :func:`inner_loop_names`).
        head_only: use the features-once path; ``None`` = whenever it applies.
    """

    def __init__(self, net: nn.Module, names: list[str], head_only: bool | None = None):
        self.net = net
        self.names = list(names)
        self.num_parameters = sum(p.numel() for n, p in net.named_parameters() if n in set(self.names))
        possible = _adapts_only_head(net, self.names)
        if head_only and not possible:
            raise ValueError("head_only needs forward_features/forward_head and an inner loop over the classifier")
        self.head_only = possible if head_only is None else head_only
        if self.head_only:
            self._features = _MethodCall(net, "forward_features")
            self._head = _MethodCall(net, "forward_head")

    def parameters(self, detach: bool = False) -> Params:
        """The network's parameters as a dict; ``detach=True`` for meta-test (no outer graph).

        Inner-loop tensors always require grad (a frozen one starts from a detached copy)."""
        params = {}
        adapted = set(self.names)
        for name, p in self.net.named_parameters():
            if detach or (name in adapted and not p.requires_grad):
                p = p.detach().requires_grad_(name in adapted)
            params[name] = p
        return params

    def forward(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.net, params, (x,))

    def adapt(self, params: Params, x: torch.Tensor, y: torch.Tensor, lr: float, steps: int,
              first_order: bool = False) -> Params:
        """``steps`` SGD steps with step size ``lr`` on the support set (x, y).

        Returns ``params`` with the inner-loop entries replaced by adapted tensors. With
        ``first_order=False`` the result stays differentiable w.r.t. the given tensors up to
        second order; with ``first_order=True`` the inner gradients are constants.
        """
        fast = {n: params[n] for n in self.names}
        if self.head_only and steps:
            features = functional_call(self._features, _prefixed(params), (x,))
        for _ in range(steps):
            if self.head_only:
                logits = functional_call(self._head, _prefixed(fast), (features,))
            else:
                logits = self.forward({**params, **fast}, x)
            loss = F.cross_entropy(logits, y)
            grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order)
            fast = {n: w - lr * g for (n, w), g in zip(fast.items(), grads, strict=True)}
        return {**params, **fast}
