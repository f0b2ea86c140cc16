"""test_ckpt=best never selects a checkpoint on the test set.

Datasets without a held-out split (CIFAR at val_size 0, Cars, Food: the papers' recipes)
validate on the test split; picking the best-on-validation checkpoint there would be model
selection on the test set, so it is refused with one message. A held-out split
(dataset.datamodule.val_size=N, carved from the training set) makes it legal again.
"""

import pytest
import torch
from torch.utils.data import TensorDataset

from kmexp.data.base import ClassificationDataModule
from kmexp.errors import ConfigError
from kmexp.validate import refuse_best_on_test
from tests.conftest import cell, run_cli
from tests.transfer_fakes import write_cars


class Toy(ClassificationDataModule):
    name = "toy"

    def build_datasets(self):
        test = TensorDataset(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long))
        train = TensorDataset(torch.zeros(4, 1), torch.zeros(4, dtype=torch.long))
        return (train, test, test) if not self.val_size else (train, train, test)


def test_best_is_refused_only_when_validation_is_the_test_split():
    with pytest.raises(ConfigError, match="test_ckpt=best would select the checkpoint on the test set"):
        refuse_best_on_test("best", Toy(val_size=0))
    refuse_best_on_test("last", Toy(val_size=0))
    refuse_best_on_test("best", Toy(val_size=1))


@pytest.mark.slow
def test_the_entry_point_stops_with_one_message(tmp_path):
    write_cars(tmp_path / "data", counts={"train": 3, "test": 2})
    proc = run_cli([*cell("table2_cars", "tkm2"), "backbone.pretrained=false", f"paths.data_dir={tmp_path / 'data'}",
                    "dataset.datamodule.num_workers=0", "logger=none", "test_ckpt=best"], tmp_path / "logs", check=False)
    assert proc.returncode == 1
    assert "error: test_ckpt=best would select the checkpoint on the test set" in proc.stderr
    assert "dataset.datamodule.val_size=" in proc.stderr and "Traceback" not in proc.stderr
    assert not list((tmp_path / "logs").rglob("*.ckpt"))  # nothing trained
