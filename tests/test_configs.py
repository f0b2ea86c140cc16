"""Every experiment preset composes and builds; bad input fails with one clear message."""

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from kmexp.components import count_parameters
from kmexp.config import register_resolvers
from kmexp.methods import build_model, parse_method
from kmexp.validate import validate_config
from tests.conftest import REPO, ROWS, TINY, run_cli

CONFIGS = REPO / "configs"
EXPERIMENTS = sorted(str(p.relative_to(CONFIGS / "experiment").with_suffix("")) for p in (CONFIGS / "experiment").rglob("*.yaml"))
register_resolvers()


def former_row_overrides(overrides) -> list[str]:
    """Presets that still select a former row-label method (tkm1, tbl1, rbd, ...) get the
    method + overrides that replace it (tests/conftest.py ROWS). Scaffolding until every
    preset names a method; it changes nothing for a preset that does."""
    extra = []
    for o in overrides:
        if o.startswith("experiment="):
            text = (CONFIGS / "experiment" / f"{o.split('=', 1)[1]}.yaml").read_text()
            m = re.search(r"override /method: (\w+)", text)
            if m and m.group(1) in ROWS:
                extra += ROWS[m.group(1)]
    return extra


def compose_cfg(overrides):
    overrides = list(overrides)
    extra = former_row_overrides(overrides)
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*extra, *overrides])
    if "rbd" in cfg.method:  # former method.rbd options are optim=rbd's
        with open_dict(cfg):
            cfg.optim.update(cfg.method.pop("rbd"))
    return cfg


def test_there_are_presets_for_table1_and_fig5():
    assert {"table1/full", "table1/bl", "table1/km"} <= set(EXPERIMENTS)
    assert sum(e.startswith("fig5/") for e in EXPERIMENTS) == 4 + 3 + 6


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_builds(experiment):
    cfg = compose_cfg([f"experiment={experiment}"])
    assert cfg.experiment_name == experiment
    if cfg.backbone.get("pretrained"):  # no ImageNet weights offline; loading: tests/test_transfer_backbone.py
        cfg.backbone.pretrained = False
    validate_config(cfg)
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    model = build_model(model_cfg)
    assert count_parameters(model)["params/trainable"] > 0


def test_table1_presets_follow_the_paper():
    km = compose_cfg(["experiment=table1/km"])
    assert (km.dataset.name, km.backbone.name, km.trainer.max_epochs) == ("cifar10", "resnet32", 200)
    assert km.dataset.datamodule.batch_size == 128 and km.optim.name == "sgd"
    assert km.reference_accuracy == pytest.approx(0.928)
    assert parse_method(OmegaConf.to_container(km.method)).components == ("implicit", "explicit", "classifier")


def test_cli_overrides_reach_the_model():
    cfg = compose_cfg(["method=km", "backbone=resnet32", "dataset=cifar10", "modulator.activation=sin", "seed=3"])
    assert cfg.model.modulator.activation == "sin" and cfg.seed == 3 and cfg.model.num_classes == 10


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["method=nonexistent"], "Could not find 'method/nonexistent'"),
        (["modulator.depth=0"], "modulator.depth=0 must be an integer in 1..50"),
        (["modulator.activation=swish"], "modulator.activation='swish' is not one of"),
    ],
)
def test_bad_config_gives_one_clear_error(tmp_path, overrides, message):
    proc = run_cli([*overrides, *TINY], tmp_path, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_dataset_names_the_expected_folder(tmp_path):
    data = tmp_path / "nodata"
    proc = run_cli(["dataset=cifar10", "dataset.datamodule.download=false", f"paths.data_dir={data}", *TINY],
                   tmp_path, check=False)
    assert proc.returncode == 1
    assert "cifar-10-batches-py" in proc.stderr and str(data) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not Path(data / "cifar-10-batches-py").exists()


def test_dataset_recipe_makes_method_and_dataset_the_paper_setup():
    from kmexp.config import recipe_overrides

    task = ["method=km", "dataset=cars"]
    cfg = compose_cfg(task)
    extra = recipe_overrides(cfg, task)
    assert "backbone=resnet50_gn" in extra and "optim.lr=8.0e-4" in extra
    full = compose_cfg([*extra, *task])
    assert (full.backbone.name, full.backbone.norm, full.optim.name) == ("resnet50", "group", "adam")
    assert full.optim.lr == pytest.approx(8e-4) and full.trainer.max_epochs == 50
    # the command line wins, and presets are never altered
    assert "backbone=resnet50_gn" not in recipe_overrides(cfg, [*task, "backbone=resnet32"])
    assert recipe_overrides(cfg, ["experiment=table2/tkm2_cars"]) == []
