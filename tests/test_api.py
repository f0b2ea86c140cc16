"""Public API (kmexp.api): modulate any model, report, self-describing patches, fold."""

import subprocess
import sys

import pytest
import torch

import kmexp
from kmexp.errors import PatchError
from kmexp.patches import apply_patch, read_patch
from tests.conftest import REPO


def _step(model, size=32, classes=10, steps=1):
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        x = torch.randn(4, 3, size, size)
        torch.nn.functional.cross_entropy(model(x), torch.randint(0, classes, (4,))).backward()
        opt.step()
    return model.eval()


def test_modulate_freezes_all_but_method_and_head():
    model = kmexp.modulate(kmexp.create_backbone("resnet32", num_classes=10), kmexp.KMConfig(train_norm=False))
    counts = kmexp.trainable_parameters(model)
    # KM Sec. III-A: 31 3x3 convolutions x 162 modulator parameters; classifier 64*10 + 10
    assert counts == {"trainable": 31 * 162 + 650, "total": counts["total"], "explicit": 5022, "classifier": 650}
    text = kmexp.print_trainable_parameters(model)
    assert "trainable params: 5,672" in text and "explicit 5,022" in text and "classifier 650" in text


def test_target_and_exclude_modules_select_convolutions():
    model = kmexp.create_backbone("resnet32", num_classes=10)
    kmexp.modulate(model, kmexp.KMConfig(target_modules=r"layer3\..*", exclude_modules=["conv2"], depth=3))
    explicit = kmexp.trainable_parameters(model)["explicit"]
    assert explicit == 5 * 3 * 81  # stage 3's five conv1 layers, depth 3


@pytest.mark.parametrize("config", [kmexp.KMConfig(activation="sin"), kmexp.LoRAConfig(), kmexp.BitFitConfig(),
                                    kmexp.SBPatchConfig(), kmexp.TinyTLConfig(lite_residual={"expand": 0.5, "groups": 2})])
def test_patch_round_trip_without_base(tmp_path, config):
    model = _step(kmexp.modulate(kmexp.create_backbone("resnet20", num_classes=10, seed=5), config), steps=2)
    x = torch.randn(3, 3, 32, 32)
    path = kmexp.save_patch(model, tmp_path / "p.safetensors")
    header, _ = read_patch(path)
    assert header["seed"] == 5 and header["num_classes"] == 10 and header["recipe"]["backbone"]["name"] == "resnet20"
    assert header["recipe"]["method"]["name"] == config.method()["name"]
    loaded = kmexp.load_patch(path)
    torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)


def test_wrong_modulator_configuration_is_refused_by_name(tmp_path):
    path = kmexp.save_patch(_step(kmexp.modulate(kmexp.create_backbone("resnet20", num_classes=10),
                                                 kmexp.KMConfig(activation="sin"))), tmp_path / "p.safetensors")
    tanh = kmexp.modulate(kmexp.create_backbone("resnet20", num_classes=10), kmexp.KMConfig())
    before = {k: v.clone() for k, v in tanh.state_dict().items()}
    with pytest.raises(PatchError, match="modulator.activation: patch 'sin', model 'tanh'"):
        kmexp.load_patch(path, base=tanh)
    with pytest.raises(PatchError, match="modulator.activation"):
        apply_patch(tanh, path)
    assert all(torch.equal(before[k], v) for k, v in tanh.state_dict().items())


def test_unfrozen_model_is_not_called_another_base(tmp_path):
    path = kmexp.save_patch(_step(kmexp.modulate(kmexp.create_backbone("resnet20", num_classes=10),
                                                 kmexp.BitFitConfig())), tmp_path / "p.safetensors")
    unfrozen = kmexp.create_backbone("resnet20", num_classes=10)
    with pytest.raises(PatchError, match="not set up for the patch's method 'bitfit'") as err:
        apply_patch(unfrozen, path)
    assert "another base" not in str(err.value)


def test_other_base_and_other_classes_are_refused(tmp_path):
    path = kmexp.save_patch(kmexp.modulate(kmexp.create_backbone("resnet20", num_classes=10, seed=0)), tmp_path / "p.st")
    with pytest.raises(PatchError, match="another base model"):
        kmexp.load_patch(path, base=kmexp.create_backbone("resnet20", num_classes=10, seed=1))
    with pytest.raises(PatchError, match="num_classes: patch 10, model 7"):
        kmexp.load_patch(path, base=kmexp.create_backbone("resnet20", num_classes=7, seed=0))
    # a plain base with the right seed gets the method applied, then the patch
    assert not kmexp.load_patch(path, base=kmexp.create_backbone("resnet20", num_classes=10, seed=0)).training


@pytest.mark.parametrize("config", [kmexp.KMConfig(), kmexp.LoRAConfig(rank=2)])
def test_fold_gives_a_plain_network_with_the_same_outputs(config):
    from torch.nn.utils import parametrize

    model = kmexp.modulate(kmexp.create_backbone("resnet20", num_classes=10), config)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(2, 3, 32, 32)
    before = model.eval()(x)
    kmexp.fold(model)
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert not any("lora" in n for n, _ in model.named_parameters())
    torch.testing.assert_close(model(x), before, atol=1e-4, rtol=1e-4)


def test_save_patch_needs_a_method(tmp_path):
    with pytest.raises(PatchError, match="kmexp.modulate"):
        kmexp.save_patch(kmexp.create_backbone("resnet20", num_classes=10), tmp_path / "p.safetensors")


SCRIPT_SAVE = """
import torch, torchvision, kmexp
torch.manual_seed(0)
weights = torchvision.models.resnet50().state_dict()          # stands in for ImageNet weights
torch.save(weights, {weights!r})
model = kmexp.create_backbone("torchvision", num_classes=10, model_name="resnet50",
                              pretrained=True, weights_path={weights!r}, seed=0)
kmexp.modulate(model, kmexp.KMConfig())
kmexp.print_trainable_parameters(model)
opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
x, y = torch.randn(4, 3, 64, 64), torch.randint(0, 10, (4,))
torch.nn.functional.cross_entropy(model(x), y).backward(); opt.step()
kmexp.save_patch(model, {patch!r})
torch.save((x, model.eval()(x)), {out!r})
"""
SCRIPT_LOAD = """
import torch, kmexp
x, logits = torch.load({out!r})
model = kmexp.load_patch({patch!r})
assert torch.equal(model(x), logits), (model(x) - logits).abs().max()
print("identical logits")
"""


@pytest.mark.slow
def test_readme_resnet50_patch_in_a_fresh_process(tmp_path):
    """The README's "Use as a library" example: two processes, load_patch(path) alone."""
    paths = {"weights": str(tmp_path / "r50.pth"), "patch": str(tmp_path / "task.safetensors"),
             "out": str(tmp_path / "logits.pt")}
    for script in (SCRIPT_SAVE, SCRIPT_LOAD):
        proc = subprocess.run([sys.executable, "-c", script.format(**paths)], cwd=tmp_path, capture_output=True,
                              text=True, timeout=600, env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
                                                           "PATH": "/usr/bin:/bin"})
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert "identical logits" in proc.stdout
