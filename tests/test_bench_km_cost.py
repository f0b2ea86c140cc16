"""scripts/bench_km_cost.py (README, Benchmarks: KM's own cost on ResNet-50) on a tiny input."""

from __future__ import annotations

import torch

from kmexp.modulation import KernelModulator
from tests.conftest import load_script


def _load():
    return load_script("bench_km_cost")


def test_three_variants_compute_the_same_network_and_report_their_ratios():
    bench = _load()
    cpu = torch.device("cpu")
    full, km, rows = (bench.make(k, cpu) for k in ("full", "km", "km-rows"))
    def trainable(m):
        return sum(p.numel() for p in m.parameters() if p.requires_grad)

    assert trainable(full) > 20 * trainable(km)  # 23.9 M vs 0.46 M (Table II: TBL-2 vs TKM-2 on Cars)
    mods = [m for m in rows.modules() if isinstance(m, KernelModulator)]
    assert len(mods) == 53 and all(m.forward.__func__ is bench.modulate_rows for m in mods)  # ResNet-50: 53 convolutions
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(km.eval()(x), rows.eval()(x), atol=1e-5, rtol=1e-4)

    r = bench.bench_setting(32, 2, rounds=1, device=cpu, clock=bench.time.process_time)
    assert set(r["step_s"]) == {"full", "km", "km-rows"} and all(t > 0 for t in r["step_s"].values())
    assert r["km_over_full"] == r["step_s"]["km"] / r["step_s"]["full"]
    assert r["modulators_speedup"] == r["modulators_s"]["km-rows"] / r["modulators_s"]["km"]
    assert r["target"] is None and bench.TARGETS[(224, 8)] == 1.03 and bench.TARGETS[(64, 16)] == 1.10
