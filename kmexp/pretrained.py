"""ImageNet-pretrained weights for torchvision architectures, offline.

Transfer learning starts from an ImageNet-pretrained backbone (Kernel Modulation
Sec. IV-B: ResNet-50; model patches Sec. 5: MobileNetV2, InceptionV3). Nothing here
downloads: the weights are read from

1. an explicit file (``weights_path`` in the backbone config), or
2. the torch hub cache, ``torch.hub.get_dir()/checkpoints/<file>``, where ``<file>`` is
   the name torchvision gives the requested weights (``resnet50-0676ba61.pth`` for
   ``IMAGENET1K_V1``). That is where ``torchvision.models.resnet50(weights=...)``
   stores them on a machine with internet, so a copied hub cache just works.

GroupNorm weights published by timm come from the Hugging Face cache instead
(:mod:`kmexp.timm_weights`). Missing weights end the run with one :class:`~kmexp.errors.WeightsNotFoundError` that
names the expected file and how to get it. The classifier is never loaded: each task
re-initializes it for its own classes (KM Sec. IV-B).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from kmexp.components import classifier_module
from kmexp.errors import ConfigError, WeightsNotFoundError

log = logging.getLogger(__name__)

RUN_CHECKPOINT_PREFIX = "net."  # a kmexp LightningModule holds its network as ``self.net``
DEFAULT_WEIGHTS = "IMAGENET1K_V1"  # torchvision's original weights, what `pretrained=True` loaded until 2022


def hub_checkpoint_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (torch's own rule, honouring ``TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def torchvision_weight_files(arch_name: str) -> dict[str, tuple[str, str]]:
    """``{tag: (file name, url)}`` of torchvision's published weights for ``arch_name``."""
    from torchvision.models import get_model_weights

    try:
        enum = get_model_weights(arch_name)
    except ValueError as e:
        raise ConfigError(f"torchvision publishes no weights for {arch_name!r}: {e}") from e
    return {w.name: (w.url.rsplit("/", 1)[-1], w.url) for w in enum}


def resolve_weights(arch_name: str, weights_path: str | Path | None = None, weights: str = DEFAULT_WEIGHTS) -> Path:
    """The file to load, or :class:`WeightsNotFoundError` saying where it was expected."""
    if weights_path:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(
                f"pretrained weights for {arch_name} not found at backbone.weights_path={path}. Point it at a "
                f"torchvision state dict (.pth), drop it to use the torch hub cache, or set backbone.pretrained=false"
            )
        return path
    files = torchvision_weight_files(arch_name)
    if weights not in files:
        raise ConfigError(f"backbone.weights={weights!r}: torchvision has {sorted(files)} for {arch_name}")
    name, url = files[weights]
    path = hub_checkpoint_dir() / name
    if path.is_file():
        return path
    others = [f"{n} ({tag})" for tag, (n, _) in files.items() if tag != weights and (hub_checkpoint_dir() / n).is_file()]
    hint = f" The cache holds {', '.join(others)}: select it with backbone.weights=<tag>." if others else ""
    raise WeightsNotFoundError(
        f"ImageNet-pretrained {arch_name} weights ({weights}) not found at {path}.{hint} Get them on a machine "
        f"with internet: `python -c \"import torchvision; torchvision.models.get_model('{arch_name}', "
        f"weights='{weights}')\"` stores them there (or download {url} into {path.parent}; $TORCH_HOME moves "
        f"the cache). Or pass backbone.weights_path=<file>, or backbone.pretrained=false for a random init"
    )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file (timm's Hugging Face format) or a PyTorch file,
    including a kmexp run's ``checkpoints/last.ckpt`` (its network's keys, ``net.`` removed):
    a pretraining run's checkpoint is another run's ``backbone.weights_path``."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle/zip errors of all kinds mean the same thing here
        raise WeightsNotFoundError(f"{path} is not a readable PyTorch state dict (truncated download?): {e}") from e
    for key in ("state_dict", "model"):  # checkpoints that wrap the state dict
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise WeightsNotFoundError(f"{path} holds a {type(state).__name__}, not a state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if state and all(k.startswith(RUN_CHECKPOINT_PREFIX) for k in state):  # a kmexp run's Lightning checkpoint
        state = {k.removeprefix(RUN_CHECKPOINT_PREFIX): v for k, v in state.items()}
    return state


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    head = classifier_module(model)
    if head is None:
        return ()
    return tuple(f"{name}." for name, m in model.named_modules() if m is head and name)


@torch.no_grad()
def load_pretrained(
    model: nn.Module,
    arch_name: str,
    weights_path: str | Path | None = None,
    weights: str = DEFAULT_WEIGHTS,
    exclude: tuple[str, ...] | None = None,
) -> Path:
    """Load ImageNet weights into ``model`` (a torchvision ``arch_name``), except its classifier.

    Args:
        model: the architecture, built with the target number of classes.
        arch_name: torchvision model name (``resnet50``, ``mobilenet_v2``, ``inception_v3``).
        weights_path: an explicit state-dict file; ``None`` = the torch hub cache.
        weights: torchvision weights tag looked up in the hub cache (``IMAGENET1K_V1``).
        exclude: name prefixes left as initialized; default: the classifier
            (``model.get_classifier()`` / ``model.fc``), re-initialized per task.

    Every other parameter and buffer must be in the file with the same shape, and the
    file may hold nothing else, so a wrong architecture fails loudly. Returns the path.
    """
    path = resolve_weights(arch_name, weights_path, weights)
    load_state_except_head(model, read_state_dict(path), path, arch_name, exclude)
    return path


@torch.no_grad()
def load_state_except_head(
    model: nn.Module, state: dict[str, torch.Tensor], path: Path, arch_name: str, exclude: tuple[str, ...] | None = None
) -> None:
    """Load ``state`` (read from ``path``) into ``model``, every key matched, except the classifier."""
    exclude = _classifier_prefixes(model) if exclude is None else tuple(exclude)
    own = model.state_dict()
    wanted = {k for k in own if not k.startswith(exclude)}
    given = {k for k in state if not k.startswith(exclude)}
    missing, unexpected = sorted(wanted - given), sorted(given - wanted)
    wrong_shape = sorted(k for k in wanted & given if tuple(state[k].shape) != tuple(own[k].shape))
    if missing or unexpected or wrong_shape:
        raise ConfigError(
            f"{path} does not fit {arch_name}: missing {missing[:3]}, unexpected {unexpected[:3]}, "
            f"wrong shape {wrong_shape[:3]}"
        )
    model.load_state_dict({k: state[k] for k in wanted}, strict=False)
    log.info("loaded %s weights from %s (kept %s as initialized)", arch_name, path, list(exclude))
