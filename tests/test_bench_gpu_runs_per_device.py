"""scripts/bench_gpu.py, 1 vs k runs per device and the Table I arithmetic with k runs per GPU
(issue 17 items 3 and 4)."""

from __future__ import annotations

from argparse import Namespace

import pytest
import torch

from tests.conftest import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_gpu", "bench_gpu_k")


def test_runs_per_gpu_hour_follow_from_the_throughputs(bench):
    args = Namespace(eval_speedup=2.0, loader_workers=4, runs_per_gpu=4, packing_efficiency=0.5)
    lines = bench.table1_prediction(step_ips=20_000, loader_ips_per_core=2_500, args=args)
    per_run = 200 * (50_000 + 10_000 / 2)  # 1.1e7 training-image equivalents per run
    assert bench.table1_images_per_run(args) == per_run
    assert "(20,000 x 4 x 0.5)" in lines[3]
    assert lines[4] == (f"  runs per GPU-hour: 1 run per GPU 20,000 x 3600 / {per_run:.3e} = {20_000 * 3600 / per_run:.2f}; "
                        f"4 per GPU 40,000 x 3600 / {per_run:.3e} = {40_000 * 3600 / per_run:.2f}")


def test_k_processes_run_together_and_report_aggregate_throughput(bench):
    one = bench.concurrent_steps(1, steps=1, threads=1, device=torch.device("cpu"))
    two = bench.concurrent_steps(2, steps=1, threads=1, device=torch.device("cpu"))
    assert one > 0 and two > 0


def test_the_section_reports_gain_and_efficiency(bench, monkeypatch):
    rates = {1: 100.0, 3: 240.0}
    monkeypatch.setattr(bench, "concurrent_steps", lambda k, steps, threads, device: rates[k])
    args = Namespace(runs_per_gpu=3, workers=6, steps=1, rounds=1, eval_speedup=3.0)
    r = bench.bench_runs_per_device(args, torch.device("cpu"))
    assert r["threads"] == {"1": 6, "3": 2}  # same thread budget
    assert r["gain"] == pytest.approx(2.4) and r["efficiency"] == pytest.approx(0.8)
    assert r["runs_per_hour"]["3"] == pytest.approx(240 * 3600 / (200 * (50_000 + 10_000 / 3)))


def test_the_batched_ensemble_side_runs_and_is_compared(bench, monkeypatch):
    """The ensemble side of the comparison: one process, k runs stacked; it runs and reports."""
    assert bench.ensemble_steps(2, steps=1, device=torch.device("cpu")) > 0
    monkeypatch.setattr(bench, "concurrent_steps", lambda k, steps, threads, device: 100.0 * k)
    monkeypatch.setattr(bench, "ensemble_steps", lambda k, steps, device: 150.0)
    args = Namespace(runs_per_gpu=2, workers=2, steps=1, rounds=1, eval_speedup=3.0, ensemble=True)
    r = bench.bench_runs_per_device(args, torch.device("cpu"))
    assert r["ensemble"]["gain"] == pytest.approx(1.5) and r["gain"] == pytest.approx(2.0)
