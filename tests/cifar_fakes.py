"""Tiny CIFAR-10 in its real on-disk format (pickled python batches under ``cifar-10-batches-py``).

torchvision's MD5 check is the only thing tests bypass (``monkeypatch`` of ``check_integrity``),
since these files are not the published ones.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def write_cifar10(root: Path, per_batch: int, n_test: int, seed: int = 0) -> Path:
    """Five training batches of ``per_batch`` random images, a test batch and the meta file."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def write(name: str, n: int) -> None:
        entry = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 "labels": [int(v) for v in rng.integers(0, 10, n)]}
        (folder / name).write_bytes(pickle.dumps(entry))

    for i in range(1, 6):
        write(f"data_batch_{i}", per_batch)
    write("test_batch", n_test)
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    return Path(root)
