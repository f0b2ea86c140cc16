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

# Paper rows -> (trainable components, method config). TKM-1 and TBL-1 are rows, not methods:
# a method plus overrides (kmexp/methods/__init__.py).
METHODS = {
    "full": (["convolution", "implicit", "classifier"], {"name": "full"}),
    "bl": (["implicit", "classifier"], {"name": "bl"}),
    "km": (["implicit", "explicit", "classifier"], {"name": "km"}),
    "tkm1": (["explicit", "classifier"], {"name": "km", "components": ["explicit", "classifier"]}),
    "tbl1": (["classifier"], {"name": "last_layer", "norm_stats": "update"}),
}

# Former method names that were paper-row labels -> the method + overrides that replace them.
ROWS = {
    "tkm1": ["method=km", "method.components=[explicit,classifier]"],
    "tkm2": ["method=km"],
    "tbl2": ["method=full"],
    "nc": ["method=bl"],
    "tbl1": ["method=last_layer", "method.norm_stats=update"],
    "sb_patch_last": ["method=sb_patch", "method.train_classifier=true"],
    "dw_patch_last": ["method=dw_patch", "method.train_classifier=true"],
    "last_layer_bn_stats": ["method=last_layer", "method.norm_stats=epoch_average"],
    "rbd": ["method=full", "optim=rbd"],
}


def row(name: str) -> list[str]:
    """The overrides of a table row's method (a method name or a former row label)."""
    return ROWS.get(name, [f"method={name}"])


def method_config(name: str) -> dict:
    """configs/method/<yaml>.yaml with a row's method overrides applied (``row(name)``)."""
    import yaml
    from omegaconf import OmegaConf

    cfg = None
    for override in row(name):
        key, value = override.split("=", 1)
        if key == "method":
            cfg = OmegaConf.to_container(OmegaConf.load(REPO / "kmexp" / "configs" / "method" / f"{value}.yaml"))
        elif key.startswith("method."):
            cfg[key.removeprefix("method.")] = yaml.safe_load(value.replace(",", ", "))
    return cfg


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
    cfg = {
        "backbone": {"name": backbone},
        "num_classes": num_classes,
        "method": dict(METHODS[method][1]),
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


def load_script(name: str, module_name: str | None = None):
    """``scripts/<name>.py`` loaded as a module (the benchmark scripts are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(module_name or name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
