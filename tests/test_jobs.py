"""Submit and walk away: validation before queueing, launcher settings from the trainer,
status from summaries and job records, and a real submit -> status -> collect cycle with
submitit's local executor."""

from __future__ import annotations

import csv
import json
import os
import time

import pytest

from kmexp.reporting.jobs import Run, format_status, preflight, table_status
from kmexp.reporting.reproduce import entry as main
from kmexp.reporting.results import aggregate, mixed_commits
from kmexp.reporting.runs import Cell
from kmexp.reporting.tables import TABLES
from tests.conftest import run_cli


def _summary(path, **fields):
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps(fields))


def test_a_bad_override_refuses_the_whole_table_before_anything_is_queued(tmp_path, capsys):
    logs = tmp_path / "logs"
    code = main(["table1", "--launcher", "submitit_local", "--seeds", "0", "--logs", str(logs), "--",
                 "optim.lr=-1"])
    assert code == 1
    assert capsys.readouterr().err.strip() == "error: table1 full seed=0: optim.lr=-1 is not allowed: a number > 0"
    assert not logs.exists()  # no job records, no submitit folder, no run directory
    assert main(["table1", "--dry-run", "--seeds", "0", "--", "trainer.max_epochs=abc"]) == 1


def test_a_bad_seed_and_a_bad_row_combination_are_refused(capsys):
    runs = [Run("t", "maml", 0, ("method=maml",))]
    with pytest.raises(Exception, match="method=maml means something only with lightning_module=fewshot"):
        preflight(runs, None, [])
    with pytest.raises(Exception, match="seed=-3 is not allowed"):
        preflight([Run("t", "km", -3, ("seed=-3",))], None, [])


def test_slurm_tasks_and_gpus_per_node_follow_the_trainer():
    ddp = preflight([Run("t", "km", 0, ("trainer=ddp", "trainer.devices=2"))], "slurm",
                    ["hydra.launcher.partition=gpu"])[0].launcher
    assert (ddp["tasks_per_node"], ddp["gpus_per_node"], ddp["nodes"]) == (2, 2, 1)
    assert ddp["slurm_partition"] == "gpu" and ddp["timeout_min"] == 720
    cpu = preflight([Run("t", "km", 0, ("trainer=ddp_sim",))], "slurm", [])[0].launcher
    assert (cpu["tasks_per_node"], cpu["gpus_per_node"]) == (2, 0)  # CPU runs request no GPUs


def test_status_reports_finished_running_failed_and_missing(tmp_path):
    cells = [Cell("table1", row, 0, (), f"id_{row}") for row in ("full", "bl", "km", "sn", "ld", "tbn")]
    runs = tmp_path / "runs"
    _summary(runs / "id_full", status="finished")
    _summary(runs / "id_bl", status="failed",
             error="Traceback ...\n  line\nDatasetNotFoundError: cifar10 not found at /data")
    folder = tmp_path / ".submitit"
    jobs = [  # km: a live local job (this test's own process); sn: a job that died without a result
        {"run_id": "id_km", "table": "table1", "row": "km", "seed": 0, "job_id": str(os.getpid()),
         "launcher": "submitit_local", "folder": str(folder / "1")},
        {"run_id": "id_sn", "table": "table1", "row": "sn", "seed": 0, "job_id": "999999999",
         "launcher": "submitit_local", "folder": str(folder / "2")},
    ]
    (tmp_path / "jobs.jsonl").write_text("".join(json.dumps(j) + "\n" for j in jobs))
    statuses = {s.run: s for s in table_status(cells, tmp_path)}
    assert statuses[("full", 0)].state == "finished"
    assert statuses[("bl", 0)].state == "failed"
    assert statuses[("bl", 0)].detail == "DatasetNotFoundError: cifar10 not found at /data"
    assert statuses[("km", 0)].state == "running"
    assert statuses[("sn", 0)].state == "failed" and "without a result" in statuses[("sn", 0)].detail
    assert statuses[("ld", 0)].state == "missing" and statuses[("tbn", 0)].state == "missing"
    text = format_status("table1", list(statuses.values()))
    assert text.splitlines()[0] == "table1: 6 runs: 1 finished, 1 running, 2 failed, 2 missing"


def test_results_warn_when_a_table_mixes_commits():
    table = TABLES["table1"]
    same = [{"status": "finished", "row": "full", "seed": s, "test/acc": 0.9,
             "provenance/git_commit": "a" * 40} for s in range(2)]
    assert mixed_commits(same) is None
    other = dict(same[0], seed=2, **{"provenance/git_commit": "b" * 40, "provenance/git_dirty": True})
    _, problems = aggregate(table, [*same, other])
    assert problems[0] == "warning: this table mixes runs of 2 code versions: aaaaaaaaaa (2 runs), bbbbbbbbbb+dirty (1 runs)"


@pytest.mark.slow
def test_submit_returns_then_status_then_collect_through_submitit_local(tmp_path):
    logs, out = tmp_path / "logs", tmp_path / "out"
    common = ["--rows", "bl,km", "--seeds", "0", "--profile", "mini", "--logs", str(logs)]
    started = time.time()
    proc = run_cli(["table1", *common, "--launcher", "submitit_local", "--",
                    "backbone=resnet20", "dataset.datamodule.batch_size=8", "hydra.launcher.timeout_min=10"],
                   tmp_path, module="kmexp.reproduce", timeout=600)
    assert "submitted 2 jobs" in proc.stdout and "nothing waits" in proc.stdout
    records = [json.loads(line) for line in (logs / "jobs.jsonl").read_text().splitlines()]
    assert sorted(r["row"] for r in records) == ["bl", "km"] and all(r["job_id"] for r in records)

    deadline = started + 600
    while True:  # the jobs run on without the submitting process (status finds them without the overrides)
        status = run_cli(["status", "table1", *common], tmp_path, module="kmexp.reproduce").stdout
        if "0 running" in status or time.time() > deadline:
            break
        time.sleep(5)
    assert "table1: 2 runs: 2 finished, 0 running, 0 failed, 0 missing" in status

    again = run_cli(["table1", *common, "--launcher", "submitit_local", "--", "backbone=resnet20",
                     "dataset.datamodule.batch_size=8"], tmp_path, module="kmexp.reproduce")
    assert "skipping 2 runs" in again.stdout and "submitted" not in again.stdout  # never queued twice

    summaries = [json.loads(p.read_text()) for p in (logs / "runs").glob("*/summary.json")]
    assert sorted(s["provenance/job_id"] for s in summaries) == sorted(r["job_id"] for r in records)
    assert {s["provenance/launcher"] for s in summaries} == {"kmexp.reproduce/submitit_local"}

    run_cli(["table1", *common, "--collect-only", "--out", str(out), "--", "backbone=resnet20",
             "dataset.datamodule.batch_size=8"], tmp_path, module="kmexp.reproduce")
    rows = {r["row"]: r for r in csv.DictReader((out / "table1.csv").open())}
    assert rows["bl"]["runs"] == "1" and rows["km"]["runs"] == "1"
    # ResNet-20: BN 1,376 + classifier 650; KM adds 19 modulators x 162
    assert float(rows["bl"]["params/trainable_mean"]) == 2_026
    assert float(rows["km"]["params/trainable_mean"]) == 2_026 + 19 * 162
    md = (out / "table1.md").read_text()
    assert "Not a reproduction" in md and "77.60" in md
