"""resnet50_gn starts from weights pretrained with GroupNorm (KM Sec. IV-B, Table II, Fig. 4).

The "pretrained" file is timm's own resnet50_gn (random weights, made distinctive), saved
as safetensors where timm's Hugging Face download would put it:
$HF_HUB_CACHE/models--timm--resnet50_gn.a1h_in1k/snapshots/<revision>/model.safetensors.
"""

import pytest
import timm
import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file
from torch import nn

from kmexp.errors import ConfigError, WeightsNotFoundError
from kmexp.methods import build_model
from kmexp.models import build_backbone
from kmexp.models.resnet_imagenet import ImageNetResNet
from tests.conftest import cell
from tests.test_configs import compose_cfg

REPO = "models--timm--resnet50_gn.a1h_in1k"
REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def timm_gn():
    torch.manual_seed(0)
    reference = timm.create_model("resnet50_gn", pretrained=False).eval()
    with torch.no_grad():  # distinctive GN parameters (timm zero-initializes the last norm of each block)
        for m in reference.modules():
            if isinstance(m, nn.GroupNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return reference


@pytest.fixture
def hf_cache(tmp_path, monkeypatch, timm_gn):
    """A Hugging Face cache holding timm's resnet50_gn weights in timm's on-disk format."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    snapshot = cache / REPO / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    (cache / REPO / "refs").mkdir()
    (cache / REPO / "refs" / "main").write_text(REVISION)
    save_file({k: v.contiguous() for k, v in timm_gn.state_dict().items()}, str(snapshot / "model.safetensors"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # an empty torch hub cache
    return cache


def test_gn_weights_load_every_key_and_give_the_reference_outputs(hf_cache, timm_gn):
    model = build_backbone("resnet50", num_classes=7, pretrained=True, norm="group",
                           weights="timm:resnet50_gn.a1h_in1k").eval()
    ours, theirs = model.state_dict(), timm_gn.state_dict()
    assert set(ours) == set(theirs)  # every key matched, nothing left over
    for k, v in theirs.items():
        if not k.startswith("fc."):
            assert torch.equal(ours[k], v), k
    assert model.fc.out_features == 7  # the head is re-initialized for the task
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.forward_features(x), timm_gn.forward_features(x), atol=1e-5)


def test_the_resnet50_gn_config_loads_gn_weights_with_the_table_ii_counts(hf_cache, timm_gn):
    cfg = compose_cfg(cell("table2_cars", "tkm2"))
    assert cfg.backbone.weights == "timm:resnet50_gn.a1h_in1k" and not cfg.backbone.swap_bn_weights
    net = build_model(OmegaConf.to_container(cfg.model, resolve=True))
    assert torch.equal(net.layer1[0].bn1.weight, timm_gn.layer1[0].bn1.weight)
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == 462_190  # tests/test_transfer_counts.py


def test_swapping_bn_weights_for_gn_needs_the_explicit_flag(tmp_path, monkeypatch, caplog):
    from torchvision.models.resnet import Bottleneck

    bn_file = tmp_path / "resnet50_bn.pth"
    torch.save(ImageNetResNet(Bottleneck, [3, 4, 6, 3]).state_dict(), bn_file)
    with pytest.raises(ConfigError, match="BatchNorm-trained weights.*swap_bn_weights=true"):
        build_backbone("resnet50", num_classes=5, norm="group", weights_path=str(bn_file))
    model = build_backbone("resnet50", num_classes=5, norm="group", weights_path=str(bn_file), swap_bn_weights=True)
    assert any("far lower accuracy" in r.getMessage() for r in caplog.records)
    assert sum(isinstance(m, nn.GroupNorm) for m in model.modules()) == 53


def test_gn_weights_are_refused_under_batchnorm(hf_cache):
    with pytest.raises(ConfigError, match="GroupNorm weights"):
        build_backbone("resnet50", num_classes=5, norm="batch", weights="timm:resnet50_gn.a1h_in1k")


def test_missing_gn_weights_name_where_they_are_expected_and_how_to_get_them(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with pytest.raises(WeightsNotFoundError) as e:
        build_backbone("resnet50", num_classes=5, norm="group", weights="timm:resnet50_gn.a1h_in1k")
    msg = str(e.value)
    assert f"{tmp_path / 'empty' / REPO}/snapshots/<revision>/model.safetensors" in msg
    assert "timm.create_model('resnet50_gn.a1h_in1k', pretrained=True)" in msg
    assert "backbone.weights_path" in msg and "backbone.pretrained=false" in msg


def test_bit_gn_ws_backbone_loads_timms_weights(tmp_path, monkeypatch):
    """The second GN option: BiT (GN + weight standardization), timm's own layout."""
    from huggingface_hub import constants

    torch.manual_seed(1)
    reference = timm.create_model("resnetv2_50x1_bit", pretrained=False).eval()
    repo = tmp_path / "hub" / "models--timm--resnetv2_50x1_bit.goog_in21k_ft_in1k"
    (repo / "snapshots" / REVISION).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()},
              str(repo / "snapshots" / REVISION / "model.safetensors"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    cfg = compose_cfg([*cell("table2_cars", "tkm2"), "backbone=resnetv2_50x1_bit"])
    net = build_model(OmegaConf.to_container(cfg.model, resolve=True)).eval()
    assert torch.equal(net.stages[2].blocks[1].norm2.bias, reference.stages[2].blocks[1].norm2.bias)
    counts = {n: p.numel() for n, p in net.named_parameters() if p.requires_grad}
    # classifier 2,048 x 196 + 196, 53 modulators (as ResNet-50: 7,466), 49 GN layers' gamma and beta
    assert sum(counts.values()) == 2048 * 196 + 196 + 7_466 + sum(
        2 * m.num_channels for m in net.modules() if isinstance(m, nn.GroupNorm))
    backbone = build_backbone("resnetv2_50x1_bit", num_classes=196).eval()  # no modulators: the reference outputs
    assert set(backbone.state_dict()) == set(reference.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(backbone.forward_features(x), reference.forward_features(x), rtol=1e-5, atol=1e-5)
