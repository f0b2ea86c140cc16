"""Weights & Biases set-up: offline automatically when no credentials are configured.

Credentials are never read into the config or logs: we only ask wandb whether an API
key is available (``WANDB_API_KEY`` or ``~/.netrc``). Offline runs are written under the
run directory and can be uploaded later with ``wandb sync <run_dir>/wandb/offline-run-*``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        from wandb.sdk.lib import apikey

        return bool(apikey.api_key(settings=None))
    except Exception:  # noqa: BLE001 - any failure means "no usable key"
        return False


def prepare_wandb(lcfg: DictConfig, run_dir: Path) -> DictConfig:
    """Fill in offline mode and a stable run id (so a resumed run continues the same W&B run)."""
    lcfg = OmegaConf.to_container(lcfg, resolve=True)
    if os.environ.get("WANDB_MODE") in ("offline", "disabled") or not has_credentials():
        lcfg["offline"] = True
    lcfg.setdefault("id", None)
    if lcfg["id"] is None:
        lcfg["id"] = hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:16]
    lcfg.setdefault("resume", "allow")
    return OmegaConf.create(lcfg)
