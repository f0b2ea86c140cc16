"""Task patches carry a checksum of their tensor contents, checked on load: damaged tensor
bytes (which the safetensors header cannot notice) are refused."""

import json

import pytest
import torch
from safetensors import safe_open

from kmexp.errors import PatchError
from kmexp.methods import build_model
from kmexp.patch_checksum import tensor_digest
from kmexp.patches import apply_patch, export_patch, read_patch
from tests.conftest import METHODS, model_cfg


def _base():
    torch.manual_seed(0)
    return build_model(model_cfg("km", backbone="resnet20"))


def test_checksum_is_in_the_header_and_matches_the_tensors(tmp_path):
    path = export_patch(_base(), tmp_path / "p.safetensors", "km", METHODS["km"][0])
    header, tensors = read_patch(path)
    assert header["content_sha256"] == tensor_digest(tensors) and len(header["content_sha256"]) == 64


def test_damaged_tensor_bytes_are_refused(tmp_path):
    path = export_patch(_base(), tmp_path / "p.safetensors", "km", METHODS["km"][0])
    data = bytearray(path.read_bytes())
    header_len = int.from_bytes(data[:8], "little")
    data[8 + header_len + 100] ^= 0xFF  # one byte inside the tensor data; the header stays valid
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(bytes(data))
    with safe_open(str(damaged), framework="pt") as f:  # safetensors itself accepts it
        assert json.loads(f.metadata()["kmexp"])["method"] == "km"
    model = _base()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(PatchError, match="checksum"):
        apply_patch(model, damaged)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing modified
    apply_patch(_base(), path)  # the intact file still loads


def test_digest_depends_on_names_shapes_and_values():
    a = {"x": torch.arange(4.0)}
    assert tensor_digest(a) == tensor_digest({"x": torch.arange(4.0)})
    assert tensor_digest(a) != tensor_digest({"y": torch.arange(4.0)})
    assert tensor_digest(a) != tensor_digest({"x": torch.arange(4.0).reshape(2, 2)})
    assert tensor_digest(a) != tensor_digest({"x": torch.tensor([0.0, 1.0, 2.0, 4.0])})
