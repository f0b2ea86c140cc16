"""scripts/gpu_checks.sh, the one prepared run of every GPU measurement: it refuses a machine
without CUDA cleanly, and every flag and override it passes exists (so a GPU session is not
spent on a typo)."""

import os
import re
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "gpu_checks.sh"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_a_gpu_it_stops_with_one_clear_line_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(SCRIPT), str(out)], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PY=sys.executable))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: no CUDA device visible to {sys.executable}; run scripts/gpu_checks.sh on a GPU machine"]
    assert not out.exists()


def _steps() -> dict[str, list[str]]:
    text = SCRIPT.read_text().replace("\\\n", " ")
    steps = {}
    for line in text.splitlines():
        m = re.match(r'step (\w+) \d+ "\$PY" (.*)', line.strip())
        if m:
            steps[m.group(1)] = m.group(2).replace('"', "").split()
    return steps


def test_every_bench_flag_it_passes_exists():
    steps = _steps()
    assert set(steps) == {"bench_gpu", "bench_km_cost", "bench_fewshot", "train_gpu"}
    for name in ("bench_gpu", "bench_km_cost", "bench_fewshot"):
        script, *args = steps[name]
        shown = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True,
                               timeout=120).stdout
        assert [a for a in args if a.startswith("--") and a not in shown] == [], name


def test_its_training_job_composes_and_validates():
    from hydra import compose, initialize_config_dir

    from kmexp.config import register_resolvers
    from kmexp.resources import config_dir
    from kmexp.validate import validate_config

    steps = _steps()["train_gpu"]
    assert steps[:2] == ["-m", "kmexp.train"]
    overrides = [o.replace("$OUT", "/tmp/out") for o in steps[2:]]
    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    validate_config(cfg, hardware=False)
    assert cfg.compile is True and "bf16" in str(cfg.trainer.precision)
