"""Task patches: the per-task state that must be shipped (Kernel Modulation Sec. V).

A patch holds a run's trainable components plus the running statistics of every norm
layer whose statistics were re-estimated, as a safetensors file. Its metadata
(``__metadata__["kmexp"]``, JSON) names the method, the components and a fingerprint
of the frozen base weights, so a patch is refused by any other base model.

Names are canonical: a parametrized weight ``conv.parametrizations.weight.original``
is stored as ``conv.weight`` so fingerprints do not depend on whether modulators are
attached.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from kmexp.components import NORM_TYPES
from kmexp.errors import PatchError
from kmexp.patch_checksum import tensor_digest

FORMAT_VERSION = 1
_STAT_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def canonical_name(name: str) -> str:
    return name.replace("parametrizations.", "").replace(".original", "")


def frozen_fingerprint(model: nn.Module) -> str:
    """SHA-256 over name, shape, dtype and bytes of every frozen parameter."""
    h = hashlib.sha256()
    for name, p in sorted((canonical_name(n), p) for n, p in model.named_parameters() if not p.requires_grad):
        t = p.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def norm_statistics(model: nn.Module) -> dict[str, torch.Tensor]:
    """Running statistics of every normalization layer, by buffer name."""
    out = {}
    for mname, m in model.named_modules():
        if isinstance(m, NORM_TYPES):
            for b in _STAT_BUFFERS:
                t = getattr(m, b, None)
                if isinstance(t, torch.Tensor):
                    out[f"{mname}.{b}" if mname else b] = t
    return out


def patch_state(model: nn.Module, include_norm_stats: bool = True) -> dict[str, torch.Tensor]:
    """Trainable parameters (+ norm statistics) under canonical names, detached on CPU."""
    state = {canonical_name(n): p for n, p in model.named_parameters() if p.requires_grad}
    if include_norm_stats:
        state.update(norm_statistics(model))
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def export_patch(
    model: nn.Module, path: str | Path, method: str, components: list[str], include_norm_stats: bool = True, **info
) -> Path:
    """Write the task patch of ``model``; returns the path. ``info`` goes into the header."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {
        "format": FORMAT_VERSION,
        "method": method,
        "components": list(components),
        "base_fingerprint": frozen_fingerprint(model),
        "norm_stats": include_norm_stats,
        **info,
    }
    state = patch_state(model, include_norm_stats)
    header["content_sha256"] = tensor_digest(state)  # checked by read_patch (kmexp.patch_checksum)
    save_file(state, str(path), metadata={"kmexp": json.dumps(header)})
    return path


def read_patch(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(header, tensors) of a patch file; :class:`PatchError` when it is not a valid patch."""
    path = Path(path)
    if not path.is_file():
        raise PatchError(f"patch file not found: {path}")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise PatchError(f"{path} is not a readable safetensors patch (corrupted or truncated?): {e}") from e
    if "kmexp" not in meta:
        raise PatchError(f"{path} has no kmexp header: not a kmexp task patch")
    try:
        header = json.loads(meta["kmexp"])
    except json.JSONDecodeError as e:
        raise PatchError(f"{path}: corrupted kmexp header: {e}") from e
    expected = header.get("content_sha256")  # absent in patches written before checksums existed
    if expected is not None and tensor_digest(tensors) != expected:
        raise PatchError(f"{path}: tensor contents do not match the patch's checksum (damaged file)")
    return header, tensors


@torch.no_grad()
def apply_patch(model: nn.Module, path: str | Path, check_fingerprint: bool = True) -> dict:
    """Load a patch into ``model`` (built with the same method); returns its header.

    Refuses, with :class:`PatchError`, a patch whose base fingerprint differs from the
    model's frozen weights, or whose tensors do not match the model's names and shapes.
    Nothing is modified unless every check passes.
    """
    header, tensors = read_patch(path)
    from kmexp.patch_compat import recipe_mismatches

    mismatches = recipe_mismatches(header.get("recipe"), model)
    if mismatches:
        raise PatchError(f"{path} does not fit this model: {'; '.join(mismatches)}")
    trainable = {canonical_name(n) for n, p in model.named_parameters() if p.requires_grad}
    absent = sorted(trainable - set(tensors))
    if absent:  # checked before the fingerprint: an unfrozen model is not "another base"
        raise PatchError(
            f"{path}: this model trains {len(absent)} tensor(s) the patch does not hold (e.g. {absent[:3]}); "
            f"it is not set up for the patch's method {header.get('method')!r} (components "
            f"{header.get('components')}): build it with that method (kmexp.load_patch does) or freeze it"
        )
    if check_fingerprint:
        fp = frozen_fingerprint(model)
        if header.get("base_fingerprint") != fp:
            raise PatchError(
                f"{path} was made for another base model (patch fingerprint "
                f"{str(header.get('base_fingerprint'))[:12]}..., this model {fp[:12]}...; "
                f"method {header.get('method')!r}, components {header.get('components')})"
            )
    targets = {canonical_name(n): p for n, p in model.named_parameters()}
    targets.update(norm_statistics(model))
    missing = sorted(set(tensors) - set(targets))
    if missing:
        raise PatchError(f"{path}: tensors not present in this model: {missing[:5]}")
    for k, t in tensors.items():
        if targets[k].shape != t.shape:
            raise PatchError(f"{path}: {k} has shape {tuple(t.shape)}, model expects {tuple(targets[k].shape)}")
    for k, t in tensors.items():
        targets[k].copy_(t.to(targets[k].device, targets[k].dtype))
    return header
