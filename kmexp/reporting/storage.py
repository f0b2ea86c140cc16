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


def storage_report(model: nn.Module, patch_bytes: int, n_tasks: int = 100, workdir: str | Path | None = None) -> dict:
    """Patch vs deployed network and the storage of ``n_tasks`` tasks, in bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        model_bytes = deployed_model_bytes(model, workdir or tmp)
    patched = model_bytes + n_tasks * patch_bytes
    return {
        "params/trainable": count_parameters(model)["params/trainable"],
        "patch/bytes": patch_bytes,
        "model/bytes": model_bytes,
        "patch/fraction_of_model": patch_bytes / model_bytes,
        "tasks": n_tasks,
        "storage/networks_bytes": n_tasks * model_bytes,
        "storage/base_plus_patches_bytes": patched,
        "storage/reduction": n_tasks * model_bytes / patched,
    }


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


def report_for_experiment(experiment: str, n_tasks: int = 100, overrides: list[str] | None = None) -> dict:
    """Storage of a preset's patch, exported from the untrained model (same size as after training)."""
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
        patch = export_patch(model, Path(tmp) / "patch.safetensors", method.name, list(method.components),
                             include_norm_stats=method.norm_stats != "frozen")
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


def average_report(reports: list[dict]) -> dict:
    """Tasks spread evenly over the reports (e.g. the four datasets of Table II): mean patch and network."""
    n = reports[0]["tasks"]
    patch = sum(r["patch/bytes"] for r in reports) / len(reports)
    model = sum(r["model/bytes"] for r in reports) / len(reports)
    return {
        "run": "average", "method": "/".join(sorted({r["method"] for r in reports})),
        "dataset": "/".join(r["dataset"] for r in reports),
        "params/trainable": round(sum(r["params/trainable"] for r in reports) / len(reports)),
        "patch/bytes": patch, "model/bytes": model, "patch/fraction_of_model": patch / model, "tasks": n,
        "storage/networks_bytes": n * model, "storage/base_plus_patches_bytes": model + n * patch,
        "storage/reduction": n * model / (model + n * patch),
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
    p.add_argument("--tasks", type=int, default=100, help="number of tasks (paper: 100)")
    p.add_argument("--json", default=None, help="also write the reports to this JSON file")
    args = p.parse_args(argv)
    if not args.run_dirs and not args.cell:
        p.error("give run directories or --cell")
    try:
        reports = [report_for_run(d, args.tasks) for d in args.run_dirs]
        reports += [report_for_cell(c, args.tasks) for c in args.cell]
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
