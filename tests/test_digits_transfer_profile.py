"""A one-seed, one-epoch slice of the digits profile's transfer part: the pretraining table runs first
(a dependency), its checkpoint is the transfer run's starting point and part of its identity."""

import json
from pathlib import Path

from kmexp.reporting.dependencies import RUN_REFERENCE, with_requirements
from kmexp.reporting.profiles import profile_overrides
from kmexp.reporting.runs import plan
from kmexp.reporting.tables import TABLES
from tests.conftest import run_cli

TINY = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"]


def test_transfer_tables_require_their_pretraining_and_name_it_in_their_identity():
    assert with_requirements(["fig4_digits", "mp_table6_digits"], TABLES) == [
        "digits_pretrain_gn", "fig4_digits", "digits_pretrain_bn", "mp_table6_digits"]
    pretrain = plan("digits_pretrain_gn", TABLES["digits_pretrain_gn"], [0], profile_overrides(TABLES["digits_pretrain_gn"], "digits"))
    longer = plan("digits_pretrain_gn", TABLES["digits_pretrain_gn"], [0], ["trainer.max_epochs=3"])
    assert pretrain[0].run_id != longer[0].run_id
    from kmexp.reporting.dependencies import resolve_references

    ids = set()
    for cells in (pretrain, longer):
        table = resolve_references("table2_digits", TABLES["table2_digits"], {"digits_pretrain_gn": cells})
        (row,) = [r for r in table.rows if r.key == "tkm2"]
        path = [o for o in row.overrides if o.startswith("backbone.weights_path=")]
        assert path == [f"backbone.weights_path=${{paths.log_dir}}/runs/{cells[0].run_id}/checkpoints/last.ckpt"]
        assert not any(RUN_REFERENCE.search(o) for r in table.rows for o in r.overrides)
        ids.add(plan("table2_digits", table, [0])[0].run_id)
    assert len(ids) == 2  # another pretraining run means another transfer run


def test_one_seed_one_epoch_slice_pretrains_then_transfers(tmp_path):
    logs, out = tmp_path / "logs", tmp_path / "results"
    run_cli(["table2_digits", "--profile", "digits", "--rows", "tkm2", "--seeds", "0", "--logs", str(logs),
             "--out", str(out), "--", *TINY], tmp_path, module="kmexp.reproduce", timeout=300)
    summaries = {s["config"]["dataset"]["name"]: s for s in map(json.loads, map(Path.read_text, logs.rglob("summary.json")))}
    pre, transfer = summaries["digits_0to4"], summaries["digits_5to9"]
    assert pre["status"] == transfer["status"] == "finished"
    assert pre["method"] == "full" and transfer["method"] == "km" and transfer["seed"] == 0
    start = Path(transfer["config"]["backbone"]["weights_path"])
    assert start == Path(pre["run_dir"]) / "checkpoints" / "last.ckpt" and start.is_file()
    # the same backbone plus KM's modulators; only modulators, norm affines and the classifier train
    assert pre["params/trainable"] == pre["params/total"] < transfer["params/total"]
    assert transfer["params/trainable"] < transfer["params/total"] - pre["params/total"] + 2000
    table = (out / "table2_digits.md").read_text()
    assert "Digits profile" in table and "digits 0-4" in table and "TKM-2" in table
    assert (out / "digits_pretrain_gn.md").is_file()


def test_multitask_claims_compare_the_named_task_column(tmp_path):
    from kmexp.reporting.digits_claims import CLAIMS, claim_lines

    (tmp_path / "mp_table4_digits.csv").write_text(
        "row,runs,test/low/acc_mean,test/low/acc_std,test/high/acc_mean,test/high/acc_std\n"
        "sb_patch_last_layer,3,0.95,0.01,0.50,0.01\n"
        "last_layer,3,0.80,0.01,0.70,0.01\n")
    claims = [c for c in CLAIMS if c.table == "mp_table4_digits"]
    assert [c.metric for c in claims] == ["test/low/acc", "test/high/acc"]
    low, high = claim_lines(tmp_path, claims)
    assert "**holds**" in low and "95.0" in low
    assert "**does not hold" in high and "50.0" in high


def test_few_shot_confidence_intervals_are_shown_in_points_like_the_accuracy(tmp_path):
    from kmexp.reporting.results import write_table
    from kmexp.reporting.runs import Cell

    runs = tmp_path / "runs"
    cells = []
    for row in TABLES["table3_digits"].rows:
        for seed in (0, 1):
            d = runs / f"{row.key}-{seed}"
            d.mkdir(parents=True)
            d.joinpath("summary.json").write_text(json.dumps({
                "status": "finished", "seed": seed, "test/acc": 0.7, "test/acc_ci95": 0.0123,
                "params/inner_loop": 973, "params/outer_loop": 112909}))
            cells.append(Cell("table3_digits", row.key, seed, (), f"{row.key}-{seed}"))
    md = write_table("table3_digits", cells, runs, tmp_path / "out").read_text()
    km = next(line for line in md.splitlines() if line.startswith("| KM "))
    assert "| 70.00 ± 0.00 | 1.23 ± 0.00 |" in km
