"""DDP through the real entry point: 2 CPU processes over gloo (trainer=ddp_sim), one test per
LightningModule. Both ranks finish, rank 0 alone writes the summary, and the logged test
accuracy equals a single-process evaluation of the same checkpoint."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import pytorch_lightning as pl
from omegaconf import OmegaConf

from kmexp.config import register_resolvers
from kmexp.distributed import split_global_batch
from kmexp.errors import ConfigError
from tests.conftest import run_cli, summaries

pytestmark = pytest.mark.slow
register_resolvers()

# Tiny and fast on 2 cores: one thread per rank, 2 train steps, full (small) test sets.
DDP = ["trainer=ddp_sim", "logger=csv", "callbacks.progress_bar=none", "trainer.max_epochs=1",
       "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0"]


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def run_ddp(args: list[str], tmp_path: Path) -> tuple[dict, Path, str]:
    proc = run_cli([*DDP, *args], tmp_path, timeout=600)
    [s] = summaries(tmp_path)  # written once, by rank 0
    run_dir = Path(s["run_dir"])
    assert proc.stdout.count("[kmexp] finished:") == 1
    assert s["status"] == "finished" and s["world_size"] == 2
    # both ranks trained and tested to the end (rank 1 logs to Hydra's train_ddp_process_1.log)
    assert "rank 0 of 2 finished" in (run_dir / "train.log").read_text()
    assert "rank 1 of 2 finished" in (run_dir / "train_ddp_process_1.log").read_text()
    return s, run_dir, proc.stdout


def single_process_test(module_cls, summary: dict, run_dir: Path) -> dict:
    """Evaluate the run's last checkpoint in this (single) process, on the same data."""
    module = module_cls.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    cfg = OmegaConf.create(summary["config"])
    datamodule = hydra.utils.instantiate(cfg.dataset.datamodule)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=run_dir / "single_process")
    return trainer.test(module, datamodule=datamodule, verbose=False)[0]


def test_classification_ddp_matches_single_process(tmp_path):
    from kmexp.lit.classification import ClassificationModule

    # 1197 training digits, global batch 32 -> 16 per rank; 300 test digits split 150/150
    s, run_dir, _ = run_ddp(["backbone=resnet20", "method=km"], tmp_path)
    assert s["config"]["dataset"]["datamodule"]["batch_size"] == 32  # the config keeps the global batch
    assert (run_dir / "patch.safetensors").is_file()
    assert s["provenance/git_commit"] and s["provenance/torch"] and s["provenance/launcher"] == "basic"
    single = single_process_test(ClassificationModule, s, run_dir)
    assert s["test/acc"] == pytest.approx(single["test/acc"], abs=1e-6)
    assert s["test/loss"] == pytest.approx(single["test/loss"], rel=1e-4)
    # the same job on one process writes the same summary fields
    run_cli([a for a in DDP if a != "trainer=ddp_sim"] + ["backbone=resnet20", "method=km"], tmp_path / "one")
    [one] = summaries(tmp_path / "one")
    assert one["world_size"] == 1 and set(one) == set(s)


def test_fewshot_ddp_matches_single_process(tmp_path):
    pytest.importorskip("learn2learn")
    from kmexp.lit.fewshot import FewShotModule

    s, run_dir, _ = run_ddp([
        "experiment=glyphs/fewshot", "method=km", "backbone.hidden=8", "dataset.datamodule.split=[10,5,5]",
        "meta.iterations_per_epoch=2", "meta.meta_batch_size=2", "meta.num_val_tasks=2",
        "meta.num_test_tasks=5", "meta.query=2", "meta.test_inner_steps=1",
    ], tmp_path)
    assert s["test/num_tasks"] == 5  # 3 + 2 tasks on the two ranks, none repeated
    single = single_process_test(FewShotModule, s, run_dir)
    assert single["test/num_tasks"] == 5
    assert s["test/acc"] == pytest.approx(single["test/acc"], abs=1e-6)


def test_multitask_ddp_matches_single_process(tmp_path):
    from kmexp.lit.multitask import MultiTaskModule

    s, run_dir, _ = run_ddp([
        "lightning_module=multitask", "dataset=multitask", "method=full", "backbone=resnet20",
        "+multitask=sb_patch_last_layer", "+dataset@multitask.tasks.digits.dataset=digits",
        "+dataset@multitask.tasks.permuted.dataset=digits", "+multitask.tasks.permuted.relabel_seed=1",
    ], tmp_path)
    assert (run_dir / "task_patches" / "permuted.safetensors").is_file()
    single = single_process_test(MultiTaskModule, s, run_dir)
    for key in ("test/acc", "test/digits/acc", "test/permuted/acc"):
        assert s[key] == pytest.approx(single[key], abs=1e-6)


class _Data:
    batch_size, eval_batch_size = 32, 100


def test_global_batch_is_split_and_must_divide():
    dm = _Data()
    assert split_global_batch(dm, 4) == {"batch_size": 8}
    assert (dm.batch_size, dm.eval_batch_size) == (8, 25)
    odd = _Data()
    odd.batch_size = 30
    with pytest.raises(ConfigError, match=r"batch_size=30 is the global batch and must divide by the 4 devices"):
        split_global_batch(odd, 4)
