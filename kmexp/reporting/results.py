"""Gather the runs' ``summary.json`` files into a table beside the paper's numbers.

    python -m kmexp.results table1 logs/reproduce/runs        # writes results/table1.md/.csv
    python -m kmexp.results table1_digits logs/reproduce/runs --out results/digits

Each (row, seed) cell reads the run its training configuration resolves to
(``<runs dir>/<run identity>/summary.json``, :mod:`kmexp.reporting.runs`); cells report
mean +- std over seeds (sample std), the number of finished runs, and the paper's
value from ``results/paper/<paper_table>.csv``. Failed runs and missing seeds are
listed under the table. Nothing here needs W&B.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import statistics
import sys
from pathlib import Path

from kmexp.reporting.summary_file import read_summary
from kmexp.reporting.tables import TABLES, Table
from kmexp.resources import paper_dir, results_dir


def paper_values(paper_table: str, column: str) -> dict[str, tuple[float | None, float | None]]:
    """row -> (value, std) of ``column`` in results/paper/<paper_table>.csv."""
    path = (paper_dir() or Path("/nonexistent")) / f"{paper_table}.csv"
    if not path.is_file():
        return {}
    values = {}
    with path.open() as f:
        for r in csv.DictReader(f):
            if r["column"] == column:
                v = float(r["value"]) if r["value"] else None
                s = float(r["std"]) if r["std"] else None
                values[r["row"]] = (v, s)
    return values


def paper_cell(table: Table, row) -> tuple[float | None, float | None]:
    """The paper's (value, std) for a row, or (None, None) when the paper prints none."""
    if not table.paper_table or row.paper is None:
        return None, None
    prow, pcol = (row.key, table.paper_column) if row.paper == "default" else row.paper
    return paper_values(table.paper_table, pcol).get(prow, (None, None))


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def cell_summaries(cells, runs_dir: str | Path) -> list[dict]:
    """The summary of each cell's run (``runs_dir/<run_id>/summary.json``), tagged with the cell's row;
    cells whose run has no summary yet are left out (reported as missing seeds)."""
    out = []
    for cell in cells:
        path = Path(runs_dir) / cell.run_id / "summary.json"
        if not path.is_file():
            continue
        s, problem = read_summary(path)  # damaged files: listed as malformed, never a crash
        if s is None:
            s = {"status": "malformed", "error": f"{path}: {problem}"}
        out.append({**s, "row": cell.row, "seed": cell.seed, "_path": str(path)})
    return out


def runs_of_row(row, summaries: list[dict]) -> list[dict]:
    """Summaries of ``row`` (tagged by :func:`cell_summaries`)."""
    return [s for s in summaries if s.get("row") == row.key]


def mixed_commits(summaries: list[dict]) -> str | None:
    """A warning when the finished runs come from more than one code version (the git commit in
    their ``provenance/git_commit``; runs from a dirty tree are counted as such)."""
    versions: dict[str, int] = {}
    for s in summaries:
        commit = s.get("provenance/git_commit")
        name = (commit[:10] if commit else "unknown") + ("+dirty" if s.get("provenance/git_dirty") else "")
        versions[name] = versions.get(name, 0) + 1
    commits = {v.split("+")[0] for v in versions}
    if len(commits) <= 1:
        return None
    listed = ", ".join(f"{v} ({n} runs)" for v, n in sorted(versions.items(), key=lambda kv: -kv[1]))
    return f"warning: this table mixes runs of {len(commits)} code versions: {listed}"


def aggregate(table: Table, summaries: list[dict]) -> tuple[list[dict], list[str]]:
    """One dict per table row (with per-metric mean/std and counts) and a list of problems
    (failed and missing runs, and runs of different code versions)."""
    rows, problems = [], []
    all_finished = []
    for row in table.rows:
        runs = runs_of_row(row, summaries)
        finished = [s for s in runs if s.get("status") == "finished"]
        all_finished += finished
        failed = [s for s in runs if s.get("status") != "finished"]
        for s in failed:
            kind = "malformed summary" if s.get("status") == "malformed" else "failed"
            problems.append(f"{row.key} seed {s.get('seed')}: {kind}: {s.get('error', 'unknown error')}")
        seeds = {s.get("seed") for s in finished}
        missing = [sd for sd in table.seeds if sd not in seeds]
        if missing:
            where = f"experiment={row.experiment}" + "".join(" " + o for o in row.overrides)
            problems.append(f"{row.key} ({where}): missing seeds {missing}")
        cell = {"row": row.key, "label": row.label, "experiment": row.experiment, "n": len(finished),
                "overrides": " ".join(row.overrides), "x": row.x}
        for metric in table.metrics:
            vals = [float(s[metric]) for s in finished if s.get(metric) is not None]
            cell[metric] = mean_std(vals)
        rows.append(cell)
    # recovered accuracy ratio against the table's own reference row when no reference was configured
    if table.reference_row and "test/recovered_accuracy_ratio" in table.metrics:
        ref = next((r for r in rows if r["row"] == table.reference_row), None)
        if ref and ref["test/acc"][0]:
            for r in rows:
                if r["test/recovered_accuracy_ratio"][0] is None and r["test/acc"][0] is not None:
                    r["test/recovered_accuracy_ratio"] = (r["test/acc"][0] / ref["test/acc"][0], None)
    mixed = mixed_commits(all_finished)
    if mixed:
        problems.insert(0, mixed)
    return rows, problems


def _fmt(ms: tuple[float | None, float | None], scale: float = 1.0, digits: int = 2) -> str:
    m, s = ms
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "—"
    if s is None:
        return f"{m * scale:.{digits}f}"
    return f"{m * scale:.{digits}f} ± {s * scale:.{digits}f}"


def render(table: Table, rows: list[dict], problems: list[str], provenance: str = "") -> tuple[str, list[dict]]:
    """Markdown text and CSV records of an aggregated table."""
    show_ratio = "test/recovered_accuracy_ratio" in table.metrics
    ratio_paper = paper_values(table.paper_table, "recovered_accuracy_ratio") if table.paper_table else {}
    row_defs = {r.key: r for r in table.rows}
    head = ["row", "runs"]
    for metric in table.metrics:
        head.append(table.metric_labels.get(metric, metric))
    head += [f"paper accuracy ({table.paper_label})"] + (["paper ratio"] if show_ratio else [])
    lines = [f"# {table.title}", ""]
    if table.note:
        lines += [table.note, ""]
    if provenance:
        lines += [provenance, ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    records = []
    for r in rows:
        cells = [r["label"], str(r["n"])]
        rec = {"row": r["row"], "experiment": r["experiment"], "overrides": r["overrides"], "x": r["x"],
               "runs": r["n"]}
        for metric in table.metrics:
            m, s = r[metric]
            rec[f"{metric}_mean"], rec[f"{metric}_std"] = m, s
            if metric == "test/acc" or (metric.startswith("test/") and metric.endswith(("/acc", "/acc_ci95"))):
                cells.append(_fmt(r[metric], 100))  # per-task accuracies and few-shot CIs too: points, like accuracy
            elif metric.startswith("params/") and not metric.endswith(("pct", "flops")):
                cells.append("—" if m is None else f"{int(m):,}")
            else:
                cells.append(_fmt(r[metric], 1, 3 if ("ratio" in metric or "flops" in metric) else 2))
        pv, ps = paper_cell(table, row_defs[r["row"]])
        cells.append("—" if pv is None else (f"{pv:.2f}" + (f" ± {ps:.2f}" if ps is not None else "")))
        rv = ratio_paper.get(r["row"], (None, None))[0]
        if show_ratio:
            cells.append("—" if rv is None else f"{rv:.2f}")
        rec["paper_accuracy"], rec["paper_accuracy_std"], rec["paper_ratio"] = pv, ps, rv
        lines.append("| " + " | ".join(cells) + " |")
        records.append(rec)
    if problems:
        lines += ["", "Failed or missing runs:", ""] + [f"- {p}" for p in problems]
    return "\n".join(lines) + "\n", records


def write_table(table_id: str, cells, runs_dir: str | Path, out_dir: str | Path, provenance: str = "",
                table: Table | None = None) -> Path:
    """Aggregate the runs of ``cells`` (under ``runs_dir``) into ``out_dir/<table_id>.md`` and ``.csv``
    (``table`` overrides the registered definition, e.g. a subset of rows or seeds)."""
    table = table or TABLES[table_id]
    rows, problems = aggregate(table, cell_summaries(cells, runs_dir))
    for p in problems:
        if p.startswith("warning:"):
            print(f"[kmexp] {table_id}: {p}", file=sys.stderr)
    text, records = render(table, rows, problems, provenance)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / f"{table_id}.md"
    md.write_text(text)
    with (out_dir / f"{table_id}.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(records[0]) if records else ["row"])
        w.writeheader()
        w.writerows(records)
    return md


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("table", help=f"one of {sorted(TABLES)}")
    p.add_argument("runs_dir", help="directory of the run directories (<logs>/runs of kmexp.reproduce)")
    p.add_argument("--out", default=str(results_dir()), help="output directory (default: results/)")
    p.add_argument("--provenance", default="", help="a line saying what ran (data, epochs, seeds, hardware)")
    p.add_argument("--seeds", default=None, help="the seeds the sweep was meant to run (default: the table's 5)")
    args = p.parse_args(argv)
    if not Path(args.runs_dir).is_dir():
        print(f"error: {args.runs_dir} is not a directory", file=sys.stderr)
        return 1
    if args.table not in TABLES:
        print(f"error: unknown table {args.table!r}; choose from {sorted(TABLES)}", file=sys.stderr)
        return 1
    table = TABLES[args.table]
    if args.seeds:
        table = dataclasses.replace(table, seeds=tuple(int(s) for s in args.seeds.split(",")))
    from kmexp.reporting.runs import plan

    cells = plan(args.table, table, list(table.seeds))
    md = write_table(args.table, cells, args.runs_dir, args.out, args.provenance, table=table)
    print(md.read_text())
    print(f"[kmexp] wrote {md} and {md.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
