"""KM Fig. 3 from checkpoints: random, modulated (before/after KM training) and fully trained weights."""

import json

import matplotlib.image
import pytest
import torch
from torch import nn

from kmexp.errors import KmexpError
from kmexp.methods import build_model
from kmexp.modulation import KernelModulator
from kmexp.reporting.weight_histograms import AFTER, BEFORE, FULL, RANDOM, collect
from tests.conftest import model_cfg, run_cli


def tiny_cfg(method: str) -> dict:
    cfg = model_cfg(method, backbone="resnet8")
    cfg["backbone"]["width"] = 4
    return cfg


def save(net: nn.Module, cfg: dict, path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
            "hyper_parameters": {"model": cfg, "optim": {"lr": 0.1}, "reference_accuracy": None}}
    torch.save(ckpt, path)


@pytest.fixture
def runs(tmp_path):
    """A KM run (init + last checkpoints, modulators moved by 'training') and a full run."""
    km_cfg, full_cfg = tiny_cfg("km"), tiny_cfg("full")
    km = build_model(km_cfg)
    save(km, km_cfg, tmp_path / "km" / "checkpoints" / "init.ckpt")
    with torch.no_grad():
        for m in km.modules():
            if isinstance(m, KernelModulator):
                for u in m.weights:
                    u.mul_(1.5)  # a modulator that scales kernels: a wider distribution, as in Fig. 3B
    save(km, km_cfg, tmp_path / "km" / "checkpoints" / "last.ckpt")
    full = build_model(full_cfg)
    save(full, full_cfg, tmp_path / "full" / "checkpoints" / "last.ckpt")
    return tmp_path / "km", tmp_path / "full", km, full


def convs(net):
    return [m for m in net.modules() if isinstance(m, nn.Conv2d)]


def test_series_are_read_from_the_right_tensors(runs):
    km_dir, full_dir, km, full = runs
    series = collect(km_dir, full_dir, ["*"])
    random = torch.cat([m.parametrizations.weight.original.reshape(-1) for m in convs(km)])
    assert torch.equal(series[RANDOM], random)
    # Eq. 4: U = I + N(0, 0.001), so before training g(W) = tanh(W) up to the noise: the random values kept
    assert torch.allclose(series[BEFORE], torch.tanh(random), atol=0.01)
    assert float(series[BEFORE].std()) == pytest.approx(float(random.std()), rel=0.1)
    with torch.no_grad():
        assert torch.allclose(series[AFTER], torch.cat([m.weight.reshape(-1) for m in convs(km)]))
        assert torch.equal(series[FULL], torch.cat([m.weight.reshape(-1) for m in convs(full)]))
    assert series[AFTER].std() > 1.5 * series[RANDOM].std()
    only = collect(km_dir, None, ["layer3.*"])
    assert set(only) == {RANDOM, BEFORE, AFTER}
    assert only[RANDOM].numel() == sum(m.weight.numel() for n, m in km.named_modules()
                                       if isinstance(m, nn.Conv2d) and n.startswith("layer3."))


def test_a_missing_init_checkpoint_or_another_runs_weights_are_refused(runs, tmp_path):
    km_dir, full_dir, _, _ = runs
    with pytest.raises(KmexpError, match="no convolution matches"):
        collect(km_dir, full_dir, ["nothing*"])
    other = build_model(tiny_cfg("km"))  # new random frozen weights
    save(other, tiny_cfg("km"), km_dir / "checkpoints" / "init.ckpt")
    with pytest.raises(KmexpError, match="different frozen weights"):
        collect(km_dir, full_dir, ["*"])
    (km_dir / "checkpoints" / "init.ckpt").unlink()
    with pytest.raises(KmexpError, match="save_init_checkpoint=true"):
        collect(km_dir, full_dir, ["*"])


def test_plot_command_writes_a_png_and_statistics(runs, tmp_path):
    km_dir, full_dir, _, _ = runs
    proc = run_cli(["--km-run", str(km_dir), "--full-run", str(full_dir)], tmp_path, module="kmexp.reporting.weight_histograms")
    png = km_dir / "fig3_weights.png"
    image = matplotlib.image.imread(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.shape[0] > 100 and image.shape[1] > 100
    stats = json.loads(png.with_suffix(".json").read_text())
    assert set(stats) == {RANDOM, BEFORE, AFTER, FULL}
    assert len({s["count"] for s in stats.values()}) == 1
    assert stats[AFTER]["std"] > stats[RANDOM]["std"]
    assert "wrote" in proc.stdout

    bad = run_cli(["--km-run", str(full_dir)], tmp_path, module="kmexp.reporting.weight_histograms", check=False)
    assert bad.returncode == 1 and "save_init_checkpoint=true" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_fig3_from_real_tiny_runs(tmp_path):
    """Table I's km (save_init_checkpoint=true) and full rows through kmexp.reproduce, then the plot
    of the runs found by their table cells (--runs)."""
    from kmexp.reporting.reproduce import MINI_TRAINER

    run_cli(["table1_digits", "--rows", "km,full", "--seeds", "0", "--profile", "mini", "--logs", str(tmp_path / "logs"),
             "--out", str(tmp_path / "out"), "--", "backbone=resnet20"], tmp_path, module="kmexp.reproduce")
    km_run = next(p.parent.parent for p in tmp_path.rglob("init.ckpt"))
    assert (km_run / "checkpoints" / "last.ckpt").is_file()
    init = torch.load(km_run / "checkpoints" / "init.ckpt", map_location="cpu", weights_only=True)
    last = torch.load(km_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    key = "net.layer1.0.conv1.parametrizations.weight.0.weights.0"
    assert not torch.equal(init["state_dict"][key], last["state_dict"][key])  # modulators trained

    run_cli(["--runs", str(tmp_path / "logs" / "runs"), "--table", "table1_digits", "--seed", "0", "--",
             *MINI_TRAINER, "dataset=digits", "backbone=resnet20"], tmp_path, module="kmexp.weight_histograms")
    stats = json.loads((km_run / "fig3_weights.json").read_text())
    assert set(stats) == {RANDOM, BEFORE, AFTER, FULL}
    assert matplotlib.image.imread(km_run / "fig3_weights.png").ndim == 3
