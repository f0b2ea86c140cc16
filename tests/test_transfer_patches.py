"""ResNet-50 task patches (KM Sec. IV-B, V): round trip and storage for 100 tasks."""

import pytest
import torch
from omegaconf import OmegaConf

from kmexp.components import count_parameters
from kmexp.errors import PatchError
from kmexp.methods import build_model, parse_method
from kmexp.patches import apply_patch, export_patch, read_patch
from kmexp.reporting.storage import MB, storage_report
from tests.conftest import cell
from tests.test_configs import compose_cfg


def tkm2_model(seed: int, table: str = "table2_aircraft"):
    cfg = compose_cfg([*cell(table, "tkm2"), "backbone.pretrained=false"])
    torch.manual_seed(seed)  # the base network of a random-init run is fixed by its seed
    return build_model(OmegaConf.to_container(cfg.model, resolve=True)), cfg


@pytest.fixture(scope="module")
def trained_tkm2(tmp_path_factory):
    """A TKM-2 GN ResNet-50 whose modulators, GN gamma/beta and classifier moved away from init."""
    model, cfg = tkm2_model(seed=7)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    path = export_patch(model, tmp_path_factory.mktemp("patch") / "patch.safetensors", "tkm2",
                        list(parse_method(cfg.method).components), backbone="resnet50", dataset="aircraft")
    return model.eval(), path


def test_resnet50_tkm2_patch_round_trip_reproduces_the_outputs(trained_tkm2):
    model, path = trained_tkm2
    header, tensors = read_patch(path)
    assert header["method"] == "tkm2" and header["components"] == ["implicit", "explicit", "classifier"]
    assert sum(t.numel() for t in tensors.values()) == 265_486  # GroupNorm: no running statistics to ship

    fresh, _ = tkm2_model(seed=7)  # same seed -> same frozen base
    fresh.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(fresh(x), model(x))
        apply_patch(fresh, path)
        assert torch.equal(fresh(x), model(x))

    other, _ = tkm2_model(seed=8)  # another base network: refused, untouched
    with pytest.raises(PatchError, match="made for another base model"):
        apply_patch(other, path)


def test_storage_for_100_tasks(trained_tkm2, tmp_path):
    model, path = trained_tkm2
    report = storage_report(model, path.stat().st_size, n_tasks=100, workdir=tmp_path)
    trainable, total = 265_486, count_parameters(model)["params/total"]
    assert report["params/trainable"] == trainable
    # float32 tensors plus a small safetensors/JSON header
    assert 4 * trainable < report["patch/bytes"] < 4 * trainable + 50_000
    deployed = total - 7_466  # modulators are folded away in the deployed network
    assert 4 * deployed < report["model/bytes"] < 4 * deployed + 50_000
    assert round(report["model/bytes"] / MB) == 95  # the paper's "94 MB" counts the 23.5 M backbone only
    assert report["storage/networks_bytes"] == 100 * report["model/bytes"]
    assert report["storage/base_plus_patches_bytes"] == report["model/bytes"] + 100 * report["patch/bytes"]
    assert report["storage/reduction"] == pytest.approx(47.2, abs=0.1)  # Aircraft (46.7 with format-1 patches)
    assert not any(p.suffix == ".safetensors" for p in tmp_path.iterdir())  # the measurement cleans up
