"""timm's published ImageNet weights, found offline (GroupNorm ResNet-50 for KM Sec. IV-B).

timm stores its pretrained weights on the Hugging Face Hub (``timm/<model>.<tag>``,
file ``model.safetensors``) and, for older releases, at a URL whose file lands in the
torch hub cache. Nothing here downloads; the file is looked up in

1. the Hugging Face cache (``$HF_HOME/hub``, or ``$HF_HUB_CACHE``):
   ``models--timm--<model>.<tag>/snapshots/<revision>/model.safetensors`` (or
   ``pytorch_model.bin``), which is where ``timm.create_model(name, pretrained=True)``
   puts it on a machine with internet, so a copied cache just works;
2. the torch hub cache, ``$TORCH_HOME/hub/checkpoints/<file of the URL>``.

A missing file is one :class:`~kmexp.errors.WeightsNotFoundError` naming both places and
the command that fills them.
"""

from __future__ import annotations

from pathlib import Path

from kmexp.errors import ConfigError, WeightsNotFoundError
from kmexp.pretrained import hub_checkpoint_dir

TIMM_PREFIX = "timm:"
HF_FILES = ("model.safetensors", "pytorch_model.bin")  # the order timm tries them


def is_timm_tag(weights: str | None) -> bool:
    return bool(weights) and str(weights).startswith(TIMM_PREFIX)


def pretrained_cfg(name: str) -> dict:
    """timm's pretrained config of ``name`` (``resnet50_gn.a1h_in1k``), as a dict."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None:
        raise ConfigError(f"timm publishes no weights named {name!r}")
    return cfg.to_dict()


def hf_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def resolve_timm_weights(weights: str) -> Path:
    """The cached file of timm's weights ``timm:<model>.<tag>``, or WeightsNotFoundError."""
    from huggingface_hub import try_to_load_from_cache

    name = weights.removeprefix(TIMM_PREFIX)
    cfg = pretrained_cfg(name)
    repo = cfg.get("hf_hub_id")
    if repo:
        for filename in HF_FILES:
            found = try_to_load_from_cache(repo, filename, cache_dir=hf_cache_dir())
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
    url = cfg.get("url") or ""
    hub_file = hub_checkpoint_dir() / url.rsplit("/", 1)[-1] if url else None
    if hub_file is not None and hub_file.is_file():
        return hub_file
    expected = hf_cache_dir() / f"models--{repo.replace('/', '--')}" / "snapshots" / "<revision>" / HF_FILES[0]
    also = f" or {hub_file}" if hub_file is not None else ""
    raise WeightsNotFoundError(
        f"timm's ImageNet weights {name} not found at {expected}{also}. Get them on a machine with internet: "
        f"`python -c \"import timm; timm.create_model('{name}', pretrained=True)\"` stores them in the Hugging Face "
        f"cache (copy ~/.cache/huggingface/hub here; $HF_HOME moves it), or `huggingface-cli download {repo} "
        f"{HF_FILES[0]}`. Or pass backbone.weights_path=<file>, or backbone.pretrained=false for a random init"
    )
