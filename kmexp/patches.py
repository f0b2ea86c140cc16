"""Task patches: the per-task state that must be shipped (Kernel Modulation Sec. V).

A patch holds a run's trainable components plus the running statistics of every norm
layer whose statistics were re-estimated, as a safetensors file. Its metadata
(``__metadata__["kmexp"]``, JSON) names the method, the components and a fingerprint
of the frozen base weights, so a patch is refused by any other base model.

Names are canonical: a parametrized weight ``conv.parametrizations.weight.original``
is stored as ``conv.weight`` so fingerprints do not depend on whether modulators are
attached.

Format 2 keeps the file close to its tensor bytes (KM Sec. V counts a task's storage as
its parameters): the names and shapes of the tensors are not stored, because the model
the patch is applied to derives them (:func:`patch_layout`). The tensors are packed, in
layout order, into one flat tensor per dtype (safetensors entries ``float32``,
``int64``, ...), and the header carries one short ``layout`` fingerprint of the
(name, shape, dtype) list, so a patch made for another method or architecture is
refused. A ResNet-32 KM patch is then 1.02x its tensor bytes (format 1, one safetensors
entry per tensor: 1.46x). Format 1 files are still read.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from kmexp.components import NORM_TYPES
from kmexp.errors import PatchError
from kmexp.patch_checksum import tensor_digest

FORMAT_VERSION = 2
LAYOUT_FINGERPRINT_CHARS = 16  # 64 bits of SHA-256: guards against mix-ups, not adversaries
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
    """Trainable parameters (+ norm statistics) under canonical names, detached on CPU, in
    layout order (:func:`patch_layout`)."""
    state = {canonical_name(n): p for n, p in model.named_parameters() if p.requires_grad}
    if include_norm_stats:
        state.update(norm_statistics(model))
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def patch_layout(model: nn.Module, include_norm_stats: bool = True) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    """(canonical name, shape, dtype) of every tensor a patch of ``model`` holds, in file order."""
    state = {canonical_name(n): p for n, p in model.named_parameters() if p.requires_grad}
    if include_norm_stats:
        state.update(norm_statistics(model))
    return [(k, tuple(v.shape), v.dtype) for k, v in state.items()]


def layout_fingerprint(layout: list[tuple[str, tuple[int, ...], torch.dtype]]) -> str:
    h = hashlib.sha256()
    for name, shape, dtype in layout:
        h.update(f"{name}|{shape}|{dtype};".encode())
    return h.hexdigest()[:LAYOUT_FINGERPRINT_CHARS]


def _dtype_key(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def pack(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One flat tensor per dtype, the tensors concatenated in ``state``'s order."""
    groups: dict[str, list[torch.Tensor]] = {}
    for t in state.values():
        groups.setdefault(_dtype_key(t.dtype), []).append(t.reshape(-1))
    return {k: torch.cat(ts) for k, ts in groups.items()}


def unpack(packed: dict[str, torch.Tensor], layout, where: str = "patch") -> dict[str, torch.Tensor]:
    """Inverse of :func:`pack` for ``layout``; :class:`PatchError` when the sizes disagree."""
    offsets = dict.fromkeys(packed, 0)
    out = {}
    for name, shape, dtype in layout:
        key, n = _dtype_key(dtype), math.prod(shape)
        flat = packed.get(key)
        if flat is None or offsets[key] + n > flat.numel():
            raise PatchError(f"{where}: too few {key} values for {name} (corrupted, or made for another model)")
        out[name] = flat[offsets[key] : offsets[key] + n].view(shape)
        offsets[key] += n
    left = {k: packed[k].numel() - o for k, o in offsets.items() if packed[k].numel() != o}
    if left:
        raise PatchError(f"{where}: {left} values left over after unpacking (corrupted, or made for another model)")
    return out


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
        "layout": layout_fingerprint(patch_layout(model, include_norm_stats)),
        "norm_stats": include_norm_stats,
        **info,
    }
    packed = pack(patch_state(model, include_norm_stats))
    header["content_sha256"] = tensor_digest(packed)  # of what is on disk; checked by read_patch
    save_file(packed, str(path), metadata={"kmexp": json.dumps(header, separators=(",", ":"))})
    return path


def read_patch(path: str | Path, model: nn.Module | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """(header, tensors) of a patch file; :class:`PatchError` when it is not a valid patch.

    Format 2 stores packed tensors (one per dtype); given the ``model`` the patch is for,
    they are returned by canonical name (:func:`unpack_for`), else as stored.
    """
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
    if model is not None:
        tensors = unpack_for(model, header, tensors, path)
    return header, tensors


def unpack_for(model: nn.Module, header: dict, tensors: dict[str, torch.Tensor], path) -> dict[str, torch.Tensor]:
    """The tensors of a patch by canonical name, laid out as ``model`` expects them."""
    if header.get("format", 1) < 2:
        return tensors
    layout = patch_layout(model, header.get("norm_stats", True))
    if header.get("layout") != layout_fingerprint(layout):
        raise PatchError(
            f"{path}: this model's {len(layout)} trainable/statistics tensors do not match the patch's layout; "
            f"it is not set up for the patch's method {header.get('method')!r} (components "
            f"{header.get('components')}): build it with that method (kmexp.load_patch does) or freeze it"
        )
    return unpack(tensors, layout, str(path))


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
    tensors = unpack_for(model, header, tensors, path)  # format 2: names and shapes from the model
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
