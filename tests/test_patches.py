"""Task patches: export, apply to a fresh base, refuse the wrong base or a broken file."""

import json

import pytest
import torch

from kmexp.errors import PatchError
from kmexp.methods import build_model
from kmexp.patches import apply_patch, export_patch, frozen_fingerprint, read_patch
from tests.conftest import METHODS, model_cfg


def _base(method="km", seed=0):
    torch.manual_seed(seed)
    return build_model(model_cfg(method, backbone="resnet20"))


def _train_a_bit(net):
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    net.train()
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(torch.randn(8, 3, 32, 32)), torch.randint(0, 10, (8,))).backward()
        opt.step()
    return net.eval()


@pytest.mark.parametrize("method", ["km", "bl", "tkm1"])
def test_round_trip_reproduces_outputs(tmp_path, method):
    trained = _train_a_bit(_base(method))
    path = export_patch(trained, tmp_path / "p.safetensors", method, METHODS[method][0])
    fresh = _base(method).eval()
    x = torch.randn(4, 3, 32, 32)
    assert not torch.allclose(fresh(x), trained(x))
    header = apply_patch(fresh, path)
    assert header["method"] == method and header["components"] == METHODS[method][0]
    torch.testing.assert_close(fresh(x), trained(x), atol=0, rtol=0)


def test_patch_holds_trainable_state_and_norm_statistics(tmp_path):
    net = _train_a_bit(_base("km"))
    header, tensors = read_patch(export_patch(net, tmp_path / "p.safetensors", "km", METHODS["km"][0]), net)
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    stats = sum(t.numel() for k, t in tensors.items() if "running_" in k or "num_batches" in k)
    assert sum(t.numel() for t in tensors.values()) == trainable + stats
    assert any(k.endswith("bn1.running_mean") for k in tensors)
    assert header["base_fingerprint"] == frozen_fingerprint(net)
    # canonical names: no parametrization plumbing in the file
    assert not any("parametrizations" in k for k in tensors)


def test_patch_for_another_base_is_refused(tmp_path):
    path = export_patch(_train_a_bit(_base("km", seed=0)), tmp_path / "p.safetensors", "km", METHODS["km"][0])
    other = _base("km", seed=1)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(PatchError, match="another base model"):
        apply_patch(other, path)
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())  # nothing modified


def test_patch_of_another_method_is_refused(tmp_path):
    path = export_patch(_train_a_bit(_base("bl")), tmp_path / "p.safetensors", "bl", METHODS["bl"][0])
    with pytest.raises(PatchError):
        apply_patch(_base("km"), path)


def test_corrupted_and_foreign_files_are_refused(tmp_path):
    path = export_patch(_base("km"), tmp_path / "p.safetensors", "km", METHODS["km"][0])
    data = path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(PatchError, match="corrupted or truncated"):
        apply_patch(_base("km"), truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(PatchError):
        apply_patch(_base("km"), garbage)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(PatchError, match="not a kmexp task patch"):
        apply_patch(_base("km"), foreign)
    with pytest.raises(PatchError, match="not found"):
        apply_patch(_base("km"), tmp_path / "missing.safetensors")


def test_header_is_json_with_provenance(tmp_path):
    path = export_patch(_base("km"), tmp_path / "p.safetensors", "km", METHODS["km"][0], backbone="resnet20")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()["kmexp"])
    assert header["backbone"] == "resnet20" and header["format"] == 2


def test_resnet32_km_patch_is_close_to_its_tensor_bytes(tmp_path):
    """Names and shapes are derived from the model, not stored: the file is at most 1.2x its
    tensors (one safetensors entry per tensor made it 1.46x)."""
    import struct

    from kmexp.patches import patch_state

    net = build_model(model_cfg("km", backbone="resnet32"))
    path = export_patch(net, tmp_path / "p.safetensors", "km", METHODS["km"][0], backbone="resnet32")
    tensor_bytes = sum(t.numel() * t.element_size() for t in patch_state(net).values())
    trainable_bytes = 4 * sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert trainable_bytes == 31_776  # KM Table I: 7.9 K trainable (7,944 fp32 values)
    assert path.stat().st_size <= 1.2 * tensor_bytes, (path.stat().st_size, tensor_bytes)
    header_bytes = struct.unpack("<Q", path.read_bytes()[:8])[0]
    assert header_bytes < 600
    header, packed = read_patch(path)
    assert sorted(packed) == ["float32", "int64"]  # one entry per dtype
    assert len(header["layout"]) == 16 and len(header["base_fingerprint"]) == 64


def test_patch_with_another_layout_is_refused_even_with_the_same_base(tmp_path):
    net = _base("km")
    path = export_patch(net, tmp_path / "p.safetensors", "km", METHODS["km"][0])
    other = _base("km")
    other.fc.weight.requires_grad_(False)  # same frozen weights? no: the fingerprint changes too
    with pytest.raises(PatchError):
        apply_patch(other, path)
    with pytest.raises(PatchError, match="do not match the patch's layout"):
        apply_patch(other, path, check_fingerprint=False)


def test_format_1_patches_are_still_applied(tmp_path):
    from safetensors.torch import save_file

    from kmexp.patches import patch_state

    trained = _train_a_bit(_base("km"))
    header = {"format": 1, "method": "km", "components": METHODS["km"][0],
              "base_fingerprint": frozen_fingerprint(trained), "norm_stats": True}
    path = tmp_path / "old.safetensors"
    save_file(patch_state(trained), str(path), metadata={"kmexp": json.dumps(header)})
    fresh = _base("km").eval()
    apply_patch(fresh, path)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(fresh(x), trained(x), atol=0, rtol=0)


def test_truncated_packed_tensor_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    path = export_patch(_base("km"), tmp_path / "p.safetensors", "km", METHODS["km"][0])
    header, packed = read_patch(path)
    packed["float32"] = packed["float32"][:-3]
    header.pop("content_sha256", None)  # the checksum would catch it first; test the size check itself
    save_file(packed, str(path), metadata={"kmexp": json.dumps(header)})
    assert load_file(str(path))["float32"].numel() > 0
    with pytest.raises(PatchError, match="too few float32 values"):
        apply_patch(_base("km"), path)
