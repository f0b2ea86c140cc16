"""Paper tables as data: which runs form the rows, which metrics to report.

A table is one file: its column (or the whole table) is one experiment preset holding what
the rows share (``configs/experiment/<folder>/<name>.yaml``), and each :class:`Row` is that
preset plus the Hydra overrides that make the row (``method=km``, ``backbone.depth=8``).
Table ids start with their preset folder (``table1``, ``table2_cars``, ``ks_fig3_cifar10``), so
``python -m kmexp.reproduce table2`` runs every table of that folder. ``results/paper/`` holds the
paper's numbers, whose ``row`` ids match ``Row.key``. ``kmexp.reporting.reproduce`` trains each
distinct run once (``kmexp.reporting.runs``) and ``kmexp.reporting.results`` aggregates them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Row:
    """One cell group of a table: an experiment preset plus the overrides that make the row.

    Attributes:
        key: row id (also the default row id in results/paper/<paper_table>.csv).
        experiment: configs/experiment/<experiment>.yaml (the column's preset).
        label: shown in the table (default: key upper-cased).
        overrides: Hydra overrides that define the row (e.g. ``method=km``, ``backbone.depth=8``);
            ``python -m kmexp.train experiment=<experiment> <overrides>`` trains one cell.
        x: the row's position on a figure's x axis (depth, width ...).
        paper: (row, column) of the paper's number in the paper CSV, when it differs from
            (key, the table's paper_column); None means the paper prints nothing for it.
    """

    key: str
    experiment: str
    label: str = ""
    overrides: tuple[str, ...] = ()
    x: float | None = None
    series: str = ""  # figure series the row belongs to (e.g. "2 kernels")
    paper: tuple[str, str] | None | str = "default"

    def __post_init__(self):
        if not self.label:
            object.__setattr__(self, "label", self.key.upper())


@dataclass(frozen=True)
class Table:
    title: str
    rows: tuple[Row, ...]
    paper_table: str | None = None
    paper_label: str = "paper"
    paper_column: str = "accuracy"  # the column of results/paper/<paper_table>.csv with the rows' accuracy
    metrics: tuple[str, ...] = ("test/acc", "test/recovered_accuracy_ratio", "params/trainable", "params/total")
    metric_labels: dict = field(default_factory=lambda: {
        "test/acc": "accuracy (%)",
        "test/recovered_accuracy_ratio": "recovered ratio",
        "params/trainable": "# trainable",
        "params/total": "# total",
    })
    reference_row: str | None = None  # ratio denominator when no reference accuracy is configured
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    note: str = ""
    mini: tuple[str, ...] = ("dataset=digits",)  # extra overrides of the mini profile (bundled data)
    plot: str | None = None  # figure kind drawn by kmexp.reporting.plots ("bar", "params", "ablation", ...)
    x_label: str | None = None  # for plot="scaling": what the rows' x values are
    exclude_from_all: bool = False  # e.g. tables that are themselves small-data variants
    # Overrides of the digits profile (kmexp.reporting.profiles): None keeps the table out of it. The
    # digits-analog tables (``<paper table id>_digits``, exclude_from_all=True) set it to their budget.
    digits: tuple[str, ...] | None = None
    # Fig. 3 of Kernel Modulation: draw the weight histograms of the table's km and full rows (first seed)
    weight_histograms: bool = False
    # Tables whose runs this table's rows start from ({run:<table>/<row>} in an override; planned and run
    # first, kmexp.reporting.dependencies), and whether the table keeps its own seeds whatever --seeds says
    # (a pretraining run trained once for every seed of the tables that load it).
    requires: tuple[str, ...] = ()
    fixed_seeds: bool = False
    data: str | None = None  # what the digits profile's header says the data is (default: all the digits)
    data_short: str | None = None  # ... and its figure titles (default: scikit-learn digits)


TABLES: dict[str, Table] = {}


def register(table_id: str, table: Table) -> None:
    TABLES[table_id] = table


_TABLE1 = "table1/cifar10"
_KM_ROW = ("method=km", "save_init_checkpoint=true")  # init.ckpt: Fig. 3A's modulated weights before training
_REF = "reference_accuracy=0.928"  # the fully trained ResNet-32's 92.8% (Sec. IV-A) for the other networks
# He et al. 2016 Sec. 4.2, ResNet-110: "0.1 is slightly too large to start converging. So we use 0.01 to warm
# up the training until the training error is below 80% (about 400 iterations), and then go back to 0.1".
# A fixed 400 optimizer steps stands in for the error criterion (configs/optim/sgd_resnet.yaml).
_RESNET110_WARMUP = ("optim.scheduler.warmup.until=400", "optim.scheduler.warmup.factor=0.1")
register(
    "table1",
    Table(
        title="Kernel Modulation Table I: ResNet-32 trained from scratch on CIFAR-10",
        rows=(
            Row("full", _TABLE1, "Fully trained ResNet-32", ("method=full",)),
            Row("bl", _TABLE1, "BL", ("method=bl",)),
            Row("km", _TABLE1, "KM", _KM_ROW),
            Row("sn", _TABLE1, "SN (small ResNet)", ("method=full", "backbone=resnet8_w5_projection", _REF)),
            Row("ld", _TABLE1, "LD (RBD, ResNet-8)", ("method=full", "optim=rbd", "backbone=resnet8_tf", _REF)),
            Row("tbn", _TABLE1, "TBN (ResNet-110)", ("method=bl", "backbone=resnet110", _REF, *_RESNET110_WARMUP)),
        ),
        paper_table="km_table1",
        paper_label="paper, CIFAR-10",
        reference_row="full",  # only used when a run has no configured reference accuracy
        # the presets' CIFAR-10 reference (92.8%) means nothing on digits: ratios vs the sweep's full row
        mini=("dataset=digits", "reference_accuracy=null"),
    ),
)

# Fig. 5: Table I's KM cell with one modulator setting changed (Sec. IV-D: "following the same training
# schedule"); the default setting (tanh, default init, depth 2) is Table I's KM run itself.
_FIG5 = (
    [Row(f"activation_{a}", _TABLE1, f"activation {a}", (*_KM_ROW, f"modulator.activation={a}"))
     for a in ("tanh", "sin", "leaky_relu", "relu")]
    + [Row(f"init_{i}", _TABLE1, f"init {i}", (*_KM_ROW, f"modulator.init={i}")) for i in ("default", "orthogonal", "diagonal")]
    + [Row(f"depth_{d}", _TABLE1, f"depth {d}", (*_KM_ROW, f"modulator.depth={d}")) for d in (1, 2, 5, 10, 20, 50)]
)
register(
    "fig5",
    Table(
        title="Kernel Modulation Fig. 5: modulator ablations (ResNet-32, CIFAR-10)",
        rows=tuple(_FIG5),
        paper_table=None,
        plot="ablation",
        note="The paper plots Fig. 5 without printing its values (see results/paper/README.md).",
    ),
)


# Model patches (Mudrakarta et al., "K for the price of 1"). The paper's tables have one column per
# dataset, so each dataset is its own table here (paper_column picks the CSV column). Mini profile:
# bundled digits, random weights, small inputs.
_MP_MINI = ("dataset=digits", "++backbone.pretrained=false", "++dataset.datamodule.image_size=32")
# Paper-row names live here, not as method aliases: "S/B + last layer" is the S/B patch with a trained classifier.
_SB_LAST = ("method=sb_patch", "method.train_classifier=true")
_DW_LAST = ("method=dw_patch", "method.train_classifier=true")
_MP_TABLE2_ROWS = (("last_layer", "Last layer", ("method=last_layer",)), ("sb_last_layer", "S/B + last layer", _SB_LAST),
                   ("sb_only_random_last", "S/B only (random last)", ("method=sb_patch",)), ("all_ours", "All", ("method=full",)))
for _ds, _title in (("flowers", "Flowers"), ("cars", "Cars"), ("aircraft", "Aircraft")):
    register(
        f"mp_table2_{_ds}",
        Table(
            title=f"Model patches Table 2: InceptionV3 transfer learning, {_title}",
            rows=tuple(Row(key, "mp_table2/inception_v3", label, (f"dataset={_ds}_mp", *method))
                       for key, label, method in _MP_TABLE2_ROWS),
            paper_table="mp_table2",
            paper_column=f"{_ds}_accuracy",
            plot="params",
            mini=(*_MP_MINI, "++backbone.input_size=75"),  # InceptionV3 needs at least 75x75
        ),
    )
def _mp_dataset(ds: str) -> tuple[str, ...]:
    """The model-patches dataset at MobileNetV2's 224x224 (CIFAR-100's config sets its own size)."""
    return (f"dataset={ds}_mp",) if ds == "cifar100" else (f"dataset={ds}_mp", "++dataset.datamodule.image_size=224")


for _ds, _title in (("flowers", "Flowers"), ("aircraft", "Aircraft"), ("cars", "Stanford Cars"), ("cifar100", "CIFAR-100")):
    register(
        f"mp_table6_{_ds}",
        Table(
            title=f"Model patches Table 6: batch-norm statistics in last-layer fine-tuning (MobileNetV2), {_title}",
            rows=(
                Row("last_layer", "mp_transfer", "Last layer (statistics frozen)", (*_mp_dataset(_ds), "method=last_layer")),
                Row("last_layer_bn_stats", "mp_transfer", "+ statistics re-estimated",
                    (*_mp_dataset(_ds), "method=last_layer", "method.norm_stats=epoch_average")),
                Row("last_layer_bn_stats_sb", "mp_transfer", "+ scales and biases", (*_mp_dataset(_ds), "method=sb_patch", "method.train_classifier=true")),
            ),
            paper_table="mp_table6",
            paper_column=_ds,
            mini=(*_MP_MINI, "++backbone.input_size=32"),
        ),
    )
# Fig. 3 (accuracy vs. trainable parameters) and Figs. 8/9 (accuracy vs. learning rate): every approach at
# five initial learning rates, one table per dataset. MobileNetV2 rows use Table 6's recipe, InceptionV3 rows
# Table 2's (it has no depthwise convolutions; no CIFAR-100 column). The cells at lr 0.045 are Tables 2 and 6's runs.
MP_FIG3_LRS = ("0.0045", "0.01423", "0.045", "0.1423", "0.45")  # "0.0045 to 0.45": five rates sqrt(10) apart
_MP_FIG3_APPROACHES = {
    "mobilenet_v2": (("last_layer", ("method=last_layer",)), ("sb_only", ("method=sb_patch",)), ("sb_last_layer", _SB_LAST),
                     ("dw_only", ("method=dw_patch",)), ("dw_last_layer", _DW_LAST), ("all", ("method=full",))),
    "inception_v3": (("last_layer", ("method=last_layer",)), ("sb_only_random_last", ("method=sb_patch",)),
                     ("sb_last_layer", _SB_LAST), ("all_ours", ("method=full",))),
}
for _ds in ("flowers", "cars", "aircraft", "cifar100"):
    _rows = []
    for _net, _approaches in _MP_FIG3_APPROACHES.items():
        if _net == "inception_v3" and _ds == "cifar100":
            continue
        _data = _mp_dataset(_ds) if _net == "mobilenet_v2" else (f"dataset={_ds}_mp",)
        _preset = "mp_transfer" if _net == "mobilenet_v2" else "mp_table2/inception_v3"
        _rows += [Row(f"{_net}_{key}_lr{lr}", _preset, f"{_net} {key}, lr {lr}", (*_data, *method, f"optim.lr={lr}"),
                      x=float(lr), series=f"{_net} {key}", paper=None)
                  for key, method in _approaches for lr in MP_FIG3_LRS]
    register(
        f"mp_fig3_{_ds}",
        Table(
            title=f"Model patches Fig. 3 / Figs. 8-9: accuracy vs. learning rate and trainable parameters, {_ds}",
            rows=tuple(_rows),
            metrics=("test/acc", "params/trainable", "params/total"),
            metric_labels={"test/acc": "accuracy (%)", "params/trainable": "# trainable", "params/total": "# total"},
            paper_table="mp_fig3",
            plot="scaling",
            x_label="initial learning rate",
            note="The paper prints no values for these figures (results/paper/mp_fig3.csv has the sweep's range).",
            mini=(*_MP_MINI, "++backbone.input_size=75"),  # InceptionV3 needs at least 75x75
        ),
    )
register(
    "mp_table3",
    Table(
        title="Model patches Table 3 (right): ImageNet from a random MobileNetV2",
        rows=(
            Row("last_layer", "mp_table3/imagenet", "Last layer", ("method=last_layer",)),
            Row("sb_last_layer", "mp_table3/imagenet", "S/B + last layer", ("method=sb_patch", "method.train_classifier=true",)),
            Row("sb_only", "mp_table3/imagenet", "S/B only", ("method=sb_patch",)),
            Row("all_params", "mp_table3/imagenet", "All params", ("method=full",)),
        ),
        paper_table="mp_table3",
        paper_column="random_to_imagenet_top1",
        plot="params",
        mini=("dataset=digits", "++backbone.input_size=32"),
        note="The left column (COCO SSD feature extractor -> ImageNet) is not reproduced (no SSD checkpoint).",
    ),
)
# Table 4's multi-task columns are one table each (one run holds both tasks' accuracies), so that the
# mini profile can swap each task's dataset, which Hydra allows only outside a sweep over experiments.
for _row, _label, _places in (("sb_patch_last_layer", "S/B patch + last layer", 54.3), ("last_layer", "Last layer", 51.4)):
    register(
        f"mp_table4_{_row}",
        Table(
            title=f"Model patches Table 4: multi-task MobileNetV2 on ImageNet and Places-365, private {_label.lower()}",
            rows=(Row(_row, "mp_table4/multitask", _label, (f"multitask={_row}",)),),
            metrics=("test/imagenet/acc", "test/places365/acc", "params/total"),
            metric_labels={"test/imagenet/acc": "ImageNet (%)", "test/places365/acc": "Places-365 (%)",
                           "params/total": "# total"},
            paper_table="mp_table4",
            paper_column="imagenet",
            paper_label="paper, ImageNet",
            mini=("dataset@multitask.tasks.imagenet.dataset=digits", "dataset@multitask.tasks.places365.dataset=digits",
                  "++backbone.width_mult=0.35"),
            note=f"Paper, Places-365: {_places}. Independently trained: table mp_table4_independent.",
        ),
    )
register(
    "mp_table4_independent",
    Table(
        title="Model patches Table 4: independently trained MobileNetV2s",
        rows=(
            Row("independent", "mp_table4/independent", "ImageNet", ("dataset=imagenet",)),
            Row("independent_places365", "mp_table4/independent", "Places-365", ("dataset=places365",),
                paper=("independent", "places365")),
        ),
        paper_table="mp_table4",
        paper_column="imagenet",
    ),
)
_RES = (96, 128, 160, 192, 224)
register(
    "mp_table5",
    Table(
        title="Model patches Table 5: one MobileNetV2 at 5 resolutions (ImageNet)",
        rows=(Row("sb_patch", "mp_table5/multires", "S/B patch", ("multitask=sb_patch",)),
              Row("all_shared", "mp_table5/multires", "All shared", ("multitask=all_shared",))),
        metrics=(*(f"test/res{r}/acc" for r in _RES), "params/total"),
        metric_labels={**{f"test/res{r}/acc": f"{r}x{r} (%)" for r in _RES}, "params/total": "# total"},
        paper_table="mp_table5",
        paper_column="res224",
        paper_label="paper, 224x224",
        mini=("dataset=digits", "++backbone.width_mult=0.35", *(f"++multitask.tasks.res{r}.input_size={r // 7}" for r in _RES)),
        note="Paper, 96 / 128 / 160 / 192 / 224: S/B patch 60.3 / 66.3 / 69.5 / 71 / 71.8; all shared "
             "52.6 / 62.4 / 67.2 / 69.4 / 70.6.",
    ),
)
register(
    "mp_table5_independent",
    Table(
        title="Model patches Table 5: independently trained MobileNetV2s per resolution (ImageNet)",
        rows=tuple(Row(f"independent_res{r}", "mp_table4/independent", f"{r}x{r}",
                       ("dataset=imagenet", f"dataset.datamodule.image_size={r}"), paper=("independent", f"res{r}"))
                   for r in _RES),
        paper_table="mp_table5",
        mini=("dataset=digits", "++dataset.datamodule.image_size=32"),
    ),
)


# Kernel sharing (Azadbakht et al.). Mini profile: bundled digits at 8x8 pixels (ConvMixer has
# patch size 1, so its cost grows with pixels x width^2 x depth), batches of 2.
_KS_MINI = ("dataset=digits", "++dataset.datamodule.image_size=8", "dataset.datamodule.batch_size=2",
            "++dataset.datamodule.eval_batch_size=2")
_KS_METRICS = ("test/acc", "params/trainable", "params/total", "params/gflops")
_KS_LABELS = {"test/acc": "accuracy (%)", "params/trainable": "# trainable", "params/total": "# total",
              "params/gflops": "GFLOPs"}
register(
    "ks_table1",
    Table(
        title="Kernel sharing Table 1: iso-parameter ConvMixers on CIFAR-10",
        rows=tuple(
            Row(f"{kind}_{dim}_{depth}", "ks_table1/convmixer", label,
                (f"sharing={'none' if kind == 'baseline' else 'kernels2'}", f"backbone.dim={dim}", f"backbone.depth={depth}"))
            for kind, dim, depth, label in (("baseline", 128, 4, "ConvMixer-128/4"),
                                            ("shared", 283, 4, "Kernel-shared ConvMixer-283/4"),
                                            ("baseline", 128, 8, "ConvMixer-128/8"),
                                            ("shared", 410, 8, "Kernel-shared ConvMixer-410/8"))
        ),
        metrics=_KS_METRICS,
        metric_labels=_KS_LABELS,
        paper_table="ks_table1",
        paper_label="paper, CIFAR-10",
        mini=_KS_MINI,
    ),
)

# (row prefix, sharing config, paper row, label)
_KS_FIG3_SERIES = (("baseline", "none", "baseline", "baseline"), ("kernels2", "kernels2", "two_kernel", "2 kernels"),
                   ("kernels4", "kernels4", "four_kernel", "4 kernels"), ("kernels8", "kernels8", "eight_kernel", "8 kernels"))


def _optimum(paper_csv: str, paper_row: str, column: str) -> float | None:
    import csv
    from pathlib import Path

    from kmexp.resources import paper_dir

    path = (paper_dir() or Path("/nonexistent")) / f"{paper_csv}.csv"
    if path.is_file():
        for r in csv.DictReader(path.open()):
            if r["row"] == paper_row and r["column"] == column and r["value"]:
                return float(r["value"])
    return None


def _depth_rows(study: str, dataset: str, series, depths, skip=()) -> tuple[Row, ...]:
    """Rows of a depth sweep (KS Figs. 3 and 5): one per (series, depth); the paper's number
    sits on the row at the optimum depth the text states."""
    rows = []
    for exp, sharing, paper_row, label in series:
        best = _optimum(study, paper_row, f"{dataset}_optimum_depth")
        for depth in depths:
            if (exp, depth) in skip:
                continue
            rows.append(Row(f"{exp}_d{depth}", f"{study}/{dataset}", f"{label}, depth {depth}",
                            overrides=(f"sharing={sharing}", f"backbone.depth={depth}"), x=depth, series=label,
                            paper=(paper_row, f"{dataset}_accuracy") if best == depth else None))
    return tuple(rows)


for _ds in ("cifar10", "cifar100"):
    register(
        f"ks_fig3_{_ds}",
        Table(
            title=f"Kernel sharing Fig. 3: iso-channel ConvMixer-384/N, {_ds.upper()}",
            # 8 kernels at N=4 is one block per quarter, i.e. the baseline; the paper skips it
            rows=_depth_rows("ks_fig3", _ds, _KS_FIG3_SERIES, (4, 8, 12, 16, 20, 24), skip={("kernels8", 4)}),
            metrics=_KS_METRICS,
            metric_labels=_KS_LABELS,
            paper_table="ks_fig3",
            paper_label="paper: optimum depth only (Sec. 3.2)",
            plot="scaling",
            x_label="depth N",
            mini=_KS_MINI,
        ),
    )

register(
    "ks_fig4",
    Table(
        title="Kernel sharing Fig. 4: iso-depth ConvMixer-C/20, CIFAR-100",
        rows=tuple(
            Row(f"{_exp}_c{_c}", "ks_fig4/cifar100", f"{_exp}, C={_c}",
                overrides=(f"sharing={_sharing}", f"backbone.dim={_c}"), x=_c, series=_exp, paper=None)
            for _exp, _sharing in (("baseline", "none"), ("shared", "kernels2")) for _c in range(128, 1153, 128)
        ),
        metrics=_KS_METRICS,
        metric_labels=_KS_LABELS,
        paper_table="ks_fig4",
        plot="scaling",
        x_label="channels C",
        note="The paper plots Fig. 4 without printing accuracies.",
        mini=_KS_MINI,
    ),
)

_KS_FIG5_SERIES = (("baseline", "none", "baseline", "baseline"),
                   ("stages_all", "stages_all", "ks_all_stages", "shared: all stages"),
                   ("stages_23", "stages_23", "ks_stage23", "shared: stages 2-3"),
                   ("stages_3", "stages_3", "ks_stage3", "shared: stage 3"))
for _ds in ("cifar10", "cifar100"):
    register(
        f"ks_fig5_{_ds}",
        Table(
            title=f"Kernel sharing Fig. 5: SE-ResNet with d blocks per stage, {_ds.upper()}",
            rows=_depth_rows("ks_fig5", _ds, _KS_FIG5_SERIES, (2, 3, 4, 6, 8, 10)),
            metrics=_KS_METRICS,
            metric_labels=_KS_LABELS,
            paper_table="ks_fig5",
            paper_label="paper: optimum depth only (Sec. 3.3)",
            plot="scaling",
            x_label="blocks per stage d",
            mini=("dataset=digits", "dataset.datamodule.batch_size=2", "++dataset.datamodule.eval_batch_size=2",
                  "++dataset.datamodule.image_size=8"),
        ),
    )


# Kernel Modulation transfer learning (Sec. IV-B): one table per dataset, as the paper's columns.
# NC is our run of implicit + classifier on the paper's ResNet-50 setup; the paper's NC rows are
# cited from other networks (NC-2: TinyTL's), so the NC cell shows NC-2 and TTL shows TinyTL's row.
_TRANSFER_MINI = ("dataset=digits", "++backbone.pretrained=false", "dataset.datamodule.batch_size=2",
                  "++dataset.datamodule.eval_batch_size=2")
# Paper-row names live here, not as method aliases: NC is the BL method (implicit + classifier),
# TKM-2 is KM, TBL-2 trains every parameter (full).
for _ds in ("aircraft", "cars", "flowers", "food"):
    _cell = (f"dataset={_ds}",)
    register(
        f"table2_{_ds}",
        Table(
            title=f"Kernel Modulation Table II: ResNet-50 transfer learning, {_ds}",
            rows=(
                Row("nc", "transfer", "NC (implicit + classifier)", (*_cell, "method=bl"), paper=("nc2", _ds)),
                Row("ttl", "transfer", "TTL (TinyTL-L+B)", (*_cell, "method=tinytl")),
                Row("tkm1", "transfer", "TKM-1", (*_cell, "method=km", "method.components=[explicit,classifier]")),
                Row("tkm2", "transfer", "TKM-2", (*_cell, "method=km")),
                Row("tbl2", "transfer", "TBL-2", (*_cell, "method=full")),
            ),
            metrics=("test/acc", "params/trainable", "params/trainable_pct", "patch/bytes"),
            metric_labels={"test/acc": "accuracy (%)", "params/trainable": "# trainable",
                           "params/trainable_pct": "trainable %", "patch/bytes": "patch bytes"},
            paper_table="km_table2",
            paper_column=_ds,
            mini=_TRANSFER_MINI,
        ),
    )
    register(
        f"fig4_{_ds}",
        Table(
            title=f"Kernel Modulation Fig. 4: accuracy vs trainable parameters, {_ds}",
            rows=tuple(Row(m, "transfer", m.upper(), (*_cell, *method), paper=(m, _ds)
                           if m in ("tkm1", "tkm2", "tbl2") else None)
                       for m, method in (("tbl1", ("method=last_layer", "method.norm_stats=update")),
                                         ("tkm1", ("method=km", "method.components=[explicit,classifier]")),
                                         ("tkm2", ("method=km",)), ("tbl2", ("method=full",)))),
            metrics=("test/acc", "params/trainable", "params/trainable_pct"),
            metric_labels={"test/acc": "accuracy (%)", "params/trainable": "# trainable",
                           "params/trainable_pct": "trainable %"},
            paper_table="km_table2",
            paper_column=_ds,
            paper_label="paper Table II (Fig. 4 prints no numbers)",
            plot="params",
            mini=_TRANSFER_MINI,
        ),
    )


# Kernel Modulation meta-learning (Sec. IV-C): one table per few-shot setting. Our MAML run is
# shown beside MAML [8] (Finn et al.), ANIL and KM beside the paper's own runs.
_FEWSHOT_PAPER_ROW = {"maml": "maml_finn", "anil": "anil_ours", "km": "km_ours"}
for _setting, _title in (("omniglot_20w1s", "Omniglot 20-way 1-shot"), ("omniglot_20w5s", "Omniglot 20-way 5-shot"),
                         ("miniimagenet_5w1s", "mini-ImageNet 5-way 1-shot"),
                         ("miniimagenet_5w5s", "mini-ImageNet 5-way 5-shot")):
    register(
        f"table3_{_setting}",
        Table(
            title=f"Kernel Modulation Table III: {_title}",
            rows=tuple(Row(m, f"table3/{_setting}", m.upper(), (f"method={m}",), paper=(_FEWSHOT_PAPER_ROW[m], _setting))
                       for m in ("maml", "anil", "km")),
            metrics=("test/acc", "test/acc_ci95", "params/inner_loop", "params/outer_loop"),
            metric_labels={"test/acc": "accuracy (%)", "test/acc_ci95": "95% CI", "params/inner_loop": "# inner loop",
                           "params/outer_loop": "# outer loop"},
            paper_table="km_table3",
            mini=("dataset=fewshot_glyphs", "backbone=conv4_omniglot", "meta.ways=5", "meta.shots=1", "meta.query=1",
                  "meta.meta_batch_size=1", "meta.iterations_per_epoch=1", "meta.num_val_tasks=1",
                  "meta.num_test_tasks=2", "meta.inner_steps=1", "meta.test_inner_steps=1"),
        ),
    )


# KM vs LoRA (beyond the papers): LoRA on convolutions through peft with the rank rule of
# kmexp/lora.py (at most KM's modulator budget), BL (implicit + classifier) and BitFit, in the
# Table I setting (ResNet-32 from scratch, CIFAR-10) and the Table II setting (ImageNet-pretrained
# GN ResNet-50, one table per transfer dataset; TKM-2 = KM, NC = BL, so those cells are Table II's
# runs). `python -m kmexp.reproduce km_vs_lora` runs the whole group.
_KM_VS_LORA = (("km", "KM", ("method=km",)), ("lora", "LoRA (KM-matched rank)", ("method=lora",)),
               ("bl", "BL", ("method=bl",)), ("bitfit", "BitFit", ("method=bitfit",)))
_KM_VS_LORA_NOTE = "Not a paper table: LoRA's rank follows kmexp/lora.py (<= KM's modulator parameters on the same convolutions)."
register(
    "km_vs_lora_table1",
    Table(
        title="KM vs LoRA at matched budgets (not in the papers): Table I setting, ResNet-32 on CIFAR-10",
        rows=tuple(Row(key, _TABLE1, label, method) for key, label, method in _KM_VS_LORA),
        metrics=("test/acc", "params/trainable", "params/total"),
        note=_KM_VS_LORA_NOTE,
        mini=("dataset=digits", "reference_accuracy=null"),
    ),
)
for _ds in ("aircraft", "cars", "flowers", "food"):
    register(
        f"km_vs_lora_{_ds}",
        Table(
            title=f"KM vs LoRA at matched budgets (not in the papers): Table II setting, ResNet-50 transfer, {_ds}",
            rows=tuple(Row(key, "transfer", label, (f"dataset={_ds}", *method)) for key, label, method in _KM_VS_LORA),
            metrics=("test/acc", "params/trainable", "params/total"),
            note=_KM_VS_LORA_NOTE,
            mini=_TRANSFER_MINI,
        ),
    )

register(
    "km_vs_lora_digits",
    Table(
        title="KM vs LoRA vs BL at matched budgets on the bundled digits data (ResNet-32, 5 epochs; not a paper table)",
        rows=tuple(Row(key, "table1/digits", label, method) for key, label, method in _KM_VS_LORA),
        metrics=("test/acc", "params/trainable", "params/total"),
        seeds=(0, 1, 2),
        exclude_from_all=True,
        note="Small CPU comparison on 1,197 training digits: indicative only, not a paper result.",
    ),
)


# The digits profile's analog tables register themselves on import (python -m kmexp.reproduce all --profile digits).
# digits_transfer_tables: the transfer, model-patch and few-shot analogs (their pretraining tables run first).
from kmexp.reporting import digits_tables, digits_transfer_tables  # noqa: E402,F401
