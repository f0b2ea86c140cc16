"""Transfer learning through the real entry point: ResNet-50, random init, tiny inputs, one step.

ResNet-50 is heavy for a CPU test, so every run is one training step at batch 2 on
32x32 images, and the six methods share one Hydra multirun (one process).
"""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, ROWS, cell, run_cli, summaries
from tests.transfer_fakes import write_cars

pytestmark = pytest.mark.slow

ONE_STEP = [
    "logger=csv",
    "callbacks.progress_bar=none",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.num_sanity_val_steps=0",
    "dataset.datamodule.batch_size=2",
]
# trainable parameters with a 10-class classifier (2,048 x 10 + 10 = 20,490), per method (paper row)
TRAINABLE_DIGITS = {"last_layer": 20_490, "km": 81_076, "full": 23_528_522, "bl": 73_610, "tinytl": 7_510_186}
TKM1_DIGITS = 27_956  # km with method.components=[explicit,classifier]


def run_dirs(log_dir: Path) -> list[Path]:
    return sorted(p.parent for p in Path(log_dir).rglob("summary.json"))


def test_every_transfer_method_trains_a_resnet50(tmp_path):
    methods = ",".join(TRAINABLE_DIGITS)
    common = ["backbone=resnet50_gn", "backbone.pretrained=false", "optim=adam_tinytl", "dataset=digits", *ONE_STEP]
    run_cli(["-m", f"method={methods}", *common], tmp_path / "methods", timeout=1500)
    run_cli([*ROWS["tkm1"], *common], tmp_path / "tkm1", timeout=600)
    [tkm1] = summaries(tmp_path / "tkm1")
    assert tkm1["params/trainable"] == TKM1_DIGITS and tkm1["components"] == ["explicit", "classifier"]
    runs = {s["method"]: s for s in summaries(tmp_path / "methods")}
    assert sorted(runs) == sorted(TRAINABLE_DIGITS)
    for method, s in runs.items():
        assert s["status"] == "finished" and s["backbone"] == "resnet50" and s["global_steps"] == 1
        assert s["params/trainable"] == TRAINABLE_DIGITS[method]
        assert 0.0 <= s["test/acc"] <= 1.0
        assert s["config"]["backbone"]["norm"] == "group"
        assert s["patch/bytes"] > 4 * TRAINABLE_DIGITS[method]


def test_preset_on_an_on_disk_dataset_then_patch_storage(tmp_path):
    write_cars(tmp_path / "data", counts={"train": 3, "test": 2})
    run_cli([*cell("table2_cars", "tkm2"), "backbone.pretrained=false", f"paths.data_dir={tmp_path / 'data'}",
             "dataset.datamodule.image_size=32", "dataset.datamodule.num_workers=0",
             "dataset.datamodule.eval_batch_size=2", *ONE_STEP], tmp_path / "logs")
    [s] = summaries(tmp_path / "logs")
    assert (s["status"], s["experiment"], s["dataset"], s["method"]) == ("finished", "transfer", "cars", "km")
    assert s["params/trainable"] == 462_190
    assert s["config"]["optim"]["name"] == "adam" and s["config"]["dataset"]["datamodule"]["label_smoothing"] == 0.7

    [run_dir] = run_dirs(tmp_path / "logs")
    proc = subprocess.run([sys.executable, "-m", "kmexp.storage", str(run_dir), "--json", str(tmp_path / "storage.json")],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| km | cars | 462,190 | 1.85 | 95.65 | 1.93% |" in proc.stdout
    assert "34.1x" in proc.stdout  # 100 tasks: base + 100 patches vs 100 networks (patch format 2)


def test_missing_pretrained_weights_stop_with_one_message(tmp_path, monkeypatch):
    env_home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(env_home))  # an empty hub cache
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))  # an empty Hugging Face cache
    proc = run_cli([*cell("table2_flowers", "tkm2"), *ONE_STEP], tmp_path, check=False)
    assert proc.returncode == 1
    assert f"{tmp_path}/hf/models--timm--resnet50_gn.a1h_in1k/snapshots/<revision>/model.safetensors" in proc.stderr
    assert "backbone.pretrained=false" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_dataset_stops_with_one_message(tmp_path):
    proc = run_cli([*cell("fig4_cars", "tbl1"), "backbone.pretrained=false", f"paths.data_dir={tmp_path / 'none'}",
                    "dataset.datamodule.num_workers=0", *ONE_STEP], tmp_path, check=False)
    assert proc.returncode == 1
    assert f"{tmp_path / 'none' / 'stanford_cars'}" in proc.stderr and "issues/7545" in proc.stderr
    assert "Traceback" not in proc.stderr
