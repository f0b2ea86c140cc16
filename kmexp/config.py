"""OmegaConf resolvers used by configs/ (registered once, on import of the entry points)."""

from __future__ import annotations

import hashlib

from omegaconf import OmegaConf

MAX_NAME = 180  # file systems allow 255 bytes per path component


def _run_name(override_dirname: str) -> str:
    """Run directory name: the command-line overrides (``method=km,seed=3``) or ``default``.

    Long names keep their first characters and end in a hash of the whole string, so
    the same overrides always give the same (unique) directory.
    """
    name = override_dirname.replace("/", "-") or "default"
    if len(name) > MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:12]
        name = f"{name[: MAX_NAME - 13]}~{digest}"
    return name


def _table_of(experiment_name: str | None, default: str, sweep_name: str | None = None) -> str:
    """W&B group: the table an experiment preset belongs to (``table1/km`` -> ``table1``), else the
    command-line sweep the run belongs to (``sweep_name``), else ``default``."""
    if experiment_name:
        return experiment_name.split("/")[0]
    return sweep_name or default


def _row_of(experiment_name: str | None, default: str) -> str:
    """W&B job type: the row of the table (``table1/km`` -> ``km``)."""
    return experiment_name.split("/", 1)[-1] if experiment_name else default


def _gpus_per_node(accelerator: str, devices) -> int:
    """SLURM launcher: GPUs to request per node, one per device unless the run is on CPU."""
    if accelerator == "cpu":
        return 0
    return devices if isinstance(devices, int) and devices > 0 else 1


def register_resolvers() -> None:
    for name, fn in (("kmexp.run_name", _run_name), ("kmexp.table_of", _table_of), ("kmexp.row_of", _row_of),
                     ("kmexp.gpus_per_node", _gpus_per_node)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def recipe_overrides(cfg, task_overrides: list[str]) -> list[str]:
    """The dataset's standard recipe (``dataset.recipe``: a list of Hydra overrides, e.g. the
    paper's backbone, optimizer and epochs for that dataset) minus what the command line sets.

    Applied only when no experiment preset is chosen: presets are explicit and complete.
    ``python -m kmexp.train method=km dataset=cars`` thus trains the paper's TKM-2 recipe
    for Cars, while ``... dataset=cars backbone=resnet32`` still gets a ResNet-32.
    """
    recipe = list(cfg.dataset.get("recipe") or [])
    keys = {o.split("=", 1)[0].lstrip("+~") for o in task_overrides}
    if not recipe or "experiment" in keys:
        return []
    return [o for o in recipe if o.split("=", 1)[0].lstrip("+~") not in keys]
