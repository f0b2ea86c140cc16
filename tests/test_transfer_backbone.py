"""ResNet-50 for transfer: ImageNet weights from the hub cache or a file, BN -> GN, lite residuals.

The "ImageNet weights" here are a random ResNet-50 state dict written where torchvision
keeps the real file ($TORCH_HOME/hub/checkpoints/resnet50-0676ba61.pth).
"""

import pytest
import torch
from torch import nn

from kmexp.components import apply_trainable, tag_parameters
from kmexp.errors import ConfigError, WeightsNotFoundError
from kmexp.methods.tinytl import LiteResidual, WithLiteResidual, add_lite_residuals, lite_residual_parameter_count
from kmexp.models import build_backbone
from kmexp.models.resnet_imagenet import ImageNetResNet
from kmexp.pretrained import hub_checkpoint_dir

V1, V2 = "resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth"


@pytest.fixture(scope="module")
def imagenet_state(tmp_path_factory):
    """(TORCH_HOME with the V1 file in its hub cache, the state dict written there)."""
    from torchvision.models.resnet import Bottleneck

    torch.manual_seed(123)
    reference = ImageNetResNet(Bottleneck, [3, 4, 6, 3], num_classes=1000)
    with torch.no_grad():  # distinctive norm parameters and statistics, so carrying them over is visible
        for m in reference.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.1, 0.1)
    state = reference.state_dict()
    home = tmp_path_factory.mktemp("torch_home")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(state, home / "hub" / "checkpoints" / V1)
    return home, state


@pytest.fixture
def torch_home(imagenet_state, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(imagenet_state[0]))
    return imagenet_state[0]


def test_pretrained_weights_load_from_the_hub_cache_except_the_classifier(torch_home, imagenet_state):
    state = imagenet_state[1]
    assert hub_checkpoint_dir() == torch_home / "hub" / "checkpoints"
    model = build_backbone("resnet50", num_classes=102, pretrained=True)
    loaded = model.state_dict()
    for k, v in state.items():
        if k.startswith("fc."):
            continue
        assert torch.equal(loaded[k], v), k
    assert model.fc.weight.shape == (102, 2048)  # re-initialized for the target classes
    assert model.fc.weight.std() > 0


def test_random_init_ignores_the_cache(torch_home, imagenet_state):
    model = build_backbone("resnet50", num_classes=10, pretrained=False)
    assert not torch.equal(model.conv1.weight, imagenet_state[1]["conv1.weight"])


def test_groupnorm_swap_on_bn_weights_carries_over_gamma_and_beta(torch_home, imagenet_state):
    state = imagenet_state[1]
    with pytest.raises(ConfigError, match="swap_bn_weights=true"):  # only when asked for (tests/test_gn_pretrained.py)
        build_backbone("resnet50", num_classes=100, pretrained=True, norm="group", gn_groups=32)
    model = build_backbone("resnet50", num_classes=100, pretrained=True, norm="group", gn_groups=32,
                           swap_bn_weights=True)
    gns = {n: m for n, m in model.named_modules() if isinstance(m, nn.GroupNorm)}
    assert len(gns) == 53 and not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    for name, gn in gns.items():
        assert gn.num_groups == 32
        assert torch.equal(gn.weight, state[f"{name}.weight"]) and torch.equal(gn.bias, state[f"{name}.bias"])
    assert torch.equal(model.layer3[2].conv2.weight, state["layer3.2.conv2.weight"])
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 100) and torch.isfinite(out).all()


def test_groups_must_divide_every_width():
    with pytest.raises(ConfigError, match="gn_groups=48 does not divide the 64 channels"):
        build_backbone("resnet50", num_classes=10, pretrained=False, norm="group", gn_groups=48)


def test_explicit_weights_path(tmp_path, monkeypatch, imagenet_state):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    path = tmp_path / "my_resnet50.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in imagenet_state[1].items()}}, path)  # a wrapped checkpoint
    model = build_backbone("resnet50", num_classes=10, pretrained=True, weights_path=str(path))
    assert torch.equal(model.layer1[0].conv1.weight, imagenet_state[1]["layer1.0.conv1.weight"])
    with pytest.raises(WeightsNotFoundError, match="not found at backbone.weights_path="):
        build_backbone("resnet50", num_classes=10, pretrained=True, weights_path=str(tmp_path / "nope.pth"))


def test_missing_weights_say_where_they_are_expected_and_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFoundError) as e:
        build_backbone("resnet50", num_classes=10, pretrained=True)
    msg = str(e.value)
    assert str(tmp_path / "hub" / "checkpoints" / V1) in msg
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in msg
    assert "backbone.pretrained=false" in msg and "backbone.weights_path" in msg
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / V2).write_bytes(b"")
    with pytest.raises(WeightsNotFoundError, match="backbone.weights=<tag>"):
        build_backbone("resnet50", num_classes=10, pretrained=True)


def test_unreadable_or_foreign_weights_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    hub = tmp_path / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / V1).write_bytes(b"truncated download")
    with pytest.raises(WeightsNotFoundError, match="not a readable PyTorch state dict"):
        build_backbone("resnet50", num_classes=10, pretrained=True)
    import torchvision

    torch.save(torchvision.models.resnet18().state_dict(), hub / V1)
    with pytest.raises(ConfigError, match="does not fit resnet50"):
        build_backbone("resnet50", num_classes=10, pretrained=True)


def test_bad_backbone_options_are_config_errors():
    with pytest.raises(ConfigError, match="backbone.norm='layer'"):
        build_backbone("resnet50", num_classes=10, pretrained=False, norm="layer")
    with pytest.raises(ConfigError, match="backbone 'resnet50'"):
        build_backbone("resnet50", num_classes=10, pretrained=False, colour="red")


# --- TinyTL lite residuals -------------------------------------------------------------------

LITE = dict(downsample=2, kernel_size=5, expand=0.25, groups=32)


def test_lite_residuals_start_as_the_identity_and_train_alone():
    torch.manual_seed(0)
    model = build_backbone("resnet50", num_classes=10, pretrained=False, norm="group").eval()
    x = torch.randn(2, 3, 64, 64)
    before = model(x).detach()
    assert add_lite_residuals(model, **LITE) == 16
    assert torch.equal(model(x), before)  # zero-initialized scale: the pretrained function is unchanged
    assert lite_residual_parameter_count(model) == 7_463_136
    lites = [m for m in model.modules() if isinstance(m, LiteResidual)]
    assert all(isinstance(m.norm1, nn.GroupNorm) for m in lites)  # norm=auto follows the GN backbone
    # the projection shortcut of a stage's first block keeps its tags; the branch beside it is lite_residual
    tags = tag_parameters(model)
    assert isinstance(model.layer2[0].downsample, WithLiteResidual)
    assert tags["layer2.0.downsample.inner.0.weight"] == {"convolution"}
    assert tags["layer2.0.downsample.lite.conv1.weight"] == {"lite_residual"}
    assert tags["layer2.0.downsample.lite.norm1.bias"] == {"lite_residual", "bias"}
    assert tags["layer2.0.bn3.bias"] == {"implicit", "norm_offset", "bias"}

    apply_trainable(model, ["lite_residual", "bias", "classifier"])
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    lite_before = model.layer3[1].downsample.lite.conv2.weight.detach().clone()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), torch.tensor([1, 2])).backward()
        opt.step()
    assert not torch.equal(model.layer3[1].downsample.lite.conv2.weight, lite_before)
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
    model.eval()
    assert not torch.allclose(model(x), before)


@pytest.mark.parametrize("size", [32, 224])
def test_lite_residuals_follow_the_block_resolution(size):
    model = build_backbone("resnet50", num_classes=5, pretrained=False, norm="group")
    add_lite_residuals(model, **LITE)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LiteResidual):
                m.scale.fill_(1.0)
        assert model.eval()(torch.randn(1, 3, size, size)).shape == (1, 5)


def test_lite_residuals_on_other_residual_networks():
    import torchvision

    cifar = build_backbone("resnet20", num_classes=10)
    assert add_lite_residuals(cifar, kernel_size=3) == 9
    assert isinstance(next(m for m in cifar.modules() if isinstance(m, LiteResidual)).norm1, nn.BatchNorm2d)
    mobilenet = torchvision.models.mobilenet_v2(width_mult=0.5).eval()
    x = torch.randn(1, 3, 64, 64)
    before = mobilenet(x)
    assert add_lite_residuals(mobilenet) == 17  # every inverted residual block, as TinyTL
    assert torch.equal(mobilenet(x), before)
    with pytest.raises(ConfigError, match="no supported residual block"):
        add_lite_residuals(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8, 2)))
    with pytest.raises(ConfigError, match="method.lite_residual"):
        add_lite_residuals(build_backbone("resnet20", num_classes=10), kernel=3)
