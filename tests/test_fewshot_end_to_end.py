"""Tiny episodic runs through the real entry point (python -m kmexp.train) on the bundled glyphs,
and the Table III presets (KM Sec. IV-C)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from kmexp.config import register_resolvers
from kmexp.methods import parse_method
from tests.conftest import REPO, run_cli, summaries

pytest.importorskip("learn2learn")
register_resolvers()

# Overrides that make a few-shot run tiny: 8 filters, 2 outer steps, 4 test tasks.
FEWSHOT_TINY = [
    "logger=csv", "callbacks.progress_bar=none", "trainer.accelerator=cpu", "trainer.max_epochs=1",
    "trainer.num_sanity_val_steps=0", "backbone.hidden=8", "dataset.datamodule.split=[10,5,5]",
    "meta.iterations_per_epoch=2", "meta.meta_batch_size=2", "meta.num_val_tasks=2", "meta.num_test_tasks=4",
    "meta.query=2", "meta.test_inner_steps=2",
]
OUTER = ["convolution", "implicit", "explicit", "classifier"]
# conv4_omniglot with 8 filters, 5-way: convs 80 + 3 x 584, batch norm 4 x 16, classifier 45;
# kernel modulators 4 x 162.
TINY_COUNTS = {  # method: (inner loop, outer loop)
    "maml": (1_941, 1_941),
    "anil": (45, 1_941),
    "km": (648 + 45, 1_941 + 648),
}
INNER = {"maml": ["convolution", "implicit", "classifier"], "anil": ["classifier"], "km": ["explicit", "classifier"]}


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    # tiny ops on a shared 2-core machine: intra-op threads only add contention
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.mark.slow
def test_tiny_episodic_run_per_method_through_the_entry_point(tmp_path):
    # a multirun composes the non-swept overrides before the presets: name the groups they set
    groups = ["dataset=fewshot_glyphs", "backbone=conv4_omniglot"]
    run_cli(["-m", "experiment=glyphs/fewshot", "method=maml,anil,km", "seed=1", *groups, *FEWSHOT_TINY], tmp_path,
            timeout=900)
    runs = {s["method"]: s for s in summaries(tmp_path)}
    assert sorted(runs) == ["anil", "km", "maml"]
    for method, s in runs.items():
        assert s["status"] == "finished" and s["dataset"] == "fewshot_glyphs" and s["seed"] == 1
        assert s["experiment"] == "glyphs/fewshot"  # the chosen preset, derived, never typed
        assert 0.0 <= s["test/acc"] <= 1.0 and s["test/acc_ci95"] >= 0.0
        assert s["test/num_tasks"] == 4.0 and s["global_steps"] == 2
        assert (s["params/inner_loop"], s["params/outer_loop"]) == TINY_COUNTS[method]
        assert s["params/trainable"] == s["params/total"] == TINY_COUNTS[method][1]
        assert s["components"] == OUTER and s["inner_components"] == INNER[method]
        assert (s["meta/ways"], s["meta/shots"], s["meta/first_order"]) == (5, 1, False)
    run_dir = Path(runs["km"]["run_dir"])
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "csv" / "metrics.csv").is_file()

    from kmexp.lit.fewshot import FewShotModule

    reloaded = FewShotModule.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert reloaded.inner.num_parameters == TINY_COUNTS["km"][0] and reloaded.meta.test_inner_steps == 2


@pytest.mark.slow
def test_missing_few_shot_data_gives_one_clear_error(tmp_path):
    data = tmp_path / "nodata"
    proc = run_cli(["experiment=table3/omniglot_20w1s", "method=maml", "dataset.datamodule.download=false",
                    f"paths.data_dir={data}", *FEWSHOT_TINY[:5]], tmp_path, check=False)
    assert proc.returncode == 1
    assert "omniglot-py" in proc.stderr and str(data) in proc.stderr
    assert "Traceback" not in proc.stderr


def compose_cfg(overrides):
    with initialize_config_dir(config_dir=str(REPO / "kmexp" / "configs"), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


# Finn et al. 2017 Sec. 5.2: (ways, shots, query, meta-batch, inner lr, train steps, test steps)
MAML_RECIPES = {
    "omniglot_20w1s": (20, 1, 1, 16, 0.1, 5, 5),
    "omniglot_20w5s": (20, 5, 5, 16, 0.1, 5, 5),
    "miniimagenet_5w1s": (5, 1, 15, 4, 0.01, 5, 10),
    "miniimagenet_5w5s": (5, 5, 15, 2, 0.01, 5, 10),
}


@pytest.mark.parametrize("method", sorted(INNER))
@pytest.mark.parametrize("column", sorted(MAML_RECIPES))
def test_table3_presets_follow_mamls_recipe(method, column):
    cfg = compose_cfg([f"experiment=table3/{column}", f"method={method}"])
    m = cfg.meta
    assert (m.ways, m.shots, m.query, m.meta_batch_size, m.inner_lr, m.inner_steps, m.test_inner_steps) \
        == MAML_RECIPES[column]
    assert m.test_inner_lr == m.inner_lr and m.first_order is False and m.num_test_tasks == 600
    assert cfg.lightning_module == "fewshot" and cfg.method.name == method
    assert list(parse_method(cfg.method).inner_components) == INNER[method] and list(m.outer_components) == OUTER
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.scheduler.name) == ("adam", 1e-3, "none")
    assert cfg.trainer.max_epochs * m.iterations_per_epoch == 60_000
    omniglot = column.startswith("omniglot")
    assert cfg.dataset.name == ("omniglot" if omniglot else "mini_imagenet")
    assert cfg.backbone.name == ("conv4_omniglot" if omniglot else "conv4_miniimagenet")
    assert cfg.model.num_classes == m.ways and cfg.dataset.datamodule.ways == m.ways
    if omniglot:
        assert cfg.dataset.datamodule.rotate and list(cfg.dataset.datamodule.split) == [1100, 100, 423]
    else:
        assert (cfg.trainer.gradient_clip_val, cfg.trainer.gradient_clip_algorithm) == (10, "value")
    for section in ("model", "meta", "dataset", "optim", "trainer"):  # interpolations resolve
        OmegaConf.to_container(cfg[section], resolve=True)
