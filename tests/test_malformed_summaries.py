"""kmexp.results over damaged summary.json files: each is listed as malformed with its path
and the table is built from the good ones (no crash, nothing silently dropped)."""

import csv
import json
import statistics

from kmexp.results import main


def _good(root, seed, acc):
    d = root / f"km_seed{seed}"
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps({"status": "finished", "experiment": "table1/km", "seed": seed,
                                                "test/acc": acc, "params/trainable": 7944}))


BAD = {
    "binary": b"\x80\x81\xfe\xff\x00garbage",
    "not_json": b'{"status": "finished", "test/acc": 0.7',
    "not_object": b"[1, 2, 3]",
    "non_numeric": json.dumps({"status": "finished", "experiment": "table1/km", "seed": 3, "test/acc": "high"}).encode(),
    "nan": b'{"status": "finished", "experiment": "table1/km", "seed": 4, "test/acc": NaN}',
}
REASONS = {"binary": "not text", "not_json": "not JSON", "not_object": "not a JSON object (a list)",
           "non_numeric": "test/acc is not a number", "nan": "test/acc is not finite"}


def test_malformed_summaries_are_listed_and_the_table_uses_the_good_ones(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for seed, acc in enumerate([0.70, 0.72, 0.75]):
        _good(sweep, seed, acc)
    for name, data in BAD.items():
        (sweep / name).mkdir()
        (sweep / name / "summary.json").write_bytes(data)

    assert main(["km_table1", str(sweep), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "km_table1.md").read_text()
    for name, reason in REASONS.items():
        line = next((x for x in md.splitlines() if f"{sweep / name / 'summary.json'}" in x), "")
        assert "malformed" in line and reason in line, (name, md)
    rows = {r["row"]: r for r in csv.DictReader((tmp_path / "out" / "km_table1.csv").open())}
    assert rows["km"]["runs"] == "3"
    assert float(rows["km"]["test/acc_mean"]) == statistics.fmean([0.70, 0.72, 0.75])
    assert "Traceback" not in capsys.readouterr().err
