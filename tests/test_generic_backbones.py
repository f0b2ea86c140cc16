"""Any timm / torchvision model as a backbone: head named by the model, KM attaches and folds,
pretrained weights from a local file (classifier re-initialized)."""

import pytest
import torch
from torch import nn

from kmexp.components import classifier_module, component_counts, tag_parameters
from kmexp.errors import ConfigError, WeightsNotFoundError
from kmexp.methods import build_model
from kmexp.models import build_backbone
from kmexp.models.generic import torchvision_head_name
from kmexp.modulation import fold_modulators
from tests.conftest import TINY, run_cli, summaries

KM = {"name": "km", "components": ["implicit", "explicit", "classifier"]}
FAMILIES = {
    "timm": ["resnet18", "mobilenetv3_small_050", "efficientnet_b0", "convnext_atto", "densenet121"],
    "torchvision": ["resnet18", "mobilenet_v3_small", "efficientnet_b0", "convnext_tiny", "densenet121"],
}
CASES = [(lib, name) for lib, names in FAMILIES.items() for name in names]


@pytest.mark.parametrize("lib,model_name", CASES)
def test_head_named_km_attached_and_folded(lib, model_name):
    torch.manual_seed(0)
    net = build_model({"backbone": {"name": lib, "model_name": model_name}, "num_classes": 7, "method": KM})
    head = classifier_module(net)
    assert isinstance(head, nn.Linear) and head.out_features == 7
    assert all(p.requires_grad for p in head.parameters())
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert component_counts(net)["explicit"] == sum(2 * (m.kernel_size[0] * m.kernel_size[1]) ** 2 for m in convs)
    tags = tag_parameters(net)
    frozen = [n for n, p in net.named_parameters() if not p.requires_grad]
    assert frozen and all(not tags[n] & set(KM["components"]) for n in frozen)
    with torch.no_grad():
        for m in net.modules():
            if m.__class__.__name__ == "KernelModulator":
                for w in m.weights:
                    w.add_(0.01 * torch.randn_like(w))
    net.eval()
    x = torch.randn(2, 3, 32, 32)
    before = net(x)
    fold_modulators(net)
    torch.testing.assert_close(net(x), before, atol=2e-4, rtol=1e-3)


def test_torchvision_head_table_and_fallback():
    from torchvision.models import get_model

    assert torchvision_head_name("mobilenet_v3_small", get_model("mobilenet_v3_small")) == "classifier.3"
    assert torchvision_head_name("convnext_tiny", get_model("convnext_tiny")) == "classifier.2"
    # a family outside the table: the last nn.Linear in module order (ShuffleNet's fc)
    assert torchvision_head_name("shufflenet_v2_x0_5", get_model("shufflenet_v2_x0_5")) == "fc"
    with pytest.raises(ConfigError, match="no nn.Linear"):
        torchvision_head_name("squeezenet1_0", get_model("squeezenet1_0"))


@pytest.mark.parametrize("lib,model_name", [("torchvision", "mobilenet_v3_small"), ("timm", "mobilenetv3_small_050")])
def test_pretrained_from_a_weights_file_keeps_all_but_the_head(tmp_path, lib, model_name):
    torch.manual_seed(1)
    if lib == "torchvision":
        from torchvision.models import get_model

        source = get_model(model_name)  # 1000 classes, stands in for ImageNet weights
    else:
        import timm

        source = timm.create_model(model_name)
    torch.save(source.state_dict(), tmp_path / "w.pth")
    torch.manual_seed(2)
    net = build_backbone(lib, num_classes=5, model_name=model_name, pretrained=True, weights_path=str(tmp_path / "w.pth"))
    own = net.state_dict()
    prefix = "model." if lib == "torchvision" else ""
    head = classifier_module(net)
    head_keys = {f"{n}.weight" for n, m in net.named_modules() if m is head}
    body = [k for k in source.state_dict() if f"{prefix}{k}" not in head_keys and "classifier" not in k
            and not k.startswith(("fc.", "head."))]
    assert body and all(torch.equal(own[f"{prefix}{k}"], source.state_dict()[k]) for k in body)
    assert head.out_features == 5


def test_missing_weights_and_unknown_model_are_one_clear_error(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="weights_path"):
        build_backbone("timm", num_classes=5, model_name="resnet18", pretrained=True, weights_path=str(tmp_path / "x"))
    with pytest.raises(ConfigError, match="not a torchvision model"):
        build_backbone("torchvision", num_classes=5, model_name="no_such_net")
    with pytest.raises(ConfigError, match="not a timm model"):
        build_backbone("timm", num_classes=5, model_name="no_such_net")


@pytest.mark.slow
@pytest.mark.parametrize("args", [["backbone=timm", "backbone.model_name=convnext_atto"],
                                  ["backbone=torchvision", "backbone.model_name=mobilenet_v3_small", "method=lora"]])
def test_command_line_backbone(tmp_path, args):
    run_cli([*args, *TINY], tmp_path)
    (summary,) = summaries(tmp_path)
    assert summary["status"] == "finished" and summary["backbone"] in ("timm", "torchvision")
    assert summary["config"]["backbone"]["model_name"] == args[1].split("=")[1]
