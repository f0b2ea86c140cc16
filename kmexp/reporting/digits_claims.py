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


def read_stats(csv_path: Path) -> dict[str, Stat]:
    """row -> test accuracy (percent) of a kmexp.results table CSV (rows without runs left out)."""
    out = {}
    for r in csv.DictReader(csv_path.open()):
        if r.get("test/acc_mean") and int(r["runs"]) > 0:
            out[r["row"]] = Stat(100 * float(r["test/acc_mean"]), 100 * float(r["test/acc_std"] or 0), int(r["runs"]))
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
        v, numbers = verdict(claim, read_stats(path)) if path.is_file() else ("not measured", f"no {path.name}")
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
