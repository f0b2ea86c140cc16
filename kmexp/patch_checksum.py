"""Content checksum of a task patch's tensors.

The safetensors header only describes names, dtypes, shapes and offsets: flipped bytes inside
the tensor data load without complaint. :func:`tensor_digest` is a SHA-256 over each tensor's
name, dtype, shape and bytes in name order; ``kmexp.patches`` stores it in the patch header
(``content_sha256``) and checks it on every load.
"""

from __future__ import annotations

import hashlib

import torch


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
