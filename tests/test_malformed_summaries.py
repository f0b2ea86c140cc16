"""kmexp.results over damaged summary.json files: each is listed as malformed with its path
and the table is built from the good ones (no crash, nothing silently dropped)."""

import csv
import json
import statistics

from kmexp.reporting.results import write_table
from kmexp.reporting.runs import Cell
from kmexp.reporting.tables import TABLES


def _cells(table_id, seeds=range(5)):
    return [Cell(table_id, r.key, s, (), f"{r.key}-{s}") for r in TABLES[table_id].rows for s in seeds]


BAD = {  # seed -> bytes of a damaged km summary
    3: b"\x80\x81\xfe\xff\x00garbage",
    4: b'{"status": "finished", "test/acc": 0.7',
}
BAD_BL = {
    0: b"[1, 2, 3]",
    1: json.dumps({"status": "finished", "test/acc": "high"}).encode(),
    2: b'{"status": "finished", "test/acc": NaN}',
}
REASONS = {("km", 3): "not text", ("km", 4): "not JSON", ("bl", 0): "not a JSON object (a list)",
           ("bl", 1): "test/acc is not a number", ("bl", 2): "test/acc is not finite"}


def test_malformed_summaries_are_listed_and_the_table_uses_the_good_ones(tmp_path):
    runs = tmp_path / "runs"
    for seed, acc in enumerate([0.70, 0.72, 0.75]):
        (runs / f"km-{seed}").mkdir(parents=True)
        (runs / f"km-{seed}" / "summary.json").write_text(json.dumps({"status": "finished", "test/acc": acc}))
    for row, bad in (("km", BAD), ("bl", BAD_BL)):
        for seed, data in bad.items():
            (runs / f"{row}-{seed}").mkdir(parents=True)
            (runs / f"{row}-{seed}" / "summary.json").write_bytes(data)

    md = write_table("table1", _cells("table1"), runs, tmp_path / "out").read_text()
    for (row, seed), reason in REASONS.items():
        path = runs / f"{row}-{seed}" / "summary.json"
        line = next((x for x in md.splitlines() if str(path) in x), "")
        assert f"{row} seed {seed}: malformed summary" in line and reason in line, (row, seed, md)
    rows = {r["row"]: r for r in csv.DictReader((tmp_path / "out" / "table1.csv").open())}
    assert rows["km"]["runs"] == "3" and rows["bl"]["runs"] == "0"
    assert float(rows["km"]["test/acc_mean"]) == statistics.fmean([0.70, 0.72, 0.75])
