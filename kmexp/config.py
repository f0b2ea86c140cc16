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


def _experiment() -> str | None:
    """The chosen experiment preset (``table1/cifar10``), or None: presets never type their name."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return HydraConfig.get().runtime.choices.get("experiment")


def register_resolvers() -> None:
    from kmexp.reporting.runs import register_resolver

    for name, fn in (("kmexp.run_name", _run_name), ("kmexp.table_of", _table_of), ("kmexp.row_of", _row_of),
                     ("kmexp.experiment", _experiment), ("kmexp.gpus_per_node", _gpus_per_node)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
    register_resolver()



def drop_dotted(data: dict, dotted_keys) -> dict:
    """Remove each ``a.b.c`` key from the nested plain dict ``data`` (missing keys are fine); returns it.

    Used where a run's configuration is compared without fields that only name or place it
    (run identity in kmexp.reporting.runs, resume checks in kmexp.runs.resume)."""
    for dotted in dotted_keys:
        *parents, leaf = dotted.split(".")
        node = data
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return data
