"""Checkpoint writes that are atomic on every filesystem (issue: a kill during a save, or a
full disk, must never leave a torn ``last.ckpt``).

The file is written next to its destination (same directory, hence same filesystem) under
a hidden temporary name, flushed and fsynced, and only then renamed into place; the
previous ``last.ckpt`` becomes ``last.prev.ckpt`` first through a hard link, so ``last.ckpt``
itself is readable at every instant. Lightning's own writer goes through ``$TMPDIR`` and a copy when that is on
another filesystem, which is not atomic.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from kmexp.errors import KmexpError

log = logging.getLogger(__name__)

TMP_MARK = ".tmp-"
LAST = "last.ckpt"
PREVIOUS = "last.prev.ckpt"


class CheckpointWriteError(KmexpError):
    """A checkpoint could not be written (full disk, permissions); the previous one is intact."""


def temporary_name(path: Path) -> Path:
    return path.parent / f".{path.name}{TMP_MARK}{os.getpid()}"


def atomic_torch_save(obj, path: str | Path) -> None:
    """``torch.save`` to ``path`` atomically; ``last.ckpt``'s predecessor survives as ``last.prev.ckpt``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CheckpointWriteError(
            f"could not write {path} ({e.strerror or e}); the previous checkpoint is intact. "
            "Free space (or fix the directory) and rerun the same command to resume."
        ) from e
    if path.name == LAST and path.exists():
        _keep_as_previous(path)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _keep_as_previous(path: Path) -> None:
    """Make ``last.prev.ckpt`` the current ``last.ckpt`` without ever leaving ``last.ckpt`` absent.

    A hard link keeps ``last.ckpt`` in place until the new one is renamed over it, so a kill at
    any instant leaves a readable ``last.ckpt``; filesystems without hard links fall back to a
    rename (``last.ckpt`` is then missing for an instant and resume falls back to the previous).
    """
    link = temporary_name(path.parent / PREVIOUS)
    try:
        link.unlink(missing_ok=True)
        os.link(path, link)
    except OSError:
        os.replace(path, path.parent / PREVIOUS)
        return
    os.replace(link, path.parent / PREVIOUS)
    # if a kill left last.ckpt and last.prev.ckpt as one file, the rename above was a no-op
    link.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def clean_orphans(ckpt_dir: Path) -> list[Path]:
    """Delete temporary files of killed saves (call only while holding the run lock)."""
    removed = []
    if ckpt_dir.is_dir():
        for p in ckpt_dir.iterdir():
            if p.name.startswith(".") and TMP_MARK in p.name:
                p.unlink(missing_ok=True)
                removed.append(p)
    if removed:
        log.info("removed %d temporary file(s) of interrupted saves in %s", len(removed), ckpt_dir)
    return removed


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO plugin using :func:`atomic_torch_save` (for last and best)."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        atomic_torch_save(checkpoint, path)
