"""Paper tables as data: which experiment presets form the rows, which metrics to report.

Each :class:`Table` names its rows by experiment preset (``configs/experiment/...``) and
the file of the paper's numbers in ``results/paper/`` whose ``row`` ids match ``Row.key``.
``kmexp.results`` aggregates sweeps into these tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Row:
    key: str  # row id in results/paper/<paper_table>.csv
    experiment: str  # configs/experiment/<experiment>.yaml
    label: str = ""

    def __post_init__(self):
        if not self.label:
            object.__setattr__(self, "label", self.key.upper())


@dataclass(frozen=True)
class Table:
    title: str
    rows: tuple[Row, ...]
    paper_table: str | None = None
    paper_label: str = "paper"
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
    plot: str | None = None  # figure kind drawn by kmexp.plots ("bar", "params", "ablation", ...)
    x_label: str | None = None  # for plot="scaling": what the rows' x values are
    exclude_from_all: bool = False  # e.g. tables that are themselves small-data variants


TABLES: dict[str, Table] = {}


def register(table_id: str, table: Table) -> None:
    TABLES[table_id] = table


register(
    "km_table1",
    Table(
        title="Kernel Modulation Table I: ResNet-32 trained from scratch on CIFAR-10",
        rows=(
            Row("full", "table1/full", "Fully trained ResNet-32"),
            Row("bl", "table1/bl", "BL"),
            Row("km", "table1/km", "KM"),
            Row("sn", "table1/sn", "SN (small ResNet)"),
            Row("ld", "table1/ld", "LD (RBD, ResNet-8)"),
            Row("tbn", "table1/tbn", "TBN (ResNet-110)"),
        ),
        paper_table="km_table1",
        paper_label="paper, CIFAR-10",
    ),
)

register(
    "km_table1_digits",
    Table(
        title="Table I rows on the bundled digits data (pipeline check, not a reproduction)",
        rows=(
            Row("full", "digits/table1_full", "Fully trained ResNet-32"),
            Row("bl", "digits/table1_bl", "BL"),
            Row("km", "digits/table1_km", "KM"),
        ),
        paper_table="km_table1",
        paper_label="paper, CIFAR-10 — a different dataset",
        reference_row="full",
        exclude_from_all=True,
        note=(
            "Recovered ratio = accuracy / accuracy of this sweep's fully trained row (no digits "
            "reference exists). Paper columns are CIFAR-10 numbers, shown for orientation only."
        ),
    ),
)

_FIG5 = (
    [Row(f"activation_{a}", f"fig5/activation_{a}", f"activation {a}") for a in ("tanh", "sin", "leaky_relu", "relu")]
    + [Row(f"init_{i}", f"fig5/init_{i}", f"init {i}") for i in ("default", "orthogonal", "diagonal")]
    + [Row(f"depth_{d}", f"fig5/depth_{d}", f"depth {d}") for d in (1, 2, 5, 10, 20, 50)]
)
register(
    "km_fig5",
    Table(
        title="Kernel Modulation Fig. 5: modulator ablations (ResNet-32, CIFAR-10)",
        rows=tuple(_FIG5),
        paper_table=None,
        plot="ablation",
        note="The paper plots Fig. 5 without printing its values (see results/paper/README.md).",
    ),
)
