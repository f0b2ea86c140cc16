"""Tiny runs through the real entry point (python -m kmexp.train) on the bundled digits."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from safetensors import safe_open

from tests.conftest import METHODS, REPO, TINY, row, run_cli, summaries

pytestmark = pytest.mark.slow
SMALL = [*TINY, "backbone=resnet20"]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_tiny_run_per_method_writes_summary_checkpoints_and_patch(tmp_path, method):
    proc = run_cli([*row(method), "seed=3", *SMALL], tmp_path)
    [s] = summaries(tmp_path)
    run_dir = tmp_path / "train" / s["run_dir"].split("/train/")[-1]
    name = METHODS[method][1]["name"]  # a row label (tkm1, tbl1) runs as its method
    assert s["status"] == "finished" and s["method"] == name and s["seed"] == 3
    assert s["components"] == METHODS[method][0]
    assert (s["backbone"], s["dataset"]) == ("resnet20", "digits")
    assert 0.0 <= s["test/acc"] <= 1.0
    for key in ("params/total", "params/trainable", "params/trainable_pct", "test/recovered_accuracy_ratio"):
        assert key in s
    assert s["test/recovered_accuracy_ratio"] is None  # no reference accuracy for digits
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert any(p.name.startswith("best") for p in (run_dir / "checkpoints").iterdir())
    assert (run_dir / "csv" / "metrics.csv").is_file()
    with safe_open(str(run_dir / "patch.safetensors"), framework="pt") as f:
        assert json.loads(f.metadata()["kmexp"])["method"] == name
    assert "summary: " in proc.stdout
    # checkpoints hold plain containers only: they load with weights_only=True and rebuild the module
    import torch

    from kmexp.lit.classification import ClassificationModule

    torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    module = ClassificationModule.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert sum(p.numel() for p in module.parameters() if p.requires_grad) == s["params/trainable"]


def test_recovered_accuracy_ratio_uses_the_reference(tmp_path):
    run_cli(["method=bl", "reference_accuracy=0.5", *SMALL], tmp_path)
    [s] = summaries(tmp_path)
    assert s["test/recovered_accuracy_ratio"] == pytest.approx(s["test/acc"] / 0.5)


def test_interrupted_run_resumes_from_last_checkpoint(tmp_path):
    args = ["method=km", *SMALL, "trainer.max_epochs=4", "trainer.limit_train_batches=1"]
    env = dict(os.environ, KMEXP_LOGS=str(tmp_path), WANDB_MODE="disabled")
    proc = subprocess.Popen([sys.executable, "-m", "kmexp.train", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list(tmp_path.rglob("last.ckpt")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # a preempted node: no clean shutdown
    proc.wait()
    assert list(tmp_path.rglob("last.ckpt")), "no checkpoint appeared"
    assert not summaries(tmp_path)

    refused = run_cli([*args, "resume=false"], tmp_path, check=False)  # resume=false: refuse, keep everything
    assert refused.returncode == 1 and "resume=true" in refused.stderr
    assert list(tmp_path.rglob("last.ckpt"))

    resumed = run_cli(args, tmp_path)  # the same command resumes by itself (tests/test_interruptions.py)
    [s] = summaries(tmp_path)
    assert s["status"] == "finished" and s["epochs"] == 4
    assert s["global_steps"] == 4  # one step per epoch: nothing was repeated or lost
    assert "resuming from" in resumed.stdout + resumed.stderr


def test_nan_loss_stops_with_a_clear_error(tmp_path):
    proc = run_cli(["method=full", *SMALL, "optim.lr=1e30", "trainer.limit_train_batches=4"], tmp_path, check=False)
    assert proc.returncode == 1
    assert "non-finite training loss" in proc.stderr and "Traceback" not in proc.stderr


def test_multirun_through_submitit_local(tmp_path):
    run_cli(["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "method=bl,km", *SMALL],
            tmp_path, timeout=900)
    runs = summaries(tmp_path)
    assert sorted(s["method"] for s in runs) == ["bl", "km"]
    assert all(s["status"] == "finished" for s in runs)
