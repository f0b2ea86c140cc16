"""``reproduce --jobs N`` (kmexp/reporting/parallel_sweeps.py): at most N sweeps at once, a table
after the tables it requires, threads split between the sweeps, a failed sweep reported."""

import os
import sys
import time
from pathlib import Path

import pytest

from kmexp.reporting.parallel_sweeps import run_sweeps, threads_per_sweep, usable_cores


def _sweep(record: Path, name: str, seconds: float, exit_code: int = 0) -> list[str]:
    """A stand-in sweep: records when it started and ended (and its thread budget), then exits."""
    code = (
        "import os, sys, time\n"
        f"p = {str(record)!r}\n"
        f"open(p, 'a').write(f'start {name} {{time.time()}} {{os.environ[\"OMP_NUM_THREADS\"]}}\\n')\n"
        f"time.sleep({seconds})\n"
        f"open(p, 'a').write(f'end {name} {{time.time()}} -\\n')\n"
        f"print('last words of {name}'); sys.exit({exit_code})\n"
    )
    return [sys.executable, "-c", code]


def _events(record: Path) -> dict[tuple[str, str], float]:
    return {(kind, name): float(t) for kind, name, t, _ in (line.split() for line in record.read_text().splitlines())}


def test_at_most_n_at_once_and_a_table_waits_for_what_it_requires(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    record = tmp_path / "events.txt"
    commands = {
        "pretrain": [_sweep(record, "pretrain", 1.0)],
        "independent": [_sweep(record, "ind0", 0.3), _sweep(record, "ind1", 0.3)],
        "transfer": [_sweep(record, "transfer", 0.1)],
    }
    codes = run_sweeps(commands, {"transfer": ("pretrain",)}, 2, tmp_path / "logs", tmp_path, poll_s=0.02)
    assert codes == {"pretrain": 0, "independent": 0, "transfer": 0}
    ev = _events(record)
    intervals = [(ev[("start", n)], ev[("end", n)]) for n in ("pretrain", "ind0", "ind1", "transfer")]
    # never more than two sweeps alive at any start
    for s, _ in intervals:
        assert sum(a <= s < b for a, b in intervals) <= 2
    assert ev[("start", "ind0")] < ev[("end", "pretrain")]  # two at once: it did not wait
    assert ev[("start", "transfer")] >= ev[("end", "pretrain")]  # it waited for its pretraining
    threads = {line.split()[3] for line in record.read_text().splitlines() if line.startswith("start")}
    assert threads == {str(max(1, usable_cores() // 2))} == {str(threads_per_sweep(2))}
    assert sorted(p.name for p in (tmp_path / "logs" / "sweeps").iterdir()) == [
        "independent-0.log", "independent-1.log", "pretrain-0.log", "transfer-0.log"]


def test_one_at_a_time_runs_in_order(tmp_path):
    record = tmp_path / "events.txt"
    commands = {"a": [_sweep(record, "a0", 0.1), _sweep(record, "a1", 0.1)], "b": [_sweep(record, "b0", 0.1)]}
    run_sweeps(commands, {}, 1, tmp_path / "logs", tmp_path, poll_s=0.02)
    ev = _events(record)
    assert ev[("end", "a0")] <= ev[("start", "a1")] and ev[("end", "a1")] <= ev[("start", "b0")]


def test_a_failed_sweep_is_reported_and_the_others_still_run(tmp_path, capsys):
    record = tmp_path / "events.txt"
    commands = {"bad": [_sweep(record, "bad", 0.05, exit_code=3)], "good": [_sweep(record, "good", 0.05)]}
    codes = run_sweeps(commands, {}, 2, tmp_path / "logs", tmp_path, poll_s=0.02)
    assert codes == {"bad": 3, "good": 0}
    captured = capsys.readouterr()
    assert "bad: sweep 1 of 1 FAILED (exit 3)" in captured.out
    assert "last words of bad" in captured.err and "last words of good" not in captured.err
    assert ("end", "good") in _events(record)


def test_a_sweep_killed_by_a_signal_counts_as_failed(tmp_path):
    killed = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
    codes = run_sweeps({"killed": [killed]}, {}, 2, tmp_path / "logs", tmp_path, poll_s=0.02)
    assert codes == {"killed": -9}


def test_interrupting_the_launcher_stops_the_running_sweeps(tmp_path, monkeypatch):
    import pytest

    import kmexp.reporting.parallel_sweeps as parallel

    record = tmp_path / "events.txt"
    procs = []
    start_ready = parallel._SweepPool._start_ready

    def start_then_interrupt(pool):  # Ctrl-C arrives once the sweep is alive and has written its start
        start_ready(pool)
        procs.extend(s.proc for s in pool.running if s.proc not in procs)
        if record.exists():
            raise KeyboardInterrupt

    monkeypatch.setattr(parallel._SweepPool, "_start_ready", start_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_sweeps({"long": [_sweep(record, "long", 60.0)]}, {}, 1, tmp_path / "logs", tmp_path, poll_s=0.02)
    [proc] = procs
    assert proc.returncode == -15  # SIGTERM'd and reaped, not left running for 60 s
    assert ("end", "long") not in _events(record)


def test_sigterm_to_the_launcher_stops_the_running_sweeps(tmp_path):
    """A scheduler stopping `reproduce` (SIGTERM) must not leave its sweeps training on."""
    import os
    import signal
    import subprocess
    import time

    record = tmp_path / "events.txt"
    launcher = (
        "import sys; from pathlib import Path\n"
        "from kmexp.reporting.parallel_sweeps import run_sweeps\n"
        f"run_sweeps({{'long': [{_sweep(record, 'long', 61.5)!r}]}}, {{}}, 1, Path({str(tmp_path / 'logs')!r}), "
        f"Path({str(tmp_path)!r}), poll_s=0.02)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", launcher], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while not record.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert record.exists(), proc.communicate()[0]
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    sweep_pid_alive = subprocess.run(["pgrep", "-f", "time.sleep\\(61.5\\)"], capture_output=True).returncode == 0
    assert not sweep_pid_alive
    assert ("end", "long") not in _events(record)


def test_a_table_is_not_launched_when_a_table_it_starts_from_failed(tmp_path, capsys):
    record = tmp_path / "events.txt"
    commands = {"pretrain": [_sweep(record, "pretrain", 0.05, exit_code=1)], "transfer": [_sweep(record, "transfer", 0.05)],
                "other": [_sweep(record, "other", 0.05)]}
    codes = run_sweeps(commands, {"transfer": ("pretrain",)}, 2, tmp_path / "logs", tmp_path, poll_s=0.02)
    assert codes == {"pretrain": 1, "transfer": 1, "other": 0}
    assert ("start", "transfer") not in _events(record) and ("end", "other") in _events(record)
    assert "transfer: sweep 1 not launched: a table it starts from failed (pretrain)" in capsys.readouterr().err


def test_a_table_waits_for_the_table_that_trains_the_run_it_starts_from():
    """The pretraining run is launched by whichever table has it first, not always the required one."""
    from kmexp.reporting.reproduce import launching_requirements
    from kmexp.reporting.runs import Cell
    from kmexp.reporting.tables import Row, Table

    def table(requires=()):
        return Table(title="t", rows=(Row("r", "table1/digits", "r", ()),), requires=requires)

    tables = {"early": table(), "pretrain": table(), "transfer": table(requires=("pretrain",))}
    cells = {"early": [Cell("early", "r", 0, (), "RUN-P")], "pretrain": [Cell("pretrain", "r", 0, (), "RUN-P")],
             "transfer": [Cell("transfer", "r", 0, (), "RUN-T")]}
    assert launching_requirements(tables, cells) == {"early": (), "pretrain": (), "transfer": ("early",)}


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "max 100000\n"}, None),                         # v2, no quota
    ({"cpu.max": "150000 100000\n"}, 2),                         # v2, 1.5 CPUs -> 2 sweeps
    ({"cpu.max": "100000 100000\n"}, 1),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # v1, no quota
    ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),
    ({}, None),                                                  # no cgroup files at all
])
def test_usable_cores_respects_a_container_cpu_quota(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    affinity = len(os.sched_getaffinity(0))
    got = usable_cores(cgroup=tmp_path)
    assert got == (affinity if expected is None else min(affinity, expected))


def test_a_second_interrupt_while_waiting_kills_the_sweeps(tmp_path, capsys):
    """Ctrl-C twice: the first SIGTERMs the sweeps, the second (during the grace wait) kills and reaps them."""
    import subprocess

    import kmexp.reporting.parallel_sweeps as parallel

    ignores_sigterm = [sys.executable, "-c",
                       "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); "
                       "time.sleep(60)"]
    pool = parallel._SweepPool({"stubborn": [ignores_sigterm]}, {}, 1, tmp_path / "logs", tmp_path)
    pool.log_dir.mkdir(parents=True)
    pool._start_ready()
    [sweep] = pool.running
    while "up" not in sweep.log.read_text():
        time.sleep(0.02)
    real_wait = sweep.proc.wait

    def second_ctrl_c(timeout=None):
        if timeout is not None:
            raise KeyboardInterrupt
        return real_wait()

    sweep.proc.wait = second_ctrl_c
    with pytest.raises(KeyboardInterrupt):
        pool.stop(grace_s=30)
    assert sweep.proc.returncode == -9  # killed and reaped, not left sleeping for 60 s
    assert "interrupted again" in capsys.readouterr().err
    assert subprocess.run(["kill", "-0", str(sweep.proc.pid)], capture_output=True).returncode != 0
