"""The papers' claims, checked on the digits profile's tables: holds / does not hold / inconclusive.

    python -m kmexp.reporting.digits_claims [--results results/digits]   # one markdown line per claim

Each :class:`Claim` is an ordering the paper states (with the paper's numbers in its text),
tested on the digits-analog table's test accuracies (mean over seeds, 95% confidence interval
of the mean with Student's t, ``t(0.975, n-1) * std / sqrt(n)``):

- ``better`` beats every row in ``worse`` (``margin`` None): holds when its interval lies above
  each other row's, does not hold when some other row's lies above its own, otherwise
  inconclusive (overlapping 95% CIs);
- ``better`` is at most ``margin`` points below ``worse`` (a "costs little" claim): on the
  difference of the means, whose interval is Welch's (``sqrt(se_a^2 + se_b^2)``, the smaller
  ``n - 1`` degrees of freedom): holds when the whole interval is above ``-margin``, does not hold
  when it is wholly below, otherwise inconclusive.

Nothing here is tuned: the budgets were chosen on the validation split before these were read.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from dataclasses import dataclass
from pathlib import Path

# Student's t, two-sided 95%, by degrees of freedom
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


@dataclass(frozen=True)
class Claim:
    text: str  # the claim in the paper's words, with the paper's numbers
    table: str  # digits table id (results/digits/<table>.csv)
    better: str  # the row the paper puts ahead
    worse: tuple[str, ...]  # the rows it beats (or, with margin, the one it costs at most margin against)
    margin: float | None = None  # accuracy points: "better is at most margin below worse"
    metric: str = "test/acc"  # the accuracy column compared (multi-task tables: test/<task>/acc)
    # why the measured cells do not test the claim at a comparable budget: the verdict is then
    # "inconclusive (not comparable: ...)" whatever the numbers say
    not_comparable: str = ""
    caveat: str = ""  # printed after the verdict


CLAIMS: tuple[Claim, ...] = (
    # Kernel Modulation Table I (Sec. IV-A), ResNet-32 from scratch
    Claim("KM recovers more accuracy than BL at 2.7x its trainable parameters (7.9 K vs 2.9 K; 77.6 vs 59.6 %)",
          "table1_digits", "km", ("bl",)),
    Claim("KM beats a small network with as many parameters, SN (77.6 vs 71.0 %)", "table1_digits", "km", ("sn",)),
    Claim("KM beats random-subspace training at as many trainable parameters, LD/RBD (77.6 vs 70.3 %)",
          "table1_digits", "km", ("ld",),
          not_comparable="LD ran 10 random-bases steps, KM 190 optimizer steps: RBD costs ~5 CPU-s per step here"),
    Claim("KM beats training BN + classifier of a 3.7x deeper ResNet-110, TBN (77.6 vs 69.5 %)",
          "table1_digits", "km", ("tbn",),
          caveat="the table's budget was searched on the ResNet-32 rows; ResNet-110 may need more epochs or a warm-up"),
    Claim("The fully trained network beats KM (92.8 vs 77.6 %: KM recovers 84 %)", "table1_digits", "full", ("km",)),
    Claim("TBN (ResNet-110) beats BL (ResNet-32), both training BN + classifier (69.5 vs 59.6 %)",
          "table1_digits", "tbn", ("bl",),
          caveat="the table's budget was searched on the ResNet-32 rows; ResNet-110 may need more epochs or a warm-up"),
    # Kernel Modulation Fig. 5 (Sec. IV-D)
    Claim("tanh is the best modulator activation (Fig. 5A, vs sin, leaky ReLU, ReLU)", "fig5_digits",
          "activation_tanh", ("activation_sin", "activation_leaky_relu", "activation_relu")),
    Claim("The default initialisation beats the diagonal one (by 15 %, Fig. 5B)", "fig5_digits",
          "init_default", ("init_diagonal",)),
    Claim("A 2-layer modulator is the best depth (Fig. 5C, vs 1, 5, 10, 20, 50 layers)", "fig5_digits",
          "depth_2", ("depth_1", "depth_5", "depth_10", "depth_20", "depth_50")),
    # Kernel sharing (Azadbakht et al.)
    Claim("At iso-parameters the wider kernel-shared ConvMixer beats the baseline (Table 1: shared-283/4 91.29 vs "
          "128/4 90.28 %)", "ks_table1_digits", "shared_132_4", ("baseline_64_4",)),
    Claim("At iso-channels full sharing costs at most 1.8 points for 13.4x fewer parameters (Sec. 1, CIFAR-10)",
          "ks_table1_digits", "shared_64_4", ("baseline_64_4",), margin=1.8),
    Claim("SE-ResNet with kernels shared in every stage costs at most 1.8 points at the same depth (Sec. 4: "
          "worst case 1.8 on CIFAR-10)", "ks_fig5_digits", "shared_d2", ("baseline_d2",), margin=1.8),
    Claim("A deeper shared SE-ResNet with fewer parameters costs at most 1.8 points (Sec. 3.3: shared d=4 94.5 "
          "vs baseline d=8 95.8 %)", "ks_fig5_digits", "shared_d4", ("baseline_d2",), margin=1.8),
)

# The transfer, model-patch and few-shot analogs (kmexp/reporting/digits_transfer_tables.py). Margins are the
# paper's own gaps: TKM-2 vs TBL-2 on its four datasets 11.0 / 7.5 / 0.5 / 4.9 points (mean 6.0); TKM-2 vs TTL
# at most 1.5 points; model patches Table 2, S/B + last layer vs all parameters, 2.9 points (Flowers).
TRANSFER_FEWSHOT_CLAIMS: tuple[Claim, ...] = (
    # Kernel Modulation Table II / Fig. 4 (Sec. IV-B)
    Claim("TKM-2 is within 6.0 points of TBL-2 (the paper's mean gap; Cars 83.5 vs 91.0 %) with 75x fewer trainable "
          "parameters", "table2_digits", "tkm2", ("tbl2",), margin=6.0,
          caveat="the verdict is on accuracy; the measured ratio is 269,397 / 4,779 = 56x (ResNet-20; 75x is "
                 "ResNet-50's)"),
    Claim("TKM-2 matches TTL (TinyTL-L+B) within 1.5 points (Cars 83.5 vs 85.0 %) with fewer trainable parameters",
          "table2_digits", "tkm2", ("ttl",), margin=1.5),
    Claim("TKM-2 beats NC, implicit modulation + classifier alone (Cars 83.5 vs NC-2 77.9 %)", "table2_digits",
          "tkm2", ("nc",)),
    Claim("Training the normalization too (TKM-2) beats explicit modulation alone (TKM-1; Cars 83.5 vs 59.7 %)",
          "table2_digits", "tkm2", ("tkm1",)),
    Claim("TKM-1 beats fine-tuning the last layer, TBL-1 (Fig. 4: KM's points lie above TBL-1's)", "fig4_digits",
          "tkm1", ("tbl1",)),
    # Model patches Tables 2 and 6, Fig. 3 (Mudrakarta et al. Sec. 5.1)
    Claim("An S/B patch + last layer beats fine-tuning the last layer alone (Table 2, Flowers 90.4 vs 84.5 %)",
          "mp_table2_digits", "sb_last_layer", ("last_layer",)),
    Claim("An S/B patch + last layer is within 2.9 points of fine-tuning all parameters (Table 2, Flowers 90.4 vs "
          "93.3 %)", "mp_table2_digits", "sb_last_layer", ("all_ours",), margin=2.9),
    Claim("A DW patch + last layer beats an S/B patch + last layer (Fig. 3: more parameters, higher accuracy)",
          "mp_table2_digits", "dw_last_layer", ("sb_last_layer",)),
    Claim("An S/B patch + last layer beats last layer + re-estimated statistics (Table 6, Flowers 86.9 vs 79.8 %: "
          "the scales and biases, not the statistics, make the gain)", "mp_table6_digits", "sb_last_layer",
          ("last_layer_bn_stats",)),
    Claim("Re-estimating the statistics alone costs at most 0.4 points against frozen statistics (Table 6, Flowers "
          "79.8 vs 80.2 %)", "mp_table6_digits", "last_layer_bn_stats", ("last_layer",), margin=0.4),
    # Model patches Table 4 (Sec. 5.3): multi-task
    Claim("In multi-task training private S/B patches beat private last layers on the first task (Table 4, "
          "ImageNet 70.2 vs 64.4 %)", "mp_table4_digits", "sb_patch_last_layer", ("last_layer",),
          metric="test/low/acc"),
    Claim("... and on the second task (Table 4, Places-365 54.3 vs 51.4 %)", "mp_table4_digits",
          "sb_patch_last_layer", ("last_layer",), metric="test/high/acc"),
    # Kernel Modulation Table III (Sec. IV-C)
    Claim("KM beats ANIL (Omniglot 20-way 1-shot 97.01 vs 94.94 %)", "table3_digits", "km", ("anil",)),
    Claim("KM beats MAML (Omniglot 20-way 1-shot 97.01 vs 95.8 %)", "table3_digits", "km", ("maml",)),
)
CLAIMS = CLAIMS + TRANSFER_FEWSHOT_CLAIMS


@dataclass(frozen=True)
class Stat:
    mean: float  # accuracy, percent
    std: float
    n: int

    @property
    def half_width(self) -> float:
        return T95.get(self.n - 1, 1.96) * self.std / math.sqrt(self.n) if self.n > 1 else math.inf

    def __str__(self) -> str:
        return f"{self.mean:.1f} ± {self.half_width:.1f}"


def read_stats(csv_path: Path, metric: str = "test/acc") -> dict[str, Stat]:
    """row -> test accuracy (percent) of a kmexp.results table CSV (rows without runs left out)."""
    out = {}
    for r in csv.DictReader(csv_path.open()):
        if r.get(f"{metric}_mean") and int(r["runs"]) > 0:
            out[r["row"]] = Stat(100 * float(r[f"{metric}_mean"]), 100 * float(r[f"{metric}_std"] or 0), int(r["runs"]))
    return out


def verdict(claim: Claim, stats: dict[str, Stat]) -> tuple[str, str]:
    """(holds | does not hold | inconclusive ... | not measured, the measured numbers)."""
    rows = (claim.better, *claim.worse)
    if any(r not in stats for r in rows):
        return "not measured", "missing rows: " + ", ".join(r for r in rows if r not in stats)
    a = stats[claim.better]
    numbers = "; ".join(f"{r} {stats[r]}" for r in rows)
    if claim.not_comparable:
        return f"inconclusive (not comparable: {claim.not_comparable})", numbers
    if claim.margin is not None:
        b = stats[claim.worse[0]]
        diff = a.mean - b.mean
        se = math.sqrt((a.std ** 2) / a.n + (b.std ** 2) / b.n)
        half = T95.get(min(a.n, b.n) - 1, 1.96) * se if min(a.n, b.n) > 1 else math.inf
        numbers += f"; difference {diff:+.1f} ± {half:.1f} points (claim: ≥ -{claim.margin:g})"
        if diff - half > -claim.margin:
            return "holds", numbers
        if diff + half < -claim.margin:
            return "does not hold", numbers
        return "inconclusive (95% CI of the difference spans the margin)", numbers
    lo = a.mean - a.half_width
    beaten = [r for r in claim.worse if stats[r].mean + stats[r].half_width < lo]
    ahead = [r for r in claim.worse if stats[r].mean - stats[r].half_width > a.mean + a.half_width]
    if ahead:
        return f"does not hold ({', '.join(ahead)} clearly ahead)", numbers
    if len(beaten) == len(claim.worse):
        return "holds", numbers
    order = "means in the claimed order" if all(a.mean > stats[r].mean for r in claim.worse) else "means not in the claimed order"
    return f"inconclusive (overlapping 95% CIs; {order})", numbers


def claim_lines(results: Path, claims=CLAIMS) -> list[str]:
    lines = []
    for claim in claims:
        path = results / f"{claim.table}.csv"
        v, numbers = verdict(claim, read_stats(path, claim.metric)) if path.is_file() else ("not measured", f"no {path.name}")
        caveat = f" Caveat: {claim.caveat}." if claim.caveat else ""
        lines.append(f"- {claim.text}: **{v}**. `{claim.table}`: {numbers}.{caveat}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=None, help="the digits tables (default results/digits)")
    args = p.parse_args(argv)
    from kmexp.resources import results_dir

    print("\n".join(claim_lines(args.results or results_dir() / "digits")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
