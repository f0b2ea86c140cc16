"""Every experiment preset composes and builds; presets are few and never name themselves;
``--cfg job`` prints what runs; bad input fails with one clear message."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from kmexp.components import count_parameters
from kmexp.config import register_resolvers
from kmexp.methods import build_model, parse_method
from kmexp.validate import validate_config
from tests.conftest import REPO, TINY, run_cli

CONFIGS = REPO / "kmexp" / "configs"
EXPERIMENTS = sorted(str(p.relative_to(CONFIGS / "experiment").with_suffix("")) for p in (CONFIGS / "experiment").rglob("*.yaml"))
register_resolvers()


def compose_cfg(overrides):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def test_presets_are_one_per_table_column_and_never_type_their_name():
    assert {"table1/cifar10", "transfer", "mp_transfer"} <= set(EXPERIMENTS)
    assert len(EXPERIMENTS) < 50
    for experiment in EXPERIMENTS:
        text = (CONFIGS / "experiment" / f"{experiment}.yaml").read_text()
        assert "experiment_name" not in text, experiment
        assert "python -m kmexp.train experiment=" + experiment in text, f"{experiment}: header gives no command"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_builds(experiment):
    cfg = compose_cfg([f"experiment={experiment}"])
    if cfg.backbone.get("pretrained"):  # no ImageNet weights offline; loading: tests/test_transfer_backbone.py
        cfg.backbone.pretrained = False
    validate_config(cfg)
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    model = build_model(model_cfg)
    assert count_parameters(model)["params/trainable"] > 0


def test_table1_presets_follow_the_paper():
    km = compose_cfg(["experiment=table1/cifar10", "method=km"])
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


def test_cfg_job_prints_exactly_what_runs(tmp_path):
    """No hidden recipe: a dataset alone changes nothing else; the transfer preset is the paper's setup."""
    plain = run_cli(["method=km", "dataset=cars", "--cfg", "job", "--resolve"], tmp_path).stdout
    assert "name: resnet32" in plain and "name: sgd" in plain
    paper = run_cli(["experiment=transfer", "dataset=cars", "method=km", "--cfg", "job", "--resolve"], tmp_path).stdout
    cfg = OmegaConf.create(paper)
    assert (cfg.backbone.name, cfg.backbone.norm, cfg.optim.name) == ("resnet50", "group", "adam")
    assert cfg.optim.lr == pytest.approx(8e-4) and cfg.trainer.max_epochs == 50  # KM Table II, Cars
    assert cfg.experiment_name == "transfer"  # derived from the command line, never typed
    mine = OmegaConf.create(run_cli(["experiment=transfer", "dataset=aircraft", "optim.lr=1e-3", "--cfg", "job",
                                     "--resolve"], tmp_path).stdout)
    assert mine.optim.lr == pytest.approx(1e-3) and mine.dataset.transfer_lr == pytest.approx(1.6e-3)  # command line wins
