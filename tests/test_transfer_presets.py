"""Fig. 4 / Table II cells follow KM Sec. IV-B: one transfer preset, the rows' methods, the datasets'
learning rates; ``reproduce table2`` runs every dataset's table for 5 seeds."""

import csv

import pytest
from omegaconf import OmegaConf

from kmexp.methods import parse_method
from kmexp.reporting.reproduce import entry as reproduce
from kmexp.reporting.tables import TABLES
from tests.conftest import REPO
from tests.test_configs import compose_cfg

DATASETS = ("aircraft", "cars", "flowers", "food")
ROWS = {"table2": ("nc", "ttl", "tkm1", "tkm2", "tbl2"), "fig4": ("tbl1", "tkm1", "tkm2", "tbl2")}
COMPONENTS = {  # paper row -> trainable components
    "tbl1": ["classifier"],
    "tkm1": ["explicit", "classifier"],
    "tkm2": ["implicit", "explicit", "classifier"],
    "tbl2": ["convolution", "implicit", "classifier"],
    "nc": ["implicit", "classifier"],
    "ttl": ["lite_residual", "bias", "classifier"],
}


def paper_learning_rates() -> dict[str, float]:
    with open(REPO / "results" / "paper" / "km_table2.csv") as f:
        return {r["column"]: float(r["value"]) for r in csv.DictReader(f) if r["row"] == "lr"}


def test_one_table_per_dataset_with_the_papers_rows():
    for group, rows in ROWS.items():
        for dataset in DATASETS:
            table = TABLES[f"{group}_{dataset}"]
            assert tuple(r.key for r in table.rows) == rows
            assert {r.experiment for r in table.rows} == {"transfer"}
            assert all(f"dataset={dataset}" in r.overrides for r in table.rows)


@pytest.mark.parametrize("group", sorted(ROWS))
def test_cells_follow_section_iv_b(group):
    lrs = paper_learning_rates()
    assert lrs == {"aircraft": 16e-4, "cars": 8e-4, "flowers": 2e-4, "food": 2e-4}
    for dataset in DATASETS:
        for row in TABLES[f"{group}_{dataset}"].rows:
            cfg = compose_cfg([f"experiment={row.experiment}", *row.overrides])
            assert (cfg.backbone.name, cfg.backbone.norm, cfg.backbone.pretrained) == ("resnet50", "group", True)
            assert cfg.dataset.name == dataset and cfg.dataset.datamodule.batch_size == 8
            assert cfg.trainer.max_epochs == 50 and cfg.backbone.drop_rate == 0.2
            assert cfg.optim.name == "adam" and cfg.optim.scheduler.name == "cosine"
            assert cfg.optim.lr == pytest.approx(lrs[dataset])
            parsed = parse_method(OmegaConf.to_container(cfg.method, resolve=True))
            assert list(parsed.components) == COMPONENTS[row.key], row


def test_reproduce_runs_every_dataset_for_five_seeds_and_shares_fig4_with_table2(capsys):
    assert reproduce(["table2", "--dry-run", "--launcher", "slurm"]) == 0
    out = capsys.readouterr().out
    for dataset in DATASETS:
        assert f"table2_{dataset}: 5 rows x 5 seeds = 25 cells" in out
    commands = [line for line in out.splitlines() if line.startswith("command (")]
    assert commands and all("experiment=transfer" in c and "seed=0,1,2,3,4" in c and "resume=true" in c
                            and "hydra/launcher=slurm" in c for c in commands)
