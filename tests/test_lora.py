"""KM vs LoRA: peft LoRA on convolutions, the KM-matched rank rule, exact trainable counts."""

import pytest
import torch
import yaml

from kmexp.components import component_counts, count_parameters
from kmexp.errors import ConfigError
from kmexp.lora import km_budget, lora_targets, match_budget, merge_lora, rank1_cost
from kmexp.methods import build_model
from kmexp.resources import config_dir


def _method(name: str) -> dict:
    return yaml.safe_load((config_dir() / "method" / f"{name}.yaml").read_text())


def _model(method: str, backbone: dict, num_classes: int):
    return build_model({"backbone": backbone, "num_classes": num_classes, "method": _method(method),
                        "modulator": {}, "sharing": {}})


RESNET32 = ({"name": "resnet32", "shortcut": "zero_pad"}, 10)
RESNET50 = ({"name": "resnet50", "pretrained": False}, 100)


# ResNet-32 (KM Table I): 31 3x3 convolutions. KM: 31 x 162 = 5,022 modulator parameters.
# LoRA rank-1 costs c_in*9 + c_out: conv1 43, ten 16-channel convs 160, the first
# 32-channel conv 176, nine more 320; the next (352) no longer fits: 4,699 <= 5,022.
# ResNet-50 (KM Sec. IV-B, 100 classes): KM 16 x 162 + 4,802 (7x7 stem) + 36 x 2 (1x1) = 7,466;
# LoRA gets 7,251. Both add implicit + classifier: 2,272 + 650 (ResNet-32), 53,120 + 204,900.
@pytest.mark.parametrize("backbone,classes,km,lora,total_km,total_lora", [
    (*RESNET32, 5_022, 4_699, 7_944, 7_621),
    (*RESNET50, 7_466, 7_251, 265_486, 265_271),
])
def test_exact_trainable_counts(backbone, classes, km, lora, total_km, total_lora):
    km_net, lora_net = _model("km", backbone, classes), _model("lora", backbone, classes)
    assert component_counts(km_net)["explicit"] == km
    assert count_parameters(km_net)["params/trainable"] == total_km
    trainable_lora = sum(p.numel() for n, p in lora_net.named_parameters() if p.requires_grad and "lora_" in n)
    assert trainable_lora == lora
    assert count_parameters(lora_net)["params/trainable"] == total_lora
    assert lora <= km


def test_rank_rule_cases():
    net = build_model({"backbone": {"name": "resnet20"}, "num_classes": 10, "method": _method("bl")})
    names = lora_targets(net)
    costs = [rank1_cost(net.get_submodule(n)) for n in names]
    assert km_budget(net, names) == 162 * len(names)
    # a budget that covers every target at rank 3 -> uniform rank 3
    chosen, rank = match_budget(net, names, 3 * sum(costs) + 5)
    assert (chosen, rank) == (names, 3)
    # a small budget: rank 1, in network order, each only if it still fits
    chosen, rank = match_budget(net, names, costs[0] + costs[1])
    assert rank == 1 and chosen == names[:2]
    with pytest.raises(ConfigError, match="fits no rank-1 LoRA"):
        match_budget(net, names, min(costs) - 1)


def test_lora_is_peft_and_trains_only_adapters_norms_and_head():
    from peft.tuners.lora import LoraLayer

    net = _model("lora", *RESNET32)
    assert sum(isinstance(m, LoraLayer) for m in net.modules()) == 21
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert all("lora_" in n or "bn" in n or n.startswith("fc.") for n in trainable)
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(0)  # same seed -> same frozen base; LoRA starts as the identity (lora_B = 0)
    a = _model("bl", *RESNET32)
    torch.manual_seed(0)
    b = _model("lora", *RESNET32)
    torch.testing.assert_close(a.eval()(x), b.eval()(x))
    merge_lora(b)
    assert not any(isinstance(m, LoraLayer) for m in b.modules())


def test_uniform_rank_option():
    method = _method("lora")
    method["lora"]["rank"] = 2
    net = build_model({"backbone": {"name": "resnet20"}, "num_classes": 10, "method": method})
    plain = build_model({"backbone": {"name": "resnet20"}, "num_classes": 10, "method": _method("bl")})
    # every 3x3 conv of ResNet-20 at rank 2: sum(c_in*9 + c_out) = 43 + 6*160 + 176 + 5*320 + 352 + 5*640
    assert sum(rank1_cost(plain.get_submodule(n)) for n in lora_targets(plain)) == 6_331
    assert component_counts(net)["lora"] == 2 * 6_331


def test_bitfit_trains_biases_and_head():
    net = _model("bitfit", *RESNET32)
    # ResNet-32 has no conv biases: the 33 BatchNorm betas (1,136) + classifier (650)
    assert count_parameters(net)["params/trainable"] == 1_136 + 650


def test_km_vs_lora_tables_rows():
    from kmexp.reporting.reproduce import select
    from kmexp.reporting.tables import TABLES

    ids = select("km_vs_lora")  # the group: Table I setting + the four transfer datasets
    assert ids == ["km_vs_lora_table1", "km_vs_lora_aircraft", "km_vs_lora_cars", "km_vs_lora_flowers", "km_vs_lora_food"]
    for table_id in ids:
        rows = TABLES[table_id].rows
        assert [r.key for r in rows] == ["km", "lora", "bl", "bitfit"]
        assert [o for r in rows for o in r.overrides if o.startswith("method=")] == [
            "method=km", "method=lora", "method=bl", "method=bitfit"]
        assert all((config_dir() / "experiment" / f"{r.experiment}.yaml").is_file() for r in rows)
    assert TABLES["km_vs_lora_cars"].rows[0].overrides == ("dataset=cars", "method=km")  # = Table II's TKM-2 cell
