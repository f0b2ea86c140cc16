"""Exact parameter counts of the transfer-learning presets (KM Sec. IV-B, Fig. 4, Table II).

Models are built on PyTorch's meta device: the structure (and so every count) is that
of the real model, without allocating or initializing 23.5 M weights.

ResNet-50 counts, derived by hand: 23,508,032 parameters without the classifier, of which
53,120 are normalization gamma/beta (26,560 betas); 53 convolutions get kernel modulators:
one 7x7 (2 x 49^2 = 4,802), sixteen 3x3 (2 x 81 = 162 each) and thirty-six 1x1 (2 x 1 = 2
each), 7,466 in all. The classifier has 2,048 x K + K parameters for K classes.
"""

import pytest
import torch
from omegaconf import OmegaConf

from kmexp.components import component_counts, count_parameters
from kmexp.methods import build_model
from tests.conftest import cell
from tests.test_configs import compose_cfg

CLASSES = {"aircraft": 100, "cars": 196, "flowers": 102, "food": 101}
RESNET50_WITHOUT_CLASSIFIER = 23_508_032
MODULATORS = 4_802 + 16 * 162 + 36 * 2  # 7,466
NORM_AFFINE = 53_120

# Trainable parameters per (method, dataset), as the code builds them.
TRAINABLE = {
    ("tbl1", "aircraft"): 204_900, ("tbl1", "cars"): 401_604, ("tbl1", "flowers"): 208_998, ("tbl1", "food"): 206_949,
    ("tkm1", "aircraft"): 212_366, ("tkm1", "cars"): 409_070, ("tkm1", "flowers"): 216_464, ("tkm1", "food"): 214_415,
    ("tkm2", "aircraft"): 265_486, ("tkm2", "cars"): 462_190, ("tkm2", "flowers"): 269_584, ("tkm2", "food"): 267_535,
    ("tbl2", "aircraft"): 23_712_932, ("tbl2", "cars"): 23_909_636, ("tbl2", "flowers"): 23_717_030,
    ("tbl2", "food"): 23_714_981,
    ("nc", "aircraft"): 258_020, ("nc", "cars"): 454_724, ("nc", "flowers"): 262_118, ("nc", "food"): 260_069,
    ("tinytl", "aircraft"): 7_694_596, ("tinytl", "cars"): 7_891_300, ("tinytl", "flowers"): 7_698_694,
    ("tinytl", "food"): 7_696_645,
}
LITE_RESIDUALS = 7_463_136  # 16 modules, configs/method/tinytl.yaml
PRESETS = [("fig4", m, d) for m in ("tbl1", "tkm1", "tkm2", "tbl2") for d in CLASSES] + [
    ("table2", m, d) for m in ("nc", "tinytl", "tkm1", "tkm2", "tbl2") for d in CLASSES
]


def build_preset(name: str, *overrides: str) -> torch.nn.Module:
    """The model of a table cell named ``<table>/<paper row>_<dataset>`` (e.g. ``table2/tkm2_cars``)."""
    table, rest = name.split("/")
    row, dataset = rest.rsplit("_", 1)
    cfg = compose_cfg([*cell(f"{table}_{dataset}", "ttl" if row == "tinytl" else row), "backbone.pretrained=false",
                       *overrides])
    with torch.device("meta"):
        return build_model(OmegaConf.to_container(cfg.model, resolve=True))


def classifier(k: int) -> int:
    return 2048 * k + k


def test_the_hand_derived_counts_add_up():
    for d, k in CLASSES.items():
        assert TRAINABLE[("tbl1", d)] == classifier(k)
        assert TRAINABLE[("tkm1", d)] == classifier(k) + MODULATORS
        assert TRAINABLE[("tkm2", d)] == classifier(k) + MODULATORS + NORM_AFFINE
        assert TRAINABLE[("tbl2", d)] == classifier(k) + RESNET50_WITHOUT_CLASSIFIER
        assert TRAINABLE[("nc", d)] == classifier(k) + NORM_AFFINE
        assert TRAINABLE[("tinytl", d)] == classifier(k) + LITE_RESIDUALS + NORM_AFFINE // 2


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_resnet50_has_23_5M_parameters_without_the_classifier(norm):
    from kmexp.models import build_backbone

    with torch.device("meta"):
        model = build_backbone("resnet50", num_classes=1000, pretrained=False, norm=norm)
    counts = component_counts(model)
    assert count_parameters(model)["params/total"] == 25_557_032  # torchvision's ResNet-50
    assert counts["classifier"] == classifier(1000)
    assert counts["convolution"] + counts["implicit"] == RESNET50_WITHOUT_CLASSIFIER
    assert counts["implicit"] == NORM_AFFINE
    assert round(RESNET50_WITHOUT_CLASSIFIER / 1e6, 1) == 23.5  # the paper's "23.5 M"


@pytest.mark.parametrize("table,method,dataset", PRESETS, ids=[f"{t}/{m}_{d}" for t, m, d in PRESETS])
def test_preset_trains_exactly(table, method, dataset):
    model = build_preset(f"{table}/{method}_{dataset}")
    counts = count_parameters(model)
    assert counts["params/trainable"] == TRAINABLE[(method, dataset)]
    total = RESNET50_WITHOUT_CLASSIFIER + classifier(CLASSES[dataset])
    total += {"tkm1": MODULATORS, "tkm2": MODULATORS, "tinytl": LITE_RESIDUALS}.get(method, 0)
    assert counts["params/total"] == total


@pytest.mark.parametrize("method", ["tbl1", "tkm1", "tkm2", "tbl2", "nc", "tinytl"])
def test_counts_are_identical_with_batchnorm_and_groupnorm(method):
    table = "table2" if method in ("nc", "tinytl") else "fig4"
    gn = build_preset(f"{table}/{method}_cars")
    bn = build_preset(f"{table}/{method}_cars", "backbone=resnet50")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in gn.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in bn.modules())
    assert component_counts(gn) == component_counts(bn)
    assert count_parameters(gn) == count_parameters(bn) != {}


def test_tkm2_matches_the_papers_rounded_figures():
    tkm2 = sum(TRAINABLE[("tkm2", d)] for d in CLASSES) / 4  # 316,198.75 on average over the four datasets
    tbl2 = sum(TRAINABLE[("tbl2", d)] for d in CLASSES) / 4
    # "75X fewer trainable parameters than the TBL-2 model": 75.15
    assert round(tbl2 / tkm2) == 75
    # "KM ... require[s] only an additional 1.4% of the base network parameters": TKM-2 trains 1.3451% of
    # the 23.5 M backbone (1.3306% of the whole TBL-2 network). That is 1.4% only when 1.345 is rounded to
    # 1.35 and then to 1.4 (or rounded up); the paper's own 43X of Sec. V fits 1.33%, not 1.4% (see below).
    pct = 100 * tkm2 / RESNET50_WITHOUT_CLASSIFIER
    assert pct == pytest.approx(1.3451, abs=1e-4)
    assert round(round(pct, 2), 1) == 1.4 and abs(pct - 1.4) < 0.06
    # Sec. V: 100 networks vs one network + 100 patches of 1.4% each, "a 43X memory reduction".
    # 1 / (1/100 + 0.014) = 41.7 (the paper's printed arithmetic, 9400 / 226), while the measured fraction
    # gives 42.9, i.e. the printed 43X.
    fraction = tkm2 / tbl2
    assert round(1 / (1 / 100 + fraction)) == 43
    assert round(1 / (1 / 100 + 0.014), 1) == 41.7
