"""Fig. 4 / Table II presets follow KM Sec. IV-B, and one script runs each table for 5 seeds."""

import csv
import os
import shlex
import subprocess

import pytest
from omegaconf import OmegaConf

from kmexp.methods import parse_method
from tests.conftest import REPO, row
from tests.test_configs import EXPERIMENTS, compose_cfg

DATASETS = ("aircraft", "cars", "flowers", "food")
TABLES = {"table2": ("nc", "tinytl", "tkm1", "tkm2", "tbl2"), "fig4": ("tbl1", "tkm1", "tkm2", "tbl2")}
COMPONENTS = {
    "tbl1": ["classifier"],
    "tkm1": ["explicit", "classifier"],
    "tkm2": ["implicit", "explicit", "classifier"],
    "tbl2": ["convolution", "implicit", "classifier"],
    "nc": ["implicit", "classifier"],
    "tinytl": ["lite_residual", "bias", "classifier"],
}


def paper_learning_rates() -> dict[str, float]:
    with open(REPO / "results" / "paper" / "km_table2.csv") as f:
        return {r["column"]: float(r["value"]) for r in csv.DictReader(f) if r["row"] == "lr"}


def test_one_preset_per_cell():
    for table, methods in TABLES.items():
        expected = {f"{table}/{m}_{d}" for m in methods for d in DATASETS}
        assert {e for e in EXPERIMENTS if e.startswith(f"{table}/")} == expected


@pytest.mark.parametrize("table", sorted(TABLES))
def test_presets_follow_section_iv_b(table):
    lrs = paper_learning_rates()
    assert lrs == {"aircraft": 16e-4, "cars": 8e-4, "flowers": 2e-4, "food": 2e-4}
    for method in TABLES[table]:
        for dataset in DATASETS:
            cfg = compose_cfg([f"experiment={table}/{method}_{dataset}"])
            assert (cfg.backbone.name, cfg.backbone.norm, cfg.backbone.pretrained) == ("resnet50", "group", True)
            assert cfg.dataset.name == dataset and cfg.dataset.datamodule.batch_size == 8
            assert cfg.trainer.max_epochs == 50
            assert cfg.optim.name == "adam" and cfg.optim.scheduler.name == "cosine"
            assert cfg.optim.lr == pytest.approx(lrs[dataset])
            parsed = parse_method(OmegaConf.to_container(cfg.method, resolve=True))
            assert f"method={parsed.name}" == row(method)[0]  # rows are methods + overrides (tests/conftest.py)
            assert list(parsed.components) == COMPONENTS[method]


@pytest.mark.parametrize("table", sorted(TABLES))
def test_script_runs_a_table_for_five_seeds(table):
    env = dict(os.environ, DRY_RUN="1")
    proc = subprocess.run(["bash", "scripts/transfer.sh", table, "hydra/launcher=slurm"], cwd=REPO, env=env,
                          capture_output=True, text=True, check=True)
    args = shlex.split(proc.stdout)
    assert args[1:4] == ["-m", "kmexp.train", "-m"]
    [experiments] = [a.removeprefix("experiment=") for a in args if a.startswith("experiment=")]
    assert sorted(experiments.split(",")) == sorted(f"{table}/{m}_{d}" for m in TABLES[table] for d in DATASETS)
    assert "seed=0,1,2,3,4" in args and "resume=true" in args and args[-1] == "hydra/launcher=slurm"
    bad = subprocess.run(["bash", "scripts/transfer.sh", "table9"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown table" in bad.stderr
