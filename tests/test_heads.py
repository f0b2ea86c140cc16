"""Classifier heads are named, never guessed (kmexp.models.heads).

For each torchvision family and two timm models: the head is replaced with one for the
task's classes, it is the only part tagged ``classifier``, and one training step of the
``tbl1``-style method (classifier only) changes it and nothing else.
"""

import pytest
import timm
import torch
import torchvision.models as tvm
from torch import nn

from kmexp.components import apply_trainable, tag_parameters
from kmexp.models.heads import HeadNotFoundError, find_head, head_path, name_head, replace_head

CLASSES = 5
MODELS = {
    "torchvision/mobilenet_v3_small": (lambda: tvm.mobilenet_v3_small(), "classifier.3"),
    "torchvision/efficientnet_b0": (lambda: tvm.efficientnet_b0(), "classifier.1"),
    "torchvision/convnext_tiny": (lambda: tvm.convnext_tiny(), "classifier.2"),
    "torchvision/densenet121": (lambda: tvm.densenet121(), "classifier"),
    "torchvision/vgg11": (lambda: tvm.vgg11(), "classifier.6"),
    "timm/mobilenetv3_small_050": (lambda: timm.create_model("mobilenetv3_small_050"), "classifier"),
    "timm/convnext_atto": (lambda: timm.create_model("convnext_atto"), "head.fc"),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_head_is_replaced_for_the_task_and_trains(name):
    torch.manual_seed(0)
    build, expected_path = MODELS[name]
    model = build()
    assert head_path(model) == expected_path
    head = replace_head(model, CLASSES)
    assert find_head(model) is head and head.out_features == CLASSES
    tags = tag_parameters(model)
    classifier = {n for n, t in tags.items() if "classifier" in t}
    assert classifier == {f"{expected_path}.weight", f"{expected_path}.bias"}

    apply_trainable(model, ["classifier"])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    logits = model(torch.randn(4, 3, 32, 32))
    assert logits.shape == (4, CLASSES)
    nn.functional.cross_entropy(logits, torch.arange(4) % CLASSES).backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == classifier


def test_a_network_that_names_no_head_is_an_error():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(3))
    with pytest.raises(HeadNotFoundError, match="backbone.classifier=<path>"):
        tag_parameters(net)
    with pytest.raises(HeadNotFoundError, match="backbone.classifier=<path>"):
        name_head(net)


def test_an_explicit_head_path_names_the_head():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    assert name_head(net, "3") == "3"
    assert {n for n, t in tag_parameters(net).items() if "classifier" in t} == {"3.weight", "3.bias"}
    with pytest.raises(HeadNotFoundError, match="'9'.*not a module"):
        name_head(net, "9")


def test_backbone_classifier_key_reaches_the_model():
    from kmexp.methods import build_model

    cfg = {"backbone": {"name": "resnet20", "classifier": "fc"}, "num_classes": 10,
           "method": {"name": "last_layer"}}
    net = build_model(cfg)
    assert net.head_path == "fc" and [n for n, p in net.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
