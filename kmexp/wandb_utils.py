"""Weights & Biases set-up: offline automatically when no credentials are configured.

Credentials are never read into the config or logs: we only ask wandb whether an API
key is available (``WANDB_API_KEY`` or ``~/.netrc``). Offline runs are written under the
run directory and can be uploaded later with ``wandb sync <run_dir>/wandb/offline-run-*``.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
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


ATTEMPT_FILE = ".kmexp_attempt"  # in the run directory: which attempt of this configuration it holds
VOLATILE = ("paths", "logger", "resume", "callbacks", "hydra")  # keys that do not change what a run computes


def config_digest(cfg: DictConfig | None) -> str:
    """Hash of the configuration without paths, loggers and other keys that do not change the run."""
    if cfg is None:
        return ""
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain = {k: v for k, v in plain.items() if k not in VOLATILE}
    return hashlib.sha1(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()


def attempt_token(run_dir: Path, resuming: bool) -> str:
    """A token naming this attempt of the run: kept while a run resumes from its directory,
    new when the directory is fresh (e.g. deleted and started again). Written by rank 0 only."""
    from kmexp.distributed import global_rank

    path = run_dir / ATTEMPT_FILE
    if resuming and path.is_file():
        return path.read_text().strip()
    token = uuid.uuid4().hex
    if global_rank() == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(token + "\n")
    return token


def run_id(cfg: DictConfig | None, run_dir: Path, resuming: bool) -> str:
    """W&B run id from the configuration and the attempt, never from the path alone: a resumed
    run continues its W&B run; a run whose directory was deleted starts a new one instead of
    appending to the old online run."""
    key = f"{config_digest(cfg)}/{run_dir.resolve()}/{attempt_token(run_dir, resuming)}"
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def prepare_wandb(lcfg: DictConfig, run_dir: Path, cfg: DictConfig | None = None, resuming: bool = False) -> DictConfig:
    """Fill in offline mode and a run id (see :func:`run_id`; an explicit ``logger.wandb.id`` wins)."""
    lcfg = OmegaConf.to_container(lcfg, resolve=True)
    if os.environ.get("WANDB_MODE") in ("offline", "disabled") or not has_credentials():
        lcfg["offline"] = True
    lcfg.setdefault("id", None)
    if lcfg["id"] is None:
        lcfg["id"] = run_id(cfg, run_dir, resuming)
    lcfg.setdefault("resume", "allow")
    return OmegaConf.create(lcfg)


def with_sweep_name(argv: list[str]) -> list[str]:
    """For a command-line multirun (``-m``), add ``sweep_name=<the sweep's overrides>`` so W&B
    groups its runs by sweep (runs of a paper table are grouped by table instead).
    ``sweep_name`` is not part of the run directory name (configs/hydra/default.yaml)."""
    if not ({"-m", "--multirun"} & set(argv[1:])) or any(a.startswith("sweep_name=") for a in argv):
        return argv
    overrides = sorted(a for a in argv[1:] if "=" in a and not a.startswith(("-", "hydra")))
    name = " ".join(overrides) or "sweep"
    if len(name) > 110:
        name = f"{name[:96]}~{hashlib.sha1(name.encode()).hexdigest()[:12]}"
    name = name.replace("'", "").replace('"', "").replace("\\", "")
    return [*argv, f"sweep_name='{name}'"]
