"""The GPU benchmark's Table I arithmetic and its loaders (scripts/bench_gpu.py; README, Benchmarks)."""

from __future__ import annotations

from argparse import Namespace

import pytest
import torch

from tests.conftest import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_gpu")


def test_table1_hours_follow_from_the_throughputs(bench):
    args = Namespace(eval_speedup=2.0, loader_workers=4, runs_per_gpu=4, packing_efficiency=0.5)
    lines = bench.table1_prediction(step_ips=20_000, loader_ips_per_core=2_500, args=args)
    # 30 x 200 x 50k = 3e8 training images + 30 x 200 x 10k / 2 = 3e7 evaluation equivalents
    assert "3.00e+08 training images" in lines[0]
    assert lines[1].endswith(f"= {3.3e8 / 10_000 / 3600:.2f} GPU-hours")  # loader-bound: 4 x 2,500 img/s
    assert lines[2].endswith(f"= {3.3e8 / 20_000 / 3600:.2f} GPU-hours")
    assert lines[3].endswith(f"= {3.3e8 / 40_000 / 3600:.2f} GPU-hours")  # 4 runs x 0.5


def test_both_loaders_read_the_same_fake_cifar(bench, tmp_path, monkeypatch):
    bench.write_fake_cifar10(tmp_path, 100, 20)
    cpu = torch.device("cpu")
    tv = bench.cifar_datamodule(tmp_path, False, 0, cpu)
    dev = bench.cifar_datamodule(tmp_path, True, 0, cpu)
    assert not tv.uses_device_data() and dev.uses_device_data()
    assert bench.images_per_second(tv.train_dataloader(), cpu) > 0
    batches = list(dev.train_dataloader())
    assert sum(len(x) for x, _ in batches) == 100 and batches[0][0].shape[1:] == (3, 32, 32)
