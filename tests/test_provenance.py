"""Provenance and W&B bookkeeping: code versions in summaries, sweep groups, attempt-based run
ids, learning-rate series named by parameter group."""

from __future__ import annotations

import re

from omegaconf import OmegaConf

from kmexp.config import _table_of
from kmexp.lit.classification import ClassificationModule
from kmexp.lr_logging import learning_rates
from kmexp.provenance import provenance
from kmexp.wandb_utils import run_id, with_sweep_name
from tests.conftest import model_cfg

OPTIM = {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "scheduler": {"name": "none"}}


def test_provenance_names_the_commit_and_the_versions(monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "7")
    p = provenance()
    assert re.fullmatch(r"[0-9a-f]{40}", p["provenance/git_commit"]) and isinstance(p["provenance/git_dirty"], bool)
    assert p["provenance/job_id"] == "4242_7"
    import pytorch_lightning
    import torch

    assert (p["provenance/torch"], p["provenance/lightning"]) == (torch.__version__, pytorch_lightning.__version__)


def test_a_command_line_sweep_gets_its_own_wandb_group():
    argv = ["kmexp.train", "-m", "method=full,bl,km", "seed=0,1", "hydra/launcher=local"]
    named = with_sweep_name(argv)
    assert named[-1] == "sweep_name='method=full,bl,km seed=0,1'"
    assert with_sweep_name(["kmexp.train", "method=km"]) == ["kmexp.train", "method=km"]  # no sweep
    assert _table_of(None, "train", "method=full,bl,km seed=0,1") == "method=full,bl,km seed=0,1"
    assert _table_of("table1/km", "train", "x") == "table1" and _table_of(None, "train", None) == "train"


def test_wandb_run_id_follows_configuration_and_attempt(tmp_path):
    cfg = OmegaConf.create({"method": {"name": "km"}, "seed": 0, "paths": {"log_dir": "x"}})
    run_dir = tmp_path / "run"
    first = run_id(cfg, run_dir, resuming=False)
    assert run_id(cfg, run_dir, resuming=True) == first  # a resumed run continues its W&B run
    assert run_id(OmegaConf.merge(cfg, {"paths": {"log_dir": "y"}}), run_dir, resuming=True) == first  # paths do not count
    assert run_id(OmegaConf.merge(cfg, {"seed": 1}), run_dir, resuming=True) != first  # another configuration
    (run_dir / ".kmexp_attempt").unlink()  # the directory was deleted: a new attempt, never the old run
    assert run_id(cfg, run_dir, resuming=True) != first


def test_learning_rates_are_named_by_parameter_group():
    module = ClassificationModule(model=model_cfg("km", backbone="resnet20"), optim=OPTIM)
    optimizer = module.configure_optimizers()
    assert sorted(g["name"] for g in optimizer.param_groups) == ["classifier", "explicit", "implicit"]
    assert learning_rates([optimizer]) == {"lr/implicit": 0.05, "lr/explicit": 0.05, "lr/classifier": 0.05}


def test_the_sweep_name_does_not_change_a_run_identity():
    from kmexp.reporting.runs import compose, run_identity

    plain = compose(["experiment=table1/cifar10", "method=bl"])
    named = compose(["experiment=table1/cifar10", "method=bl", "sweep_name='method=bl seed=0,1'"])
    assert named.sweep_name and run_identity(named) == run_identity(plain)
