"""Re-estimated statistics are the epoch's cumulative average (model patches' S/B patch, Table 6).

A tiny network: a frozen random convolution, BatchNorm, pooling, a classifier that trains.
After one epoch the BatchNorm's running mean is the dataset mean of the convolution's
features (exactly, batches being equal), and its running variance the epoch average of
the batch variances (close to the dataset variance), not an exponential average dominated
by the last ~10 batches.
"""

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from kmexp.lit.callbacks import build_callbacks
from kmexp.methods import parse_method
from kmexp.norm_statistics import EpochAverageNormStatistics
from tests.conftest import cell
from tests.test_configs import compose_cfg

N, BATCH = 96, 8


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3).requires_grad_(False)
        self.bn = nn.BatchNorm2d(4, affine=False)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.bn(self.conv(x)), 1).flatten(1))

    def training_step(self, batch, _):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.fc.parameters(), lr=0.1)


def data() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 3, 6, 6, generator=g) * torch.linspace(0.5, 3.0, N).view(N, 1, 1, 1) + 1.5  # drifting scale
    return TensorDataset(x, torch.randint(0, 2, (N,), generator=g))


STATISTICS_ROWS = [("mp_table2_flowers", "sb_only_random_last"), ("mp_table3", "sb_last_layer"),
                   ("mp_table6_aircraft", "last_layer_bn_stats"), ("mp_table6_cifar100", "last_layer_bn_stats_sb")]


@pytest.mark.parametrize("table,row", STATISTICS_ROWS)
def test_statistics_rows_average_over_the_epoch(table, row, tmp_path):
    cfg = compose_cfg([*cell(table, row), "logger=none"])
    assert parse_method(cfg.method).norm_stats == "epoch_average"
    assert any(isinstance(c, EpochAverageNormStatistics) for c in build_callbacks(cfg, tmp_path))


def test_statistics_frozen_rows_get_no_callback(tmp_path):
    cfg = compose_cfg([*cell("mp_table6_aircraft", "last_layer"), "logger=none"])
    assert not any(isinstance(c, EpochAverageNormStatistics) for c in build_callbacks(cfg, tmp_path))


def test_epoch_average_equals_the_dataset_statistics_of_the_features(tmp_path):
    torch.manual_seed(0)
    model, ds = Tiny(), data()
    with torch.no_grad():
        features = model.conv(ds.tensors[0])  # frozen: the same in every batch
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path),
                         callbacks=[EpochAverageNormStatistics()])
    loader = DataLoader(ds, batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(1))
    trainer.fit(model, loader)
    assert model.bn.momentum is None and int(model.bn.num_batches_tracked) == N // BATCH  # restarted each epoch
    dataset_mean = features.mean(dim=(0, 2, 3))
    dataset_var = features.var(dim=(0, 2, 3))
    torch.testing.assert_close(model.bn.running_mean, dataset_mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.bn.running_var, dataset_var, rtol=0.05, atol=0.0)
    # PyTorch's default (momentum 0.1) on the same data stays far from the dataset mean
    ema = nn.BatchNorm2d(4, affine=False)
    for (xb,) in DataLoader(TensorDataset(features), batch_size=BATCH):
        ema(xb)
    assert not torch.allclose(ema.running_mean, dataset_mean, rtol=0.05)


def test_private_task_statistics_restart_and_average_too():
    """Multi-task training keeps each task's statistics in its patch (kmexp.lit.multitask.TaskPatch)
    and swaps them in with functional_call: they restart and average cumulatively as well."""
    from torch.func import functional_call

    from kmexp.lit.multitask import TaskPatch
    from kmexp.norm_statistics import restart_cumulative_statistics

    holder = nn.Module()
    holder.net = nn.Sequential(nn.BatchNorm2d(2))
    stats = {k: v.clone() + 3 for k, v in holder.net.state_dict().items() if k != "0.num_batches_tracked"}
    stats["0.num_batches_tracked"] = torch.tensor(7)
    holder.patch = TaskPatch({}, stats)
    restart_cumulative_statistics(holder)
    private = holder.patch.tensors()
    assert torch.equal(private["0.running_mean"], torch.zeros(2)) and int(private["0.num_batches_tracked"]) == 0
    batches = [torch.randn(4, 2, 3, 3) + i for i in range(3)]
    for xb in batches:
        functional_call(holder.net, private, (xb,), strict=False)
    expected = torch.stack([xb.mean(dim=(0, 2, 3)) for xb in batches]).mean(0)
    torch.testing.assert_close(holder.patch.tensors()["0.running_mean"], expected)
    assert torch.equal(holder.net[0].running_mean, torch.zeros(2))  # the network's own copy is untouched
