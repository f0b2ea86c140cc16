"""Random-number states of Python, NumPy, torch and CUDA as plain containers.

Stored in every checkpoint so that a resumed run draws the same random numbers (dropout,
augmentation, task sampling) as an uninterrupted one. Everything is a tensor, int, tuple or
list, so checkpoints still load with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def capture() -> dict:
    """The current random states of every generator a run uses."""
    kind, key, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore(state: dict) -> None:
    """Set every generator to ``state`` (from :func:`capture`)."""
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value):
    # random.setstate needs tuples; a round trip through some serializers yields lists
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value
