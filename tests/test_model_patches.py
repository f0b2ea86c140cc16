"""Model patches (Mudrakarta et al., "K for the price of 1"): the backbones, the S/B and DW
patches, their sizes against the paper's printed numbers, and the methods of Tables 2, 3, 6."""

import csv
import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from omegaconf import OmegaConf
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from kmexp.components import component_counts, count_parameters, parameters_of, tag_parameters
from kmexp.lit.classification import ClassificationModule
from kmexp.methods import build_model, parse_method
from kmexp.models import build_backbone
from kmexp.optim import build_optimizer, build_scheduler
from tests.conftest import REPO, cell, method_config

PAPER = REPO / "results" / "paper"
MP_METHODS = ("sb_patch", "sb_patch_last", "dw_patch", "dw_patch_last", "last_layer", "last_layer_bn_stats")


def paper(table: str, row: str, column: str) -> float:
    with (PAPER / f"{table}.csv").open() as f:
        for r in csv.DictReader(f):
            if r["row"] == row and r["column"] == column:
                return float(r["value"])
    raise KeyError((table, row, column))


def method_cfg(name: str) -> dict:
    """A method config; former row labels (sb_patch_last, ...) as method + options (tests/conftest.py)."""
    return method_config(name)


def rounded_like_paper(ours: int, printed: float, rel: float) -> bool:
    return abs(ours - printed) <= rel * printed


@pytest.fixture(scope="module")
def mobilenet():
    return build_backbone("mobilenet_v2", num_classes=1000)


@pytest.fixture(scope="module")
def inception():
    return build_backbone("inception_v3", num_classes=1000)


# --------------------------------------------------------------------------- patch sizes


def test_mobilenet_v2_patch_sizes_match_the_paper(mobilenet):
    counts = component_counts(mobilenet)
    total = count_parameters(mobilenet)["params/total"]
    assert total == 3_504_872
    assert counts["implicit"] == 34_112  # the S/B patch: gamma + beta of 52 BN layers
    assert counts["depthwise"] == 64_224  # the DW patch: 17 depthwise convolutions
    assert counts["classifier"] == 1_281_000
    # Sec. 2: "less than 40K parameters, of about 1% for MobilenetV2 that has 3.5 million"
    assert counts["implicit"] < paper("mp_text_claims", "bn_patch", "params_max")
    assert round(100 * counts["implicit"] / total) == paper("mp_text_claims", "bn_patch_mobilenetv2", "pct_of_model")
    assert round(total / 1e5) / 10 == paper("mp_text_claims", "mobilenetv2", "params") / 1e6
    # Sec. 2: depthwise convolutions are "less than 3% of MobilenetV2's parameters" (ours: 1.83%)
    assert 100 * counts["depthwise"] / total < paper("mp_text_claims", "dw_patch_mobilenetv2", "pct_of_model_max")
    # Table 3 prints the S/B patch as 34K (exactly ours, rounded) and all params as 3.5M
    assert round(counts["implicit"], -3) == paper("mp_table3", "sb_only", "params")
    assert round(total, -5) == paper("mp_table3", "all_params", "params")
    # Table 3 prints 1.31M / 1.35M for the last layer (+ S/B): ours 1,281,000 / 1,315,112 (the
    # paper's printed counts are 2-3% higher; their difference, the S/B patch, matches: 34K vs 40K rounded)
    assert rounded_like_paper(counts["classifier"], paper("mp_table3", "last_layer", "params"), 0.03)
    assert rounded_like_paper(counts["classifier"] + counts["implicit"],
                              paper("mp_table3", "sb_last_layer", "params"), 0.03)


def test_mobilenet_v2_depthwise_tags(mobilenet):
    tags = tag_parameters(mobilenet)
    depthwise = [m for m in mobilenet.modules() if isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1]
    assert len(depthwise) == 17
    dw_names = {n for n, t in tags.items() if "depthwise" in t}
    assert len(dw_names) == 17 and all(n.endswith(".weight") for n in dw_names)
    assert "features.0.0.weight" not in dw_names  # the stem is a full 3x3 convolution
    assert all("convolution" in tags[n] for n in dw_names)
    assert sum(1 for m in mobilenet.modules() if isinstance(m, _BatchNorm)) == 52


def test_inception_v3_patch_sizes_and_table2_counts(inception):
    counts = component_counts(inception)
    assert count_parameters(inception)["params/total"] == 23_834_568
    assert counts["implicit"] == 34_432 and counts["depthwise"] == 0
    # Sec. 2: under 0.2% of the network
    assert 100 * counts["implicit"] / 23_834_568 < paper("mp_text_claims", "bn_patch_inceptionv3", "pct_of_model_max")
    # The paper's 36K S/B patch (Table 2) counts the auxiliary head's batch norms too:
    with_aux = torchvision.models.inception_v3(num_classes=1000, aux_logits=True, init_weights=False)
    aux_bn = sum(p.numel() for m in with_aux.AuxLogits.modules() if isinstance(m, _BatchNorm) for p in m.parameters())
    assert counts["implicit"] + aux_bn == 36_224
    for ds in ("flowers", "cars", "aircraft"):
        assert round(36_224, -3) == paper("mp_table2", "sb_only_random_last", f"{ds}_params")
    # Table 2 "Last layer" / "S/B + last layer" (102 / 196 / 100 classes): within the paper's rounding
    for ds, n in (("flowers", 102), ("cars", 196), ("aircraft", 100)):
        last = 2048 * n + n
        assert rounded_like_paper(last, paper("mp_table2", "last_layer", f"{ds}_params"), 0.005)
        assert rounded_like_paper(last + counts["implicit"], paper("mp_table2", "sb_last_layer", f"{ds}_params"), 0.01)
    # "All": 25M in the paper = with the auxiliary head (ours without it: 22.0M for 102 classes)
    all_with_aux = sum(p.numel() for n, p in with_aux.named_parameters() if not n.startswith(("fc.", "AuxLogits.fc.")))
    all_with_aux += 2049 * 102 + 769 * 102
    assert rounded_like_paper(all_with_aux, paper("mp_table2", "all_ours", "flowers_params"), 0.02)


# --------------------------------------------------------------------------- backbones


def test_input_size_resizes_bilinearly_before_the_network():
    torch.manual_seed(0)
    resizing = build_backbone("mobilenet_v2", num_classes=10, width_mult=0.35, input_size=48).eval()
    plain = build_backbone("mobilenet_v2", num_classes=10, width_mult=0.35).eval()
    plain.load_state_dict(resizing.state_dict())
    x = torch.randn(2, 3, 32, 32)
    expected = plain(F.interpolate(x, size=(48, 48), mode="bilinear", align_corners=False))
    # (a random network's logits are tiny: compare relatively)
    assert torch.allclose(resizing(x), expected, rtol=1e-5, atol=0)
    assert not torch.allclose(resizing(x), plain(x), rtol=1e-2, atol=0)


def test_inception_v3_runs_small_inputs_at_its_input_size():
    net = build_backbone("inception_v3", num_classes=7, input_size=80).eval()
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 7)
    assert net.get_classifier() is net.fc and net.AuxLogits is None


def test_pretrained_torchvision_weights_load_except_classifier_and_aux_head(tmp_path):
    torch.manual_seed(1)
    mnv2 = torchvision.models.mobilenet_v2(num_classes=1000).state_dict()
    torch.save(mnv2, tmp_path / "mnv2.pth")
    net = build_backbone("mobilenet_v2", num_classes=102, pretrained=True, weights_path=str(tmp_path / "mnv2.pth"))
    own = net.state_dict()
    assert all(torch.equal(own[k], v) for k, v in mnv2.items() if not k.startswith("classifier."))
    assert net.get_classifier().weight.shape == (102, 1280)

    inc = torchvision.models.inception_v3(num_classes=1000, aux_logits=True, init_weights=False).state_dict()
    assert any(k.startswith("AuxLogits.") for k in inc)  # torchvision's file has the auxiliary head
    torch.save(inc, tmp_path / "inception.pth")
    net = build_backbone("inception_v3", num_classes=196, pretrained=True, weights_path=str(tmp_path / "inception.pth"))
    own = net.state_dict()
    assert all(torch.equal(own[k], v) for k, v in inc.items() if not k.startswith(("fc.", "AuxLogits.")))
    assert net.fc.weight.shape == (196, 2048)
    assert net.transform_input  # torchvision's ported weights expect its input rescaling


# --------------------------------------------------------------------------- methods


@pytest.mark.parametrize(
    "method,trained",
    [
        ("sb_patch", {"implicit"}),
        ("sb_patch_last", {"implicit", "classifier"}),
        ("dw_patch", {"depthwise"}),
        ("dw_patch_last", {"depthwise", "classifier"}),
        ("last_layer", {"classifier"}),
        ("last_layer_bn_stats", {"classifier"}),
    ],
)
def test_each_method_trains_exactly_its_patch(method, trained):
    net = build_model({"backbone": {"name": "mobilenet_v2", "width_mult": 0.35}, "num_classes": 10,
                       "method": method_cfg(method)})
    tags = tag_parameters(net)
    for name, p in net.named_parameters():
        wanted = bool(tags[name] & trained)
        assert p.requires_grad == wanted, (method, name)
    expected = sum(p.numel() for p in parameters_of(net, trained).values())
    assert count_parameters(net)["params/trainable"] == expected > 0


def _one_step(method: str):
    torch.manual_seed(0)
    module = ClassificationModule(
        model={"backbone": {"name": "mobilenet_v2", "width_mult": 0.35, "input_size": None}, "num_classes": 5,
               "method": method_cfg(method)},
        optim={"name": "sgd", "lr": 0.5, "momentum": 0.0, "weight_decay": 0.0},
    )
    before = {k: v.clone() for k, v in module.net.state_dict().items()}
    module.train()
    optimizer = build_optimizer([{"params": [p for p in module.parameters() if p.requires_grad]}], module.hparams.optim)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 5, (8,))
    F.cross_entropy(module(x), y).backward()
    optimizer.step()
    after = module.net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    return module, changed


def test_sb_patch_keeps_the_classifier_at_its_random_init_and_updates_statistics():
    module, changed = _one_step("sb_patch")
    tags = tag_parameters(module.net)
    stats = {k for k in changed if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    params = changed - stats
    assert stats  # mu and sigma are part of the S/B patch: re-estimated on the new data
    assert params and all("implicit" in tags[k] for k in params)  # only gammas and betas moved
    assert not any(k.startswith("classifier.") for k in changed)  # "fixed to its random initial value" (Sec. 2)


@pytest.mark.parametrize("method,stats_move", [("last_layer", False), ("last_layer_bn_stats", True)])
def test_table6_batch_norm_statistics_frozen_or_re_estimated(method, stats_move):
    module, changed = _one_step(method)
    stats = {k for k in changed if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    assert bool(stats) == stats_move
    params = {k for k in changed if k not in stats}
    assert params == {"classifier.1.weight", "classifier.1.bias"}


def test_dw_patch_moves_only_depthwise_weights():
    module, changed = _one_step("dw_patch")
    tags = tag_parameters(module.net)
    params = {k for k in changed if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    assert params and all("depthwise" in tags[k] for k in params)


# --------------------------------------------------------------------------- optimizer (Sec. 5)


class _TrainerStub:
    num_training_batches = 10
    accumulate_grad_batches = 1
    estimated_stepping_batches = 1000
    max_epochs = -1


def test_rmsprop_and_exponential_decay_per_two_and_a_half_epochs():
    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "kmexp" / "configs" / "optim" / "rmsprop_mp.yaml"))
    assert (cfg["lr"], cfg["scheduler"]["gamma"], cfg["scheduler"]["every_epochs"]) == (0.045, 0.98, 2.5)
    p = nn.Parameter(torch.zeros(1))
    opt = build_optimizer([{"params": [p]}], cfg)
    from timm.optim import RMSpropTF

    assert isinstance(opt, RMSpropTF)  # TF semantics (tests/test_optim_fidelity.py)
    sched = build_scheduler(opt, cfg, _TrainerStub())
    assert sched["interval"] == "step"
    lrs = []
    for _ in range(76):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched["scheduler"].step()
    # 10 batches per epoch: the lr drops by 0.98 every 25 steps (staircase)
    assert lrs[0] == lrs[24] == pytest.approx(0.045)
    assert lrs[25] == lrs[49] == pytest.approx(0.045 * 0.98)
    assert lrs[50] == pytest.approx(0.045 * 0.98**2) and lrs[75] == pytest.approx(0.045 * 0.98**3)


# --------------------------------------------------------------------------- presets


def compose(overrides):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from kmexp.config import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "kmexp" / "configs"), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=overrides)


def rows_of(table: str) -> set[str]:
    with (PAPER / f"{table}.csv").open() as f:
        return {r["row"] for r in csv.DictReader(f)}


def test_tables_cover_every_row_of_tables_2_3_4_5_6():
    from kmexp.reporting.tables import TABLES

    keys = lambda t: {r.key for r in TABLES[t].rows}  # noqa: E731
    for d in ("flowers", "cars", "aircraft"):
        assert keys(f"mp_table2_{d}") == rows_of("mp_table2") - {"all_cui"}
    assert keys("mp_table3") == rows_of("mp_table3")
    for d in ("flowers", "aircraft", "cars", "cifar100"):
        assert keys(f"mp_table6_{d}") == rows_of("mp_table6")
    assert keys("mp_table4_sb_patch_last_layer") | keys("mp_table4_last_layer") == {"sb_patch_last_layer", "last_layer"}
    assert keys("mp_table4_independent") == {"independent", "independent_places365"}
    assert keys("mp_table5") == {"sb_patch", "all_shared"}
    assert keys("mp_table5_independent") == {f"independent_res{r}" for r in (96, 128, 160, 192, 224)}


@pytest.mark.parametrize(
    "table_id,row,method,components,norm_stats",
    [
        ("mp_table2_flowers", "sb_only_random_last", "sb_patch", ["implicit"], "epoch_average"),
        ("mp_table2_cars", "last_layer", "last_layer", ["classifier"], "frozen"),
        ("mp_table6_aircraft", "last_layer_bn_stats", "last_layer", ["classifier"], "epoch_average"),
        ("mp_table6_cifar100", "last_layer_bn_stats_sb", "sb_patch", ["implicit", "classifier"], "epoch_average"),
        ("mp_table3", "sb_last_layer", "sb_patch", ["implicit", "classifier"], "epoch_average"),
    ],
)
def test_presets_follow_the_paper(table_id, row, method, components, norm_stats):
    cfg = compose(cell(table_id, row))
    parsed = parse_method(OmegaConf.to_container(cfg.method, resolve=True))
    assert parsed.name == method and list(parsed.components) == components and parsed.norm_stats == norm_stats
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.scheduler.gamma) == ("rmsprop", 0.045, 0.98)
    table = table_id.rsplit("_", 1)[0] if table_id != "mp_table3" else table_id
    if table == "mp_table2":
        assert cfg.backbone.name == "inception_v3" and cfg.backbone.pretrained
        assert cfg.backbone.input_size == 299 and cfg.dataset.datamodule.image_size == 299
        assert cfg.dataset.datamodule.label_smoothing == 0.0
    elif table == "mp_table6":
        assert cfg.backbone.name == "mobilenet_v2" and cfg.backbone.pretrained and cfg.backbone.input_size == 224
    else:
        assert cfg.backbone.name == "mobilenet_v2" and not cfg.backbone.pretrained  # Sec. 5.1: random weights
        assert cfg.dataset.name == "imagenet"


def test_fig3_learning_rates_span_the_papers_range():
    from kmexp.reporting.tables import MP_FIG3_LRS, TABLES

    lrs = [float(v) for v in MP_FIG3_LRS]
    for ds in ("flowers", "cars", "aircraft", "cifar100"):  # every approach at every rate
        rows = TABLES[f"mp_fig3_{ds}"].rows
        assert len(rows) == (6 + (4 if ds != "cifar100" else 0)) * len(lrs)
        assert {r.x for r in rows} == set(lrs)
    assert lrs[0] == paper("mp_fig3", "lr_sweep", "lr_min") and lrs[-1] == paper("mp_fig3", "lr_sweep", "lr_max")
    ratios = [b / a for a, b in zip(lrs[:-1], lrs[1:], strict=True)]
    assert all(math.isclose(r, ratios[0], rel_tol=1e-3) for r in ratios)
    assert round(ratios[0]) == paper("mp_fig3", "lr_sweep", "lr_factor")
