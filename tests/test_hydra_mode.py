"""One composition per ``python -m kmexp.train`` run (kmexp/hydra_mode.py)."""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import yaml
from hydra._internal.hydra import Hydra

from kmexp.hydra_mode import compose_once
from kmexp.resources import config_dir
from tests.conftest import REPO

COUNTING_RUN = """
import runpy, sys
from hydra._internal.hydra import Hydra
calls = []
original = Hydra.compose_config
def counting(self, *args, **kwargs):
    calls.append(kwargs.get("run_mode"))
    return original(self, *args, **kwargs)
Hydra.compose_config = counting
sys.argv = ["kmexp.train", *sys.argv[1:]]
try:
    runpy.run_module("kmexp.train", run_name="__main__")
finally:
    print("COMPOSES", len(calls), file=sys.stderr)
"""


def _mode_keys(node, path=()) -> list[str]:
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            here = (*path, str(k))
            if here[-2:] == ("hydra", "mode"):
                found.append(".".join(here))
            found += _mode_keys(v, here)
    return found


def test_no_kmexp_config_sets_hydra_mode():
    """The premise of skipping Hydra's mode-only compose: it could only have returned None."""
    offenders = []
    for path in Path(config_dir()).rglob("*.yaml"):
        text = path.read_text()
        doc = yaml.safe_load(text) or {}
        offenders += [f"{path}: {k}" for k in _mode_keys(doc)]
        if "hydra.mode" in text:
            offenders.append(f"{path}: hydra.mode")
        if path.relative_to(config_dir()).parts[0] == "hydra" and isinstance(doc, dict) and "mode" in doc:
            offenders.append(f"{path}: mode")  # a hydra/ config group's keys live under hydra.
    assert offenders == []


def test_a_run_composes_its_configuration_once(tmp_path):
    env = dict(os.environ, KMEXP_LOGS=str(tmp_path), WANDB_MODE="disabled", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-c", COUNTING_RUN, "trainer.max_epochs=0", "trainer.limit_test_batches=1",
                           "logger=csv", "callbacks.progress_bar=none", "export_patch=false"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "COMPOSES 1" in proc.stderr, proc.stderr[-2000:]


def _hydra_with_search_path(*providers: str):
    path = SimpleNamespace(get_path=lambda: [SimpleNamespace(provider=p, path="x") for p in providers])
    return SimpleNamespace(config_loader=SimpleNamespace(get_search_path=lambda: path))


def test_hydra_decides_when_the_mode_may_come_from_elsewhere(monkeypatch):
    """Hydra's own (composing) answer when the command line sets hydra.mode or brings other configs."""
    seen = []
    monkeypatch.setattr(Hydra, "get_mode", lambda self, config_name, overrides: seen.append(overrides) or "asked")
    compose_once()
    ours = _hydra_with_search_path("hydra", "main", "schema")
    assert Hydra.get_mode(ours, "train", ["method=km"]) is None and seen == []
    assert Hydra.get_mode(ours, "train", ["method=km", "hydra.mode=MULTIRUN"]) == "asked"
    assert Hydra.get_mode(ours, "train", ["+hydra.mode=RUN"]) == "asked"
    assert Hydra.get_mode(ours, "train", ["hydra.searchpath=[file:///elsewhere]"]) == "asked"
    assert Hydra.get_mode(_hydra_with_search_path("hydra", "main", "command-line"), "train", []) == "asked"
    assert len(seen) == 4
    compose_once()  # idempotent: not wrapped twice
    assert Hydra.get_mode.__wrapped__.__name__ == "<lambda>"
