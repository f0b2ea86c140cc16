"""The digits profile of ``python -m kmexp.reproduce``: which tables it selects, and a one-seed,
one-epoch slice of it end to end (Table I's full and KM rows on the real digits) that writes the
table with the paper's column and the header, the figure and Fig. 3's weight histograms."""

import csv
import json

from conftest import run_cli

from kmexp.reporting.profiles import profile_overrides
from kmexp.reporting.reproduce import select
from kmexp.reporting.tables import TABLES

MINE = {"table1_digits", "fig5_digits", "ks_table1_digits", "ks_fig5_digits"}


def test_digits_profile_selects_the_digits_tables_and_the_papers_all_does_not():
    digits = set(select("all", "digits"))
    assert MINE <= digits
    assert all(TABLES[t].digits is not None and TABLES[t].exclude_from_all for t in digits)
    assert not digits & set(select("all")) and not digits & set(select("all", "mini"))
    assert select("ks_fig5", "digits") == ["ks_fig5_digits"]
    assert "ks_fig5_digits" not in select("ks_fig5")


def test_a_table_without_digits_overrides_is_refused_in_the_digits_profile():
    import pytest

    from kmexp.errors import KmexpError

    with pytest.raises(KmexpError, match="no digits profile"):
        profile_overrides(TABLES["table1"], "digits")
    assert "trainer.accelerator=cpu" in profile_overrides(TABLES["table1_digits"], "digits")


def test_one_seed_one_epoch_slice_of_the_digits_profile(tmp_path):
    """Table I's KM row, seed 0, one epoch, through the real entry point (one Hydra sweep)."""
    out = tmp_path / "out"
    run_cli(["table1_digits", "--profile", "digits", "--rows", "km", "--seeds", "0",
             "--logs", str(tmp_path / "logs"), "--out", str(out), "--", "trainer.max_epochs=1"],
            tmp_path, module="kmexp.reproduce", timeout=300)
    md = (out / "table1_digits.md").read_text()
    assert "Digits profile (`python -m kmexp.reproduce table1_digits --profile digits`)" in md
    assert "Seeds: [0]" in md and "Hardware: CPU" in md and "1 finished runs" in md
    assert "paper accuracy (paper, CIFAR-10 — a different dataset, for orientation)" in md
    rows = {r["row"]: r for r in csv.DictReader((out / "table1_digits.csv").open())}
    assert set(rows) == {"km"} and rows["km"]["runs"] == "1"
    assert float(rows["km"]["paper_accuracy"]) == 77.6  # KM Table I, CIFAR-10
    assert int(float(rows["km"]["params/trainable_mean"])) == 7944  # KM's ResNet-32 count, Table I
    assert 0.0 < float(rows["km"]["test/acc_mean"]) <= 1.0
    summary = json.loads(next((tmp_path / "logs" / "runs").rglob("summary.json")).read_text())
    assert summary["epochs"] == 1 and summary["dataset"] == "digits"
    assert summary["config"]["dataset"]["datamodule"]["image_size"] == 8  # the profile's budget applied
    assert (out / "table1_digits.png").is_file()
    assert not (out / "table1_digits_fig3_weights.png").exists()  # Fig. 3 needs the full row too


def test_claim_verdicts_follow_the_confidence_intervals():
    from kmexp.reporting.digits_claims import Claim, Stat, verdict

    beats = Claim("a beats b", "t", "a", ("b",))
    # n=3: half width = 4.303 * std / sqrt(3) = 2.484 * std
    assert verdict(beats, {"a": Stat(90, 1, 3), "b": Stat(80, 1, 3)})[0] == "holds"
    assert verdict(beats, {"a": Stat(80, 1, 3), "b": Stat(90, 1, 3)})[0].startswith("does not hold")
    assert verdict(beats, {"a": Stat(85, 1, 3), "b": Stat(82, 1, 3)})[0].startswith("inconclusive")  # 85-2.5 < 82+2.5
    assert verdict(beats, {"a": Stat(85, 1, 3)})[0] == "not measured"
    costs_little = Claim("a at most 2 below b", "t", "a", ("b",), margin=2.0)
    # difference -1, half width 4.303 * sqrt(2 * 0.1^2 / 3) = 0.35: wholly above -2
    assert verdict(costs_little, {"a": Stat(89, 0.1, 3), "b": Stat(90, 0.1, 3)})[0] == "holds"
    assert verdict(costs_little, {"a": Stat(85, 0.1, 3), "b": Stat(90, 0.1, 3)})[0] == "does not hold"
    assert verdict(costs_little, {"a": Stat(88, 1, 3), "b": Stat(90, 1, 3)})[0].startswith("inconclusive")


def test_a_claim_measured_at_an_incomparable_budget_is_never_called_settled():
    from kmexp.reporting.digits_claims import Claim, Stat, verdict

    claim = Claim("a beats b", "t", "a", ("b",), not_comparable="b ran 10 steps")
    v, numbers = verdict(claim, {"a": Stat(90, 1, 3), "b": Stat(10, 1, 3)})
    assert v == "inconclusive (not comparable: b ran 10 steps)" and "b 10.0" in numbers
