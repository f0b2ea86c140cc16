"""Inter-layer kernel sharing (kernel-sharing paper, Sec. 2 and 3.1).

Convolution layers are *isomorphic* when they have the same configuration: kernel
size, input and output channels, groups, stride, padding, dilation, padding mode and
whether they have a bias. A *sharing group* is a set of isomorphic layers that use one
set of kernels. Sharing ties the modules' ``weight`` (and ``bias``) to the very same
``nn.Parameter`` object, so the network has one trainable tensor per group and autograd
accumulates its gradient over every use, which is Eq. 1:
dL/dw^g = sum_l dL/dw_l^g. Normalization layers are never shared (Sec. 3.2: sharing
batch-norm parameters "led to a considerable performance drop").

The ``sharing`` config (configs/sharing/*.yaml) chooses the groups:

``strategy: none``
    no sharing.
``strategy: kernels`` + ``num_kernels``
    the paper's ConvMixer experiments (Sec. 3.1): the network's isomorphic layers share
    ``num_kernels`` kernels in total. Each class of isomorphic layers (ConvMixer has
    two: depthwise and pointwise) is split into ``num_kernels / #classes`` groups of
    consecutive layers: 2 = full sharing (one depthwise + one pointwise kernel),
    4 = halves, 8 = quarters of the blocks.
``strategy: stages`` + ``stages``
    the paper's SE-ResNet experiments (Sec. 3.3): within each listed stage (1-based;
    stage i is the module ``layer{i}``, the torchvision / He et al. naming) the
    isomorphic layers share one kernel; other stages keep their own kernels.
``strategy: isomorphic`` (+ ``scopes``, ``chunks``)
    the general form of both: within each scope (a module-name prefix, ``""`` = the
    whole network) every class of isomorphic layers is split into ``chunks`` groups
    of consecutive layers.
``groups``
    explicit sharing groups, each a list of module-name patterns (``fnmatch``), e.g.
    ``[["blocks.*.1"], ["blocks.0.0.fn.0", "blocks.1.0.fn.0"]]``; every layer a group
    matches shares the first one's kernels. Only with ``strategy: none``.

Sharing is applied by :func:`kmexp.methods.build_model` right after the backbone is
built, before any method injects modules (so Kernel Modulation puts one modulator on
every *use* of a shared kernel).
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from dataclasses import dataclass, field

from torch import nn
from torch.nn.utils import parametrize

from kmexp.errors import ConfigError

STRATEGIES = ("none", "isomorphic", "kernels", "stages")


@dataclass(frozen=True)
class ConvSignature:
    """Everything that must match for two convolutions to share kernels."""

    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...] | str
    dilation: tuple[int, ...]
    groups: int
    bias: bool
    padding_mode: str

    def __str__(self) -> str:
        k = "x".join(map(str, self.kernel_size))
        return (
            f"Conv2d({self.in_channels}->{self.out_channels}, kernel {k}, stride {self.stride}, "
            f"padding {self.padding}, dilation {self.dilation}, groups {self.groups}, "
            f"{'bias' if self.bias else 'no bias'}, padding_mode {self.padding_mode})"
        )


def conv_signature(conv: nn.Conv2d) -> ConvSignature:
    return ConvSignature(
        in_channels=conv.in_channels,
        out_channels=conv.out_channels,
        kernel_size=tuple(conv.kernel_size),
        stride=tuple(conv.stride),
        padding=conv.padding if isinstance(conv.padding, str) else tuple(conv.padding),
        dilation=tuple(conv.dilation),
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )


@dataclass(frozen=True)
class SharingGroup:
    """Layers (module names, in network order) that use the kernels of ``layers[0]``."""

    layers: tuple[str, ...]
    signature: ConvSignature
    kernel_numel: int = field(default=0, compare=False)


@dataclass(frozen=True)
class SharingConfig:
    """The ``sharing`` config group; see the module docstring for the strategies."""

    strategy: str = "none"
    num_kernels: int | None = None
    stages: tuple[int, ...] = ()
    scopes: tuple[str, ...] = ("",)
    chunks: int = 1
    groups: tuple[tuple[str, ...], ...] = ()

    @classmethod
    def from_dict(cls, cfg: dict | None) -> SharingConfig:
        cfg = dict(cfg or {})
        cfg.pop("description", None)
        unknown = set(cfg) - {"strategy", "num_kernels", "stages", "scopes", "chunks", "groups"}
        if unknown:
            raise ConfigError(f"unknown sharing option(s): {sorted(unknown)}")
        strategy = cfg.get("strategy", "none")
        if strategy not in STRATEGIES:
            raise ConfigError(f"sharing.strategy={strategy!r} is not one of {list(STRATEGIES)}")
        groups = tuple(tuple([g] if isinstance(g, str) else g) for g in (cfg.get("groups") or ()))
        if groups and strategy != "none":
            raise ConfigError("sharing.groups lists explicit groups: use it with sharing.strategy=none")
        num_kernels = cfg.get("num_kernels")
        if strategy == "kernels" and (not isinstance(num_kernels, int) or num_kernels < 1):
            raise ConfigError(f"sharing.strategy=kernels needs a positive integer num_kernels, got {num_kernels!r}")
        stages = tuple(cfg.get("stages") or ())
        if strategy == "stages" and (not stages or not all(isinstance(s, int) and s >= 1 for s in stages)):
            raise ConfigError(f"sharing.strategy=stages needs a list of 1-based stage numbers, got {list(stages)!r}")
        chunks = cfg.get("chunks", 1)
        if not isinstance(chunks, int) or chunks < 1:
            raise ConfigError(f"sharing.chunks={chunks!r} must be a positive integer")
        scopes = cfg.get("scopes")
        scopes = ("",) if scopes is None else tuple([scopes] if isinstance(scopes, str) else scopes)
        return cls(strategy, num_kernels, stages, scopes, chunks, groups)


def conv_layers(model: nn.Module, scope: str = "") -> dict[str, nn.Conv2d]:
    """Every ``nn.Conv2d`` under the module named ``scope`` (all of them for ``""``), in order."""
    prefix = f"{scope}." if scope else ""
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and (not scope or name == scope or name.startswith(prefix))
    }


def isomorphic_classes(model: nn.Module, scope: str = "") -> list[list[str]]:
    """Classes of isomorphic convolutions under ``scope`` with at least two layers each."""
    by_signature: dict[ConvSignature, list[str]] = defaultdict(list)
    for name, conv in conv_layers(model, scope).items():
        by_signature[conv_signature(conv)].append(name)
    return [names for names in by_signature.values() if len(names) > 1]


def _split_consecutive(names: list[str], chunks: int, what: str) -> list[list[str]]:
    """``chunks`` groups of consecutive layers; sizes differ by at most one (earlier ones larger)."""
    if chunks > len(names):
        raise ConfigError(
            f"cannot split {len(names)} isomorphic layers ({names[0]} ... {names[-1]}) into {chunks} "
            f"sharing groups ({what})"
        )
    size, extra = divmod(len(names), chunks)
    out, start = [], 0
    for i in range(chunks):
        end = start + size + (i < extra)
        out.append(names[start:end])
        start = end
    return out


def plan_groups(model: nn.Module, cfg: SharingConfig) -> list[list[str]]:
    """The sharing groups (lists of module names) that ``cfg`` asks for in ``model``."""
    if cfg.groups:
        return _explicit_groups(model, cfg.groups)
    if cfg.strategy == "none":
        return []
    if cfg.strategy == "stages":
        scopes, chunks = tuple(f"layer{s}" for s in cfg.stages), 1
        modules = dict(model.named_modules())
        missing = [s for s in scopes if s not in modules]
        if missing:
            raise ConfigError(
                f"sharing.stages={list(cfg.stages)}: the backbone has no stage module(s) {missing} "
                f"(stage i is the module named layer<i>)"
            )
    else:
        scopes, chunks = cfg.scopes, cfg.chunks
    classes = [(scope, names) for scope in scopes for names in isomorphic_classes(model, scope)]
    if not classes:
        raise ConfigError(f"sharing.strategy={cfg.strategy}: no isomorphic convolution layers in scope(s) {list(scopes)}")
    if cfg.strategy == "kernels":
        if cfg.num_kernels % len(classes):
            raise ConfigError(
                f"sharing.num_kernels={cfg.num_kernels} must be a multiple of the number of classes of "
                f"isomorphic layers in this backbone ({len(classes)}: "
                + "; ".join(f"{len(n)} x {conv_signature(model.get_submodule(n[0]))}" for _, n in classes)
                + ")"
            )
        chunks = cfg.num_kernels // len(classes)
    what = f"sharing.strategy={cfg.strategy}" + (f", num_kernels={cfg.num_kernels}" if cfg.num_kernels else "")
    return [g for _, names in classes for g in _split_consecutive(names, chunks, what)]


def _explicit_groups(model: nn.Module, groups: tuple[tuple[str, ...], ...]) -> list[list[str]]:
    convs = conv_layers(model)
    out, seen = [], {}
    for i, patterns in enumerate(groups):
        names = []
        for pattern in patterns:
            matched = [n for n in convs if fnmatch.fnmatchcase(n, pattern)]
            if not matched:
                raise ConfigError(f"sharing.groups[{i}]: pattern {pattern!r} matches no Conv2d layer")
            names += [n for n in matched if n not in names]
        for n in names:
            if n in seen:
                raise ConfigError(f"sharing.groups: layer {n!r} is in group {seen[n]} and group {i}")
            seen[n] = i
        names.sort(key=list(convs).index)
        out.append(names)
    return out


def tie_kernels(model: nn.Module, layers: list[str]) -> SharingGroup:
    """Make every layer in ``layers`` use the weight (and bias) Parameter of ``layers[0]``.

    Raises :class:`ConfigError` naming the layers when they are not isomorphic, or when
    a layer's weight is already parametrized (sharing must come before modulators).
    """
    convs = {n: model.get_submodule(n) for n in layers}
    signatures = {n: conv_signature(c) for n, c in convs.items()}
    first = layers[0]
    differing = [n for n in layers if signatures[n] != signatures[first]]
    if differing:
        lines = "; ".join(f"{n}: {signatures[n]}" for n in [first, *differing])
        raise ConfigError(f"kernel sharing needs isomorphic layers, but these differ: {lines}")
    parametrized = [n for n, c in convs.items() if parametrize.is_parametrized(c, "weight")]
    if parametrized:
        raise ConfigError(f"cannot share kernels of parametrized layers {parametrized}: apply sharing before modulators")
    owner = convs[first]
    for conv in list(convs.values())[1:]:
        conv.weight = owner.weight
        if owner.bias is not None:
            conv.bias = owner.bias
    return SharingGroup(tuple(layers), signatures[first], owner.weight.numel())


def apply_sharing(model: nn.Module, sharing_cfg: dict | SharingConfig | None) -> list[SharingGroup]:
    """Tie kernels across the sharing groups ``sharing_cfg`` asks for; returns the groups.

    Groups of a single layer (e.g. ConvMixer-384/4 with eight kernels, which the paper
    notes "is the same as the baseline") are left alone and not returned.
    """
    cfg = sharing_cfg if isinstance(sharing_cfg, SharingConfig) else SharingConfig.from_dict(sharing_cfg)
    return [tie_kernels(model, g) for g in plan_groups(model, cfg) if len(g) > 1]


def shared_kernels(model: nn.Module) -> dict[str, list[str]]:
    """Tied convolution weights found in ``model``: first user -> every layer using that tensor.

    Looks through Kernel Modulation's parametrizations (the shared kernel is then each
    layer's ``parametrizations.weight.original``).
    """
    users: dict[int, list[str]] = defaultdict(list)
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            w = m.parametrizations.weight.original if parametrize.is_parametrized(m, "weight") else m.weight
            users[id(w)].append(name)
    return {names[0]: names for names in users.values() if len(names) > 1}
