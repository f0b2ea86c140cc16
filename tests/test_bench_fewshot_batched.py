"""scripts/bench_fewshot.py --batched: the batched-tasks loop is checked against the per-task
loop before it is timed, and the script reports it (issue 17 item 8)."""

from __future__ import annotations

import pytest

from tests.conftest import load_script

pytest.importorskip("learn2learn")



@pytest.fixture(scope="module")
def bench():
    return load_script("bench_fewshot", "bench_fewshot_batched")


def test_batched_loop_has_the_same_meta_gradient_as_learn2learn_and_the_per_task_loop(bench):
    nets = [bench.build_net("maml", 3, 4) for _ in range(3)]
    for net in nets[1:]:
        net.load_state_dict(nets[0].state_dict())
    inner = ["convolution", "implicit", "classifier"]
    ours = bench.KmexpLoop(nets[0], inner, lr=0.1, steps=2)
    batched = bench.KmexpBatchedLoop(nets[1], inner, lr=0.1, steps=2)
    theirs = bench.Learn2LearnLoop(nets[2], lr=0.1, steps=2)
    tasks = bench.make_tasks(3, ways=3, shots=1, query=2)
    assert bench.same_meta_gradient(ours, batched, tasks) < 1e-5
    assert bench.same_meta_gradient_float64(ours, batched, tasks) < 1e-9
    assert bench.same_meta_gradient(batched, theirs, tasks) < 1e-5
    # a different step size is a different meta-gradient: the comparison can fail
    assert bench.same_meta_gradient(bench.KmexpBatchedLoop(nets[1], inner, lr=0.3, steps=2), theirs, tasks) > 1e-4


def test_benchmark_reports_the_batched_path(bench, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["bench_fewshot.py", "--ways", "3", "--hidden", "4", "--steps", "1",
                                     "--meta-batch", "2", "--iters", "1", "--repeats", "1", "--batched"])
    bench.main()
    out = capsys.readouterr().out
    assert "max |meta-gradient difference| kmexp vs kmexp batched tasks (torch.func.vmap) (float64)" in out
    assert "speed-up kmexp batched tasks / learn2learn:" in out
    assert out.count("tasks/s") == 3
