"""Shared test helpers: tiny model configs and a runner for the real CLI entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

METHODS = {
    "full": (["convolution", "implicit", "classifier"], []),
    "bl": (["implicit", "classifier"], []),
    "km": (["implicit", "explicit", "classifier"], ["kernel_modulator"]),
    "tkm1": (["explicit", "classifier"], ["kernel_modulator"]),
    "tbl1": (["classifier"], []),
}

# Overrides that make any run tiny: small batches, two steps, CSV logging only.
TINY = [
    "logger=csv",
    "callbacks.progress_bar=none",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.num_sanity_val_steps=0",
    "dataset.datamodule.batch_size=16",
]


def model_cfg(method: str = "km", backbone: str = "resnet32", num_classes: int = 10, **extra) -> dict:
    comps, inject = METHODS[method]
    cfg = {
        "backbone": {"name": backbone},
        "num_classes": num_classes,
        "method": {"name": method, "components": comps, "inject": inject},
        "modulator": {"activation": "tanh", "init": "default", "depth": 2, "init_std": 1e-3},
        "sharing": {"strategy": "none"},
    }
    cfg.update(extra)
    return cfg


def run_cli(args: list[str], log_dir: Path, module: str = "kmexp.train", timeout: int = 600,
            check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, KMEXP_LOGS=str(log_dir), WANDB_MODE="disabled", HYDRA_FULL_ERROR="0",
               PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def summaries(log_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(log_dir).rglob("summary.json"))]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def cell(table_id: str, row: str) -> list[str]:
    """The overrides that train one table cell: ``experiment=<preset>`` and the row's overrides."""
    from kmexp.reporting.tables import TABLES

    [r] = [r for r in TABLES[table_id].rows if r.key == row]
    return [f"experiment={r.experiment}", *r.overrides]
