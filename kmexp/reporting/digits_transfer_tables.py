"""Digits-analog tables of the transfer, model-patch and few-shot experiments (digits profile).

``python -m kmexp.reproduce all --profile digits`` (:mod:`kmexp.reporting.profiles`) runs these next
to the from-scratch tables of :mod:`kmexp.reporting.digits_tables`:

- **pretraining** (``digits_pretrain_gn``, ``digits_pretrain_bn``): one run each, trained once (seed 0
  whatever ``--seeds`` says) on digits 0-4: a GroupNorm ResNet-20 (KM's transfer recipe uses GN) and a
  BatchNorm MobileNetV2 (model patches' network; its "+ statistics" rows need BN). The transfer tables
  load their ``checkpoints/last.ckpt`` (:mod:`kmexp.reporting.dependencies`: required tables run first,
  and the checkpoint's run identity is part of every transfer run's identity).
- **KM Table II / Fig. 4** (``table2_digits``, ``fig4_digits``): transfer to digits 5-9 with NC, TTL,
  TKM-1, TKM-2, TBL-2 and TBL-1; accuracy against trainable parameters.
- **model patches Tables 2 / 6** (``mp_table2_digits``, ``mp_table6_digits``): last layer, + statistics,
  S/B patch, DW patch, all, on the same transfer pair; **Table 4** (``mp_table4_digits``): multi-task
  training of the two halves with private patches.
- **KM Table III** (``table3_digits``): MAML, ANIL and KM, 5-way 1-shot on the bundled glyphs, meta-train
  and meta-test classes disjoint, 600 test tasks, mean and 95% CI.

Budgets: chosen once per table by ``scripts/digits_budget_search.py`` on the validation split, seed 0
(never the test split); candidates and validation accuracies are in each table's note and preset.
"""

from __future__ import annotations

from kmexp.reporting.dependencies import checkpoint_of
from kmexp.reporting.tables import Row, Table, register

PAIR = ("scikit-learn's handwritten digits (real data, bundled), transfer pair: pretrained on digits 0-4 "
        "(587 train / 152 val / 162 test images), transferred to digits 5-9 relabelled 0..4 (610 / 148 / 138; "
        "the fixed 1,197 / 300 / 300 split restricted to each half)")
PAIR_SHORT = "scikit-learn digits 0-4 -> 5-9"
_SEEDS = (0, 1, 2)

# --- Pretraining (run once; the transfer tables require these) ------------------------------------
_PRETRAIN_METRICS = ("test/acc", "params/trainable", "params/total")
_PRETRAIN_LABELS = {"test/acc": "accuracy on digits 0-4 (%)", "params/trainable": "# trainable", "params/total": "# total"}
GN_PRETRAIN_SEARCH = ("Budget search (validation split, seed 0, batch 64, 8x8): lr 0.05: 10 epochs 94.1%, "
                      "20 epochs 99.3%; lr 0.1: 10 epochs 91.4%, 20 epochs 100.0% -> lr 0.1, 20 epochs.")
register(
    "digits_pretrain_gn",
    Table(
        title="Pretraining: GN ResNet-20 fully trained on digits 0-4 (KM transfer)",
        rows=(Row("resnet20_gn", "digits/pretrain_resnet20_gn", "ResNet-20 (GN), full training", paper=None),),
        metrics=_PRETRAIN_METRICS,
        metric_labels=_PRETRAIN_LABELS,
        paper_table=None,
        seeds=(0,),
        fixed_seeds=True,
        exclude_from_all=True,
        digits=(),  # the preset's budget (configs/experiment/digits/pretrain_resnet20_gn.yaml)
        data=PAIR,
        data_short=PAIR_SHORT,
        note="One run, loaded by every run of table2_digits / fig4_digits. " + GN_PRETRAIN_SEARCH,
    ),
)
MBV2_PRETRAIN_SEARCH = ("Budget search (validation split, seed 0, batch 64, 16x16): lr 0.1: 10 epochs 46.7%, 20 epochs "
                        "16.4%; lr 0.05: 10 epochs 89.5%, 20 epochs 88.2%; lr 0.02 / 0.01: 20 epochs 90.8% -> lr 0.01, "
                        "20 epochs.")
register(
    "digits_pretrain_bn",
    Table(
        title="Pretraining: MobileNetV2 0.35 (BN) fully trained on digits 0-4",
        rows=(Row("mobilenet_v2", "digits/pretrain_mobilenet_v2", "MobileNetV2 0.35 (BN), full training", paper=None),),
        metrics=_PRETRAIN_METRICS,
        metric_labels=_PRETRAIN_LABELS,
        paper_table=None,
        seeds=(0,),
        fixed_seeds=True,
        exclude_from_all=True,
        digits=(),  # the preset's budget (configs/experiment/digits/pretrain_mobilenet_v2.yaml)
        data=PAIR,
        data_short=PAIR_SHORT,
        note="One run, loaded by every run of mp_table2_digits / mp_table6_digits. " + MBV2_PRETRAIN_SEARCH,
    ),
)

# --- KM Table II / Fig. 4 ---------------------------------------------------------------------------
_GN_START = ("backbone.pretrained=true", checkpoint_of("digits_pretrain_gn", "resnet20_gn"))
TRANSFER_BUDGET = ("optim.lr=0.005", "trainer.max_epochs=20", "dataset.datamodule.batch_size=32")
TRANSFER_SEARCH = ("Budget search (validation split, seed 0, batch 32, the TKM-2 and TBL-2 rows, best mean): lr 1e-3: "
                   "10 epochs TKM-2 75.7% / TBL-2 97.3%, 20 epochs 91.9 / 98.0; lr 5e-3: 10 epochs 98.6 / 98.6, "
                   "20 epochs 99.3 / 99.3 -> lr 5e-3, 20 epochs.")
_TRANSFER_ROWS = {  # key: (label, overrides)
    "nc": ("NC (implicit + classifier)", ("method=bl",)),
    "ttl": ("TTL (TinyTL-L+B)", ("method=tinytl",)),
    "tkm1": ("TKM-1", ("method=km", "method.components=[explicit,classifier]")),
    "tkm2": ("TKM-2", ("method=km",)),
    "tbl2": ("TBL-2", ("method=full",)),
    "tbl1": ("TBL-1", ("method=last_layer", "method.norm_stats=update")),
}
_PAPER_COLUMN = "cars"  # the paper's Stanford Cars column, for orientation (TKM-2's 462,190 count is on Cars)
_PAPER_LABEL = "paper, ResNet-50 on Stanford Cars — a different network and dataset"


def _transfer_row(key: str, paper) -> Row:
    label, overrides = _TRANSFER_ROWS[key]
    return Row(key, "table2/digits", label, (*_GN_START, *overrides), paper=paper)


register(
    "table2_digits",
    Table(
        title="KM Table II on digits: GN ResNet-20 transferred from 0-4 to 5-9",
        rows=tuple(_transfer_row(k, ("nc2", _PAPER_COLUMN) if k == "nc" else "default")
                   for k in ("nc", "ttl", "tkm1", "tkm2", "tbl2")),
        metrics=("test/acc", "params/trainable", "params/trainable_pct", "patch/bytes"),
        metric_labels={"test/acc": "accuracy (%)", "params/trainable": "# trainable",
                       "params/trainable_pct": "trainable %", "patch/bytes": "patch bytes"},
        paper_table="km_table2",
        paper_column=_PAPER_COLUMN,
        paper_label=_PAPER_LABEL,
        seeds=_SEEDS,
        exclude_from_all=True,
        requires=("digits_pretrain_gn",),
        digits=TRANSFER_BUDGET,
        data=PAIR,
        data_short=PAIR_SHORT,
        note=TRANSFER_SEARCH,
    ),
)
register(
    "fig4_digits",
    Table(
        title="KM Fig. 4 on digits: accuracy vs trainable parameters",
        rows=tuple(_transfer_row(k, (k, _PAPER_COLUMN) if k != "tbl1" else None) for k in ("tbl1", "tkm1", "tkm2", "tbl2")),
        metrics=("test/acc", "params/trainable", "params/trainable_pct"),
        metric_labels={"test/acc": "accuracy (%)", "params/trainable": "# trainable", "params/trainable_pct": "trainable %"},
        paper_table="km_table2",
        paper_column=_PAPER_COLUMN,
        paper_label="paper Table II, Cars (Fig. 4 prints no numbers)",
        plot="params",
        seeds=_SEEDS,
        exclude_from_all=True,
        requires=("digits_pretrain_gn",),
        digits=TRANSFER_BUDGET,  # the same runs as table2_digits (TKM-1, TKM-2, TBL-2)
        data=PAIR,
        data_short=PAIR_SHORT,
        note="TKM-1, TKM-2 and TBL-2 are table2_digits' runs. " + TRANSFER_SEARCH,
    ),
)

# --- Model patches Tables 2 / 6 / 4 -----------------------------------------------------------------
_BN_START = ("backbone.pretrained=true", checkpoint_of("digits_pretrain_bn", "mobilenet_v2"))
MP_BUDGET = ("optim.lr=0.01423", "trainer.max_epochs=12", "dataset.datamodule.batch_size=32")
# The learning rates are model patches Fig. 3's grid (0.0045 ... 0.45, sqrt(10) apart) around the paper's 0.045; the
# schedule (x0.98 every 2.5 epochs) does not depend on the run's length, so epoch k of a 15-epoch run is the
# k-epoch candidate.
MP_SEARCH = ("Budget search (validation split, seed 0, batch 32, the S/B patch + last layer row, RMSProp of Sec. 5, "
             "val accuracy after epochs 1..15): lr 0.00045: best 52.0 (final 46.6); lr 0.0045: best 63.5 at epoch 14 "
             "(final 58.8); lr 0.01423: 48.6 51.4 52.0 52.0 48.0 47.3 37.2 42.6 43.9 58.1 60.8 68.2 59.5 54.1 67.6; "
             "lr 0.045: at most 38.5 (final 16.2) -> lr 0.01423, 12 epochs (68.2). Validation accuracy swings by "
             "10 points between epochs: this BN MobileNetV2 transfers poorly from digits 0-4 at 16x16.")
_MP_ROWS = {  # key: (label, overrides)
    "last_layer": ("Last layer (statistics frozen)", ("method=last_layer",)),
    "last_layer_bn_stats": ("+ statistics re-estimated", ("method=last_layer", "method.norm_stats=epoch_average")),
    "sb_last_layer": ("S/B patch + last layer", ("method=sb_patch", "method.train_classifier=true")),
    "sb_only_random_last": ("S/B patch only (random last layer)", ("method=sb_patch",)),
    "dw_last_layer": ("DW patch + last layer", ("method=dw_patch", "method.train_classifier=true")),
    "all_ours": ("All parameters", ("method=full",)),
}
_MP_PAPER_LABEL = "paper, Flowers (InceptionV3 / MobileNetV2) — a different network and dataset"


def _mp_row(key: str, paper="default") -> Row:
    label, overrides = _MP_ROWS[key]
    return Row(key, "mp_table2/digits", label, (*_BN_START, *overrides), paper=paper)


_MP_COMMON = dict(
    paper_label=_MP_PAPER_LABEL,
    seeds=_SEEDS,
    exclude_from_all=True,
    requires=("digits_pretrain_bn",),
    digits=MP_BUDGET,
    data=PAIR,
    data_short=PAIR_SHORT,
)
register(
    "mp_table2_digits",
    Table(
        title="Model patches Table 2 (+ DW patch) on digits: MobileNetV2, 0-4 -> 5-9",
        rows=(_mp_row("last_layer"), _mp_row("sb_last_layer"), _mp_row("sb_only_random_last"),
              _mp_row("dw_last_layer", paper=None), _mp_row("all_ours")),
        metrics=("test/acc", "params/trainable", "params/total"),
        metric_labels={"test/acc": "accuracy (%)", "params/trainable": "# trainable", "params/total": "# total"},
        paper_table="mp_table2",
        paper_column="flowers_accuracy",
        plot="params",
        note="Paper column: Table 2's InceptionV3 on Flowers (the DW patch has no Table 2 row). " + MP_SEARCH,
        **_MP_COMMON,
    ),
)
register(
    "mp_table6_digits",
    Table(
        title="Model patches Table 6 on digits: BN statistics, last-layer tuning",
        rows=(_mp_row("last_layer"), _mp_row("last_layer_bn_stats"),
              _mp_row("sb_last_layer", paper=("last_layer_bn_stats_sb", "flowers"))),
        metrics=("test/acc", "params/trainable", "params/total"),
        metric_labels={"test/acc": "accuracy (%)", "params/trainable": "# trainable", "params/total": "# total"},
        paper_table="mp_table6",
        paper_column="flowers",
        note="Last layer and S/B + last layer are mp_table2_digits' runs. " + MP_SEARCH,
        **_MP_COMMON,
    ),
)
MP_MULTITASK_NOTE = ("Budget: the MobileNetV2 pretraining budget (same network, same images, from scratch), not "
                     "searched again.")
register(
    "mp_table4_digits",
    Table(
        title="Model patches Table 4 on digits: multi-task halves, private patches",
        rows=(Row("sb_patch_last_layer", "mp_table4/digits", "S/B patch + last layer private", ("multitask=sb_patch_last_layer",)),
              Row("last_layer", "mp_table4/digits", "Last layer private", ("multitask=last_layer",))),
        metrics=("test/low/acc", "test/high/acc", "params/total"),
        metric_labels={"test/low/acc": "digits 0-4 (%)", "test/high/acc": "digits 5-9 (%)", "params/total": "# total"},
        paper_table="mp_table4",
        paper_column="imagenet",
        paper_label="paper, ImageNet (Places-365: S/B 54.3, last layer 51.4)",
        seeds=_SEEDS,
        exclude_from_all=True,
        digits=(),  # the preset's budget (configs/experiment/mp_table4/digits.yaml)
        data=PAIR,
        data_short=PAIR_SHORT,
        note=MP_MULTITASK_NOTE,
    ),
)

# --- KM Table III (few-shot) ------------------------------------------------------------------------
GLYPHS = ("the bundled glyphs (kmexp/data/glyphs.py: 100 generated 28x28 'characters', 20 drawings each), "
          "classes split 64 / 16 / 20 into disjoint meta-train / meta-validation / meta-test sets; 5-way 1-shot "
          "tasks, 600 meta-test tasks (mean and 95% CI over tasks)")
# The preset's recipe (Adam 1e-3, constant; meta-batch 4, 50 meta-iterations per epoch; MAML's Omniglot
# 5-way inner loop); searched: the number of epochs, 1-6, from one 6-epoch run per method (a constant rate
# makes epoch k of that run the k-epoch candidate), on the 50 meta-validation tasks.
FEWSHOT_BUDGET = ("meta.num_test_tasks=600", "trainer.max_epochs=6")
FEWSHOT_SEARCH = ("Budget search (meta-validation tasks, seed 0; val accuracy after epochs 1..6 of one 6-epoch run "
                  "per method, constant learning rate): MAML 66.5 70.2 72.9 73.4 75.6 76.5; ANIL 25.8 27.2 31.0 33.4 "
                  "38.2 38.4; KM 42.7 60.4 65.4 68.0 68.6 69.8 -> 6 epochs (300 "
                  "meta-iterations), the best mean and the largest candidate: every curve still rises there.")
_FEWSHOT_PAPER_ROW = {"maml": "maml_finn", "anil": "anil_ours", "km": "km_ours"}
register(
    "table3_digits",
    Table(
        title="KM Table III on glyphs: 5-way 1-shot, disjoint meta-test classes",
        rows=tuple(Row(m, "glyphs/fewshot", m.upper(), (f"method={m}",), paper=(_FEWSHOT_PAPER_ROW[m], "omniglot_20w1s"))
                   for m in ("maml", "anil", "km")),
        metrics=("test/acc", "test/acc_ci95", "params/inner_loop", "params/outer_loop"),
        metric_labels={"test/acc": "accuracy (%)", "test/acc_ci95": "95% CI", "params/inner_loop": "# inner loop",
                       "params/outer_loop": "# outer loop"},
        paper_table="km_table3",
        paper_label="paper, Omniglot 20-way 1-shot — a different dataset and task size",
        seeds=_SEEDS,
        exclude_from_all=True,
        digits=FEWSHOT_BUDGET,
        data=GLYPHS,
        data_short="bundled glyphs",
        note=FEWSHOT_SEARCH,
    ),
)
