"""What code, libraries and launcher produced a run (recorded in every ``summary.json``).

A table aggregated from runs of different code versions can then say so
(:func:`kmexp.results.aggregate` warns when one table mixes commits).
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=1)
def git_state(repo: Path = REPO) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout the code runs from; (None, None) outside a git checkout.
    Dirty means tracked files differ from the commit (untracked files do not count)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit or None, bool(status.strip())


def job_id() -> str | None:
    """The scheduler's id of this job: SLURM array job_task, plain SLURM job, or a submitit local job."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID', '0')}"
    return env.get("SLURM_JOB_ID") or env.get("SUBMITIT_LOCAL_JOB_ID") or None


def launcher() -> str:
    """The Hydra launcher that ran the job (``basic``, ``submitit_slurm`` ...), or
    ``kmexp.reproduce/<launcher>`` for runs submitted by ``kmexp.reproduce --launcher slurm|submitit_local``."""
    if os.environ.get("KMEXP_LAUNCHER"):
        return os.environ["KMEXP_LAUNCHER"]
    try:
        from hydra.core.hydra_config import HydraConfig

        choice = HydraConfig.get().runtime.choices.get("hydra/launcher")
        return str(choice) if choice else "basic"
    except Exception:  # noqa: BLE001 - not inside a Hydra job
        return "python"


def provenance() -> dict:
    """Flat ``provenance/...`` fields for summary.json."""
    import lightning_fabric
    import pytorch_lightning
    import torch

    import kmexp

    commit, dirty = git_state()
    return {
        "provenance/git_commit": commit,
        "provenance/git_dirty": dirty,
        "provenance/kmexp": kmexp.__version__,
        "provenance/torch": torch.__version__,
        "provenance/lightning": pytorch_lightning.__version__,
        "provenance/lightning_fabric": lightning_fabric.__version__,
        "provenance/launcher": launcher(),
        "provenance/job_id": job_id(),
    }
