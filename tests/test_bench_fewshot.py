"""The few-shot benchmark compares like with like (scripts/bench_fewshot.py; README, Benchmarks)."""

from __future__ import annotations

import pytest

from tests.conftest import load_script

pytest.importorskip("learn2learn")



@pytest.fixture(scope="module")
def bench():
    return load_script("bench_fewshot")


@pytest.fixture
def loops(bench):
    ours_net, theirs_net = bench.build_net("maml", 3, 4), bench.build_net("maml", 3, 4)
    theirs_net.load_state_dict(ours_net.state_dict())
    ours = bench.KmexpLoop(ours_net, ["convolution", "implicit", "classifier"], lr=0.1, steps=2)
    theirs = bench.Learn2LearnLoop(theirs_net, lr=0.1, steps=2)
    return ours, theirs, bench.make_tasks(2, ways=3, shots=1, query=1)


def test_both_loops_compute_the_same_second_order_meta_gradient(bench, loops):
    ours, theirs, tasks = loops
    assert bench.same_meta_gradient(ours, theirs, tasks) < 1e-5


def test_both_loops_call_the_same_convolution_kernels(bench, loops):
    ours, theirs, tasks = loops
    (ours_calls, ours_share), (theirs_calls, theirs_share) = (bench.kernel_profile(loop, tasks) for loop in (ours, theirs))
    assert ours_calls == theirs_calls > 0
    assert 0 < ours_share < 1 and 0 < theirs_share < 1


def test_benchmark_runs_end_to_end(bench, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["bench_fewshot.py", "--ways", "3", "--hidden", "4", "--steps", "1",
                                     "--meta-batch", "2", "--iters", "1", "--repeats", "1", "--profile"])
    bench.main()
    out = capsys.readouterr().out
    assert "speed-up kmexp / learn2learn:" in out
    assert out.count("convolution kernel calls per task") == 2
