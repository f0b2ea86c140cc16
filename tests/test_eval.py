"""kmexp.eval: a run directory, its checkpoint or its patch -> the run's own test accuracy; predict()."""

import json

import pytest
import torch

import kmexp
from kmexp.eval import main, predict
from tests.conftest import TINY, run_cli, summaries


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    tiny = [o for o in TINY if not o.startswith("trainer.limit_test_batches")]  # test on all 300 images
    run_cli(["backbone=resnet20", "modulator.activation=sin", *tiny], logs)
    (summary,) = summaries(logs)
    return summary


@pytest.mark.slow
@pytest.mark.parametrize("what", ["", "checkpoints/last.ckpt", "patch.safetensors"])
def test_eval_reproduces_the_runs_test_accuracy(run_dir, what, tmp_path, capsys):
    source = f"{run_dir['run_dir']}/{what}".rstrip("/")
    assert main([source, "--out", str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["test/acc"] == pytest.approx(run_dir["test/acc"], abs=1e-6)  # float32 metric in the summary
    assert metrics["test/examples"] == 300  # digits test split
    assert metrics["params/trainable"] == run_dir["params/trainable"]


@pytest.mark.slow
def test_eval_of_a_patch_on_other_data_overrides(run_dir, tmp_path):
    args = [f"{run_dir['run_dir']}/patch.safetensors", "dataset=digits", "dataset.datamodule.test_size=100",
            "--out", str(tmp_path / "m.json")]
    assert main(args) == 0
    assert json.loads((tmp_path / "m.json").read_text())["test/examples"] == 100


def test_bad_source_is_one_error_line(tmp_path, capsys):
    assert main([str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "does not exist" in err[0]


def test_predict_gives_probabilities():
    model = kmexp.modulate(kmexp.create_backbone("resnet20", num_classes=10))
    model.train()
    probs = predict(model, torch.randn(5, 3, 32, 32), batch_size=2)
    assert probs.shape == (5, 10)
    torch.testing.assert_close(probs.sum(1), torch.ones(5))
    assert model.training  # mode restored
