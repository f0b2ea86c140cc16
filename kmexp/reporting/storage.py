"""Storage of task patches versus task-specific networks (Kernel Modulation Sec. V).

"Distributing 100 task-specific ResNet-50 networks would require 100 x 94 MB = 9400 MB
... via KM ... 94 MB + 100 x 94 MB x 1.4% = 226 MB, a 43X memory reduction." Here the
two sides are measured on disk: the deployed network of one task (modulators folded
into the convolutions, safetensors, float32) and the task patch a run exports
(``patch.safetensors``: its trainable components, :mod:`kmexp.patches`). For N tasks,
N networks versus one base network plus N patches. MB = 10^6 bytes, as in the paper
(23.5 M parameters x 4 bytes = 94 MB).

    python -m kmexp.storage logs/reproduce/runs/<run id> [...]   # patches of finished runs
    python -m kmexp.storage --cell table2_aircraft/tkm2           # a table cell's model, untrained
    python -m kmexp.storage --cell table2_cars/tkm2 --tasks 100 --json storage.json
    python -m kmexp.storage --transfer          # every transfer dataset of the tables, TKM-2
    python -m kmexp.storage --transfer --keep-patches patches/   # ... and keep the patch files

The reduction is the paper's: N networks over one base network plus N patches,
``N * network / (network + N * patch)`` (Sec. V: 9400 MB / (94 MB + 100 x 94 MB x 1.4%)).

Sizes do not depend on weight values, so models are rebuilt with
``backbone.pretrained=false`` (no ImageNet weights needed).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path

from safetensors.torch import save_file
from torch import nn

from kmexp.components import count_parameters
from kmexp.errors import KmexpError
from kmexp.modulation import fold_modulators

MB = 1e6


def deployed_model_bytes(model: nn.Module, workdir: str | Path) -> int:
    """Bytes on disk of the task's complete network: modulators folded, every parameter and buffer."""
    deployed = fold_modulators(copy.deepcopy(model))
    state = {k: v.detach().cpu().contiguous() for k, v in deployed.state_dict().items()}
    path = Path(workdir) / "model.safetensors"
    save_file(state, str(path))
    size = path.stat().st_size
    path.unlink()
    return size


def task_storage(model_bytes: float, patch_bytes: float, n_tasks: int) -> dict:
    """Sec. V's arithmetic: ``n_tasks`` networks vs one base network plus ``n_tasks`` patches.

    The paper: 100 x 94 MB = 9400 MB vs 94 MB + 100 x 94 MB x 1.4% = 226 MB ("a 43X memory
    reduction"; 9400 / 225.6 = 41.7).
    """
    patched = model_bytes + n_tasks * patch_bytes
    return {
        "patch/bytes": patch_bytes,
        "model/bytes": model_bytes,
        "patch/fraction_of_model": patch_bytes / model_bytes,
        "tasks": n_tasks,
        "storage/networks_bytes": n_tasks * model_bytes,
        "storage/base_plus_patches_bytes": patched,
        "storage/reduction": n_tasks * model_bytes / patched,
    }


def storage_report(model: nn.Module, patch_bytes: int, n_tasks: int = 100, workdir: str | Path | None = None) -> dict:
    """Patch vs deployed network and the storage of ``n_tasks`` tasks, in bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        model_bytes = deployed_model_bytes(model, workdir or tmp)
    return {"params/trainable": count_parameters(model)["params/trainable"], **task_storage(model_bytes, patch_bytes, n_tasks)}


def _without_weights(model_cfg: dict) -> dict:
    model_cfg = copy.deepcopy(model_cfg)
    if model_cfg["backbone"].get("pretrained"):
        model_cfg["backbone"]["pretrained"] = False
    return model_cfg


def report_for_run(run_dir: str | Path, n_tasks: int = 100) -> dict:
    """Storage of a finished run: its exported patch and its rebuilt network."""
    from kmexp.methods import build_model

    run_dir = Path(run_dir)
    summary_path, patch_path = run_dir / "summary.json", run_dir / "patch.safetensors"
    if not summary_path.is_file() or not patch_path.is_file():
        raise KmexpError(f"{run_dir} has no summary.json and patch.safetensors (not a finished run with export_patch=true)")
    cfg = json.loads(summary_path.read_text())["config"]
    model = build_model(_without_weights(cfg["model"]))
    report = storage_report(model, patch_path.stat().st_size, n_tasks)
    return {"run": str(run_dir), "method": cfg["method"]["name"], "dataset": cfg["dataset"]["name"], **report}


def report_for_experiment(experiment: str, n_tasks: int = 100, overrides: list[str] | None = None,
                          patch_path: str | Path | None = None) -> dict:
    """Storage of a preset's patch, exported from the untrained model (same size as after training).

    ``patch_path``: write the patch there and keep it (default: a temporary file).
    """
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from kmexp.config import register_resolvers
    from kmexp.methods import build_model, parse_method
    from kmexp.patches import export_patch

    register_resolvers()
    from kmexp.resources import config_dir

    configs = config_dir()
    with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}", *(overrides or [])])
    model = build_model(_without_weights(OmegaConf.to_container(cfg.model, resolve=True)))
    with tempfile.TemporaryDirectory() as tmp:
        method = parse_method(cfg.method)
        patch = export_patch(model, Path(patch_path or Path(tmp) / "patch.safetensors"), method.name,
                             list(method.components), include_norm_stats=method.norm_stats != "frozen")
        report = storage_report(model, patch.stat().st_size, n_tasks, tmp)
    return {"run": experiment, "method": cfg.method.name, "dataset": cfg.dataset.name, **report}


def report_for_cell(cell: str, n_tasks: int) -> dict:
    """:func:`report_for_experiment` of a table row (``table2_cars/tkm2``: its preset and overrides)."""
    from kmexp.reporting.tables import TABLES

    table_id, _, key = cell.partition("/")
    rows = {r.key: r for r in TABLES[table_id].rows} if table_id in TABLES else {}
    if key not in rows:
        raise KmexpError(f"unknown table cell {cell!r}; give TABLE/ROW, e.g. table2_cars/tkm2")
    return {**report_for_experiment(rows[key].experiment, n_tasks, list(rows[key].overrides)), "run": cell}


TRANSFER_EXPERIMENT = "transfer"  # the KM ResNet-50 transfer preset (Sec. IV-B, Table II)


def transfer_datasets() -> list[str]:
    """Every dataset the tables train with the KM transfer preset (Table II's four, one table each)."""
    from kmexp.reporting.tables import TABLES

    datasets = {o.partition("=")[2] for t in TABLES.values() for r in t.rows
                if r.experiment == TRANSFER_EXPERIMENT for o in r.overrides if o.startswith("dataset=")}
    return sorted(datasets)


def report_per_transfer_dataset(n_tasks: int = 100, patch_dir: str | Path | None = None) -> list[dict]:
    """TKM-2 (KM with every component, Table II) on each transfer dataset: its patch file
    written for that dataset's model (the classifier has the dataset's classes) and the
    storage of ``n_tasks`` tasks of that dataset. ``patch_dir``: keep ``<dataset>.safetensors`` there."""
    reports = []
    for dataset in transfer_datasets():
        path = Path(patch_dir) / f"{dataset}.safetensors" if patch_dir else None
        report = report_for_experiment(TRANSFER_EXPERIMENT, n_tasks, [f"dataset={dataset}", "method=km"], path)
        reports.append({**report, "run": f"{dataset}/tkm2"})
    return reports


def average_report(reports: list[dict]) -> dict:
    """Tasks spread evenly over the reports (e.g. the four datasets of Table II): mean patch and network."""
    n = reports[0]["tasks"]
    patch = sum(r["patch/bytes"] for r in reports) / len(reports)
    model = sum(r["model/bytes"] for r in reports) / len(reports)
    return {
        "run": "average", "method": "/".join(sorted({r["method"] for r in reports})),
        "dataset": "/".join(r["dataset"] for r in reports),
        "params/trainable": round(sum(r["params/trainable"] for r in reports) / len(reports)),
        **task_storage(model, patch, n),
    }


def format_reports(reports: list[dict]) -> str:
    n = reports[0]["tasks"] if reports else 0
    lines = [
        f"| run | method | dataset | trainable | patch (MB) | network (MB) | patch / network | {n} networks (MB) "
        f"| base + {n} patches (MB) | reduction |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in reports:
        lines.append(
            f"| {r['run']} | {r['method']} | {r['dataset']} | {r['params/trainable']:,} | {r['patch/bytes'] / MB:.2f} "
            f"| {r['model/bytes'] / MB:.2f} | {100 * r['patch/fraction_of_model']:.2f}% "
            f"| {r['storage/networks_bytes'] / MB:,.0f} | {r['storage/base_plus_patches_bytes'] / MB:,.1f} "
            f"| {r['storage/reduction']:.1f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dirs", nargs="*", help="finished run directories (summary.json + patch.safetensors)")
    p.add_argument("--cell", action="append", default=[], help="a table row, TABLE/ROW, e.g. table2_cars/tkm2 (repeatable)")
    p.add_argument("--transfer", action="store_true",
                   help="TKM-2 on every transfer dataset the tables use (Table II), one row each")
    p.add_argument("--keep-patches", default=None, metavar="DIR",
                   help="with --transfer: keep the patch files written for each dataset in DIR")
    p.add_argument("--tasks", type=int, default=100, help="number of tasks (paper: 100)")
    p.add_argument("--json", default=None, help="also write the reports to this JSON file")
    args = p.parse_args(argv)
    if not args.run_dirs and not args.cell and not args.transfer:
        p.error("give run directories, --cell or --transfer")
    try:
        reports = [report_for_run(d, args.tasks) for d in args.run_dirs]
        reports += [report_for_cell(c, args.tasks) for c in args.cell]
        if args.transfer:
            if args.keep_patches:
                Path(args.keep_patches).mkdir(parents=True, exist_ok=True)
            reports += report_per_transfer_dataset(args.tasks, args.keep_patches)
    except KmexpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if len(reports) > 1:
        reports.append(average_report(reports))
    print(format_reports(reports))
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
