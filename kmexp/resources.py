"""Where kmexp finds its configs and paper numbers, and writes results: clone or installed.

In a clone the configs live at ``<repo>/configs`` and the paper's numbers at
``<repo>/results/paper``; an installed wheel ships ``kmexp/configs`` (package data) and
has no repository. Every module asks here instead of assuming a clone.

- :func:`config_dir`: ``kmexp/configs`` when it exists (wheel, or a clone after the
  configs moved into the package), else ``<repo>/configs``.
- :func:`repo_root`: the clone's root, or ``None`` when installed.
- :func:`results_dir`: ``$KMEXP_RESULTS``, else ``<repo>/results`` in a clone, else
  ``./results`` in the working directory.
- :func:`paper_dir`: the paper CSVs (``kmexp/paper`` if shipped, else ``<repo>/results/paper``),
  or ``None``: tables then show no paper column.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def repo_root() -> Path | None:
    root = PACKAGE.parent
    return root if (root / "pyproject.toml").is_file() and (root / "kmexp").is_dir() else None


def config_dir() -> Path:
    packaged = PACKAGE / "configs"
    if packaged.is_dir():
        return packaged
    root = repo_root()
    if root is not None and (root / "configs").is_dir():
        return root / "configs"
    raise FileNotFoundError(f"kmexp configs not found in {packaged} (broken installation?)")


def hydra_config_path() -> str:
    """``config_path`` of the Hydra entry points: the package's configs through Hydra's
    ``pkg://`` search path when they ship inside it, else the clone's ``configs/`` (absolute)."""
    if (PACKAGE / "configs").is_dir():
        return "pkg://kmexp.configs"
    return str(config_dir())


def results_dir() -> Path:
    if os.environ.get("KMEXP_RESULTS"):
        return Path(os.environ["KMEXP_RESULTS"])
    root = repo_root()
    return root / "results" if root is not None else Path.cwd() / "results"


def paper_dir() -> Path | None:
    for d in (PACKAGE / "paper", (repo_root() or PACKAGE) / "results" / "paper"):
        if d.is_dir():
            return d
    return None
