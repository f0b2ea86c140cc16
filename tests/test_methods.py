"""The method registry: adding a method is one Python file + one YAML (kmexp/methods/__init__.py).

The throwaway method below is written as its own file, as a contributor would add
``kmexp/methods/<name>.py``: it injects a LoRA-style low-rank update beside every 3x3
convolution, declares a component of its own (which joins the vocabulary without
touching kmexp.components) and declares no weight decay for it (honoured by kmexp.optim
without naming it).
"""

from __future__ import annotations

import ast
import importlib.util
import sys
import textwrap

import pytest
import torch

from kmexp import components
from kmexp.components import component_counts, count_parameters, tag_parameters, weight_decay_overrides
from kmexp.errors import ConfigError
from kmexp.methods import METHODS, build_model, parse_method
from kmexp.optim import build_optimizer, param_groups
from tests.conftest import REPO, model_cfg

THROWAWAY = '''
"""A throwaway conv adapter: y = conv(x) + up(down(x)), rank ``rank``."""
from torch import nn

from kmexp.components import InjectedModule
from kmexp.methods.base import Method, register_method


class LowRankConv(InjectedModule):
    component = "low_rank"
    weight_decay = 0.0

    def __init__(self, conv: nn.Conv2d, rank: int):
        super().__init__()
        self.down = nn.Conv2d(conv.in_channels, rank, conv.kernel_size, conv.stride, conv.padding, bias=False)
        self.up = nn.Conv2d(rank, conv.out_channels, 1, bias=False)
        nn.init.zeros_(self.up.weight)


class WithLowRank(nn.Module):
    def __init__(self, conv: nn.Conv2d, rank: int):
        super().__init__()
        self.conv, self.adapter = conv, LowRankConv(conv, rank)

    def forward(self, x):
        return self.conv(x) + self.adapter.up(self.adapter.down(x))


@register_method("throwaway_lowrank")
class ThrowawayLowRank(Method):
    components = ("low_rank", "classifier")

    def __init__(self, rank: int = 2, **common):
        super().__init__(**common)
        self.rank = rank

    def inject(self, model: nn.Module, model_cfg: dict) -> None:
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Conv2d) and child.kernel_size == (3, 3) and child.groups == 1:
                    setattr(parent, name, WithLowRank(child, self.rank))
'''


@pytest.fixture
def throwaway(tmp_path):
    """Load the file the way ``kmexp.methods`` imports every module of its folder."""
    path = tmp_path / "throwaway_lowrank.py"
    path.write_text(textwrap.dedent(THROWAWAY))
    spec = importlib.util.spec_from_file_location("kmexp.methods.throwaway_lowrank", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    METHODS.pop("throwaway_lowrank", None)
    sys.modules.pop(spec.name, None)
    components.COMPONENTS = tuple(c for c in components.COMPONENTS if c != "low_rank")


def test_every_file_of_the_package_is_a_registered_method():
    files = {p.stem for p in (REPO / "kmexp" / "methods").glob("*.py")} - {"__init__", "base"}
    assert files == {cls.__module__.rsplit(".", 1)[-1] for cls in METHODS.values()}
    yamls = {p.stem for p in (REPO / "kmexp" / "configs" / "method").glob("*.yaml")}
    assert yamls == set(METHODS) == {"full", "bl", "km", "sb_patch", "dw_patch", "last_layer", "tinytl", "maml",
                                      "anil", "lora", "bitfit"}


def test_a_new_method_is_one_file_and_one_registration(throwaway):
    assert METHODS["throwaway_lowrank"] is throwaway.ThrowawayLowRank
    assert "low_rank" in components.COMPONENTS  # declared by the injected module alone
    cfg = model_cfg(backbone="resnet20")
    cfg["method"] = {"name": "throwaway_lowrank", "rank": 2}  # configs/method/throwaway_lowrank.yaml
    net = build_model(cfg)
    tags = tag_parameters(net)
    adapters = {n for n in tags if "adapter." in n}
    # ResNet-20: 19 3x3 convolutions, each with down (rank x c_in x 3 x 3) and up (c_out x rank)
    expected = sum(2 * c_in * 9 + c_out * 2 for c_in, c_out in
                   [(3, 16)] + [(16, 16)] * 6 + [(16, 32), (32, 32)] + [(32, 32)] * 4 + [(32, 64), (64, 64)]
                   + [(64, 64)] * 4)
    assert component_counts(net)["low_rank"] == expected
    assert adapters and all(tags[n] == {"low_rank"} for n in adapters)
    assert count_parameters(net)["params/trainable"] == expected + 64 * 10 + 10  # + classifier
    assert all(p.requires_grad == (n in adapters or "fc." in n) for n, p in net.named_parameters())
    # the optimizer honours the module's declared weight decay without knowing the method
    decay = weight_decay_overrides(net)
    assert set(decay) == adapters and set(decay.values()) == {0.0}
    optimizer = build_optimizer(param_groups(net.named_parameters(), decay, {"weight_decay": 5e-4}),
                                {"name": "sgd", "lr": 0.1, "weight_decay": 5e-4})
    by_id = {id(p): n for n, p in net.named_parameters()}
    for group in optimizer.param_groups:
        names = {by_id[id(p)] for p in group["params"]}
        assert group["weight_decay"] == (0.0 if names <= adapters else 5e-4) and (names <= adapters or not names & adapters)
    # the adapter starts at zero (up is zero-initialized): the wrapped convolution is unchanged
    wrapped = next(m for m in net.modules() if isinstance(m, throwaway.WithLowRank))
    x = torch.randn(2, wrapped.conv.in_channels, 8, 8)
    torch.testing.assert_close(wrapped(x), wrapped.conv(x), atol=0, rtol=0)


@pytest.mark.parametrize(
    "cfg,message",
    [
        ({"name": "no_such_method"}, "method='no_such_method' is not one of"),
        ({"name": "sb_patch", "rank": 2}, "method 'sb_patch': "),
        ({"name": "km", "norm_stats": "sometimes"}, "method.norm_stats='sometimes' is not one of"),
        ({"name": "km", "components": ["kernels"]}, "unknown component(s) ['kernels']"),
        ({"components": ["classifier"]}, "method config needs 'name'"),
    ],
)
def test_bad_method_config_gives_one_clear_error(cfg, message):
    with pytest.raises(ConfigError) as e:
        parse_method(cfg)
    assert message in str(e.value)


@pytest.mark.parametrize(
    "cfg,components,norm_stats",
    [
        ({"name": "km", "components": ["explicit", "classifier"]}, ("explicit", "classifier"), "update"),  # TKM-1
        ({"name": "last_layer"}, ("classifier",), "frozen"),
        ({"name": "last_layer", "norm_stats": "update"}, ("classifier",), "update"),  # TBL-1
        ({"name": "last_layer", "norm_stats": "epoch_average"}, ("classifier",), "epoch_average"),  # Table 6 row 2
        ({"name": "sb_patch"}, ("implicit",), "epoch_average"),  # statistics: the epoch's average (kmexp.norm_statistics)
        ({"name": "sb_patch", "train_classifier": True}, ("implicit", "classifier"), "epoch_average"),
        ({"name": "dw_patch", "train_classifier": True}, ("depthwise", "classifier"), "update"),
        ({"name": "bl", "components": None, "norm_stats": None}, ("implicit", "classifier"), "update"),  # YAML nulls
    ],
)
def test_paper_rows_are_methods_with_options(cfg, components, norm_stats):
    method = parse_method(cfg)
    assert (method.components, method.norm_stats) == (components, norm_stats)


def test_components_module_imports_no_method():
    tree = ast.parse((REPO / "kmexp" / "components.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    # kmexp.models.heads finds the classifier a backbone names (no method there either)
    assert {m for m in imported if m and m.startswith("kmexp")} == {"kmexp.errors", "kmexp.models.heads"}
