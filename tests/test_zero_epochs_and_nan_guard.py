"""Zero-epoch runs (evaluate only) and the deferred NaN guard of kmexp/lit/base.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from kmexp.errors import NonFiniteLossError
from kmexp.lit.classification import ClassificationModule
from kmexp.optim import build_scheduler
from tests.conftest import TINY, model_cfg, run_cli, summaries

OPTIM = {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "scheduler": {"name": "cosine"}}


def test_cosine_schedule_of_zero_epochs_is_built():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = build_scheduler(opt, OPTIM, SimpleNamespace(max_epochs=0))
    assert isinstance(sched["scheduler"], torch.optim.lr_scheduler.CosineAnnealingLR)
    assert opt.param_groups[0]["lr"] == 0.1
    with pytest.raises(Exception, match="finite trainer.max_epochs"):
        build_scheduler(opt, OPTIM, SimpleNamespace(max_epochs=-1))


@pytest.mark.slow
def test_max_epochs_zero_only_evaluates(tmp_path):
    run_cli([*TINY, "backbone=resnet20", "optim=sgd_short", "trainer.max_epochs=0", "export_patch=false"], tmp_path)
    [s] = summaries(tmp_path)
    assert s["status"] == "finished" and s["global_steps"] == 0 and s["epochs"] == 0
    assert 0.0 <= s["test/acc"] <= 1.0


def _module(every):
    m = ClassificationModule(model=model_cfg("km", backbone="resnet20"), optim=OPTIM)
    m.nan_check_every_n_steps = every
    return m


def test_nan_flag_is_read_back_only_every_n_checks(monkeypatch):
    m = _module(every=4)
    finite, nan = torch.tensor(1.0), torch.tensor(float("nan"))
    reads = []
    original = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda t: reads.append(1) or original(t))
    m.check_finite(finite)
    m.check_finite(nan)  # flagged, not yet read
    m.check_finite(finite)
    assert reads == []  # no host read on the first three checks
    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss \(nan\) at step 0"):
        m.check_finite(finite)  # the fourth check reads the flag back


def test_pending_nan_is_raised_before_a_checkpoint_is_saved():
    m = _module(every=1000)
    m.check_finite(torch.tensor(float("inf")), "training loss of task 'a'")
    with pytest.raises(NonFiniteLossError, match="task 'a'.*inf"):
        m.on_save_checkpoint({})


def test_every_check_reads_on_cpu_by_default():
    m = _module(every=None)
    with pytest.raises(NonFiniteLossError, match="non-finite training loss"):
        m.check_finite(torch.tensor(float("nan")))


@pytest.mark.slow
def test_deferred_nan_check_still_ends_the_run_with_the_error_line(tmp_path):
    proc = run_cli([*TINY, "backbone=resnet20", "method=full", "optim.lr=1e30", "trainer.limit_train_batches=6",
                    "nan_check_every_n_steps=4", "export_patch=false"], tmp_path, check=False)
    assert proc.returncode == 1
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error: non-finite training loss")]
    assert len(error_lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    [s] = summaries(tmp_path)
    assert s["status"] == "failed"
