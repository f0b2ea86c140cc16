"""A run is trained once: its identity is its resolved training configuration.

Two table cells that resolve to the same configuration (say KM Table II's TKM-2 cell and
Fig. 4's TKM-2 point, or Fig. 5's default modulator and Table I's KM row) are one run: the
identity is a hash of the resolved config minus the fields that only name, place or log a
run (``NAMING_KEYS``, ``PLACEMENT_KEYS``), and ``reproduce`` trains each identity once, in
``<logs>/runs/<identity>/``. The same hash names the run directory inside the job (Hydra's
``hydra.sweep.subdir=${kmexp.run_id:}``), so the launcher and the job agree on where it lives.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf, open_dict

from kmexp.config import drop_dotted

# Top-level fields that name, place or log a run without changing what it trains.
NAMING_KEYS = ("hydra", "experiment_name", "sweep_name", "task_name", "logger", "resume", "checkpointing")
# Dotted fields that only choose where and how fast a run executes.
PLACEMENT_KEYS = ("trainer.accelerator", "trainer.devices", "callbacks.progress_bar",
                  "dataset.datamodule.num_workers", "memory_format", "compile", "meta.batched_tasks")
IDENTITY_LENGTH = 12


def run_identity(cfg: DictConfig) -> str:
    """Hash of the resolved training configuration (see the module docstring)."""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(cfg):
        for key in NAMING_KEYS:
            cfg.pop(key, None)
        if "paths" in cfg:  # where data and logs live is not part of what is trained
            cfg.paths = {k: f"<paths.{k}>" for k in cfg.paths}
    data = OmegaConf.to_container(cfg, resolve=True)
    drop_dotted(data, PLACEMENT_KEYS)
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:IDENTITY_LENGTH]


def _run_id_resolver(*, _root_: DictConfig) -> str:
    return run_identity(_root_)


def register_resolver() -> None:
    if not OmegaConf.has_resolver("kmexp.run_id"):
        OmegaConf.register_new_resolver("kmexp.run_id", _run_id_resolver)


def override_key(override: str) -> str:
    """``++dataset.datamodule.image_size=32`` -> ``dataset.datamodule.image_size``."""
    return override.split("=", 1)[0].lstrip("+~")


def merge_overrides(*groups) -> list[str]:
    """Later groups win per key (the mini profile over a row, the command line over both)."""
    merged: dict[str, str] = {}
    for group in groups:
        for o in group:
            merged.pop(override_key(o), None)
            merged[override_key(o)] = o
    return list(merged.values())


@dataclass(frozen=True)
class Cell:
    """One (table, row, seed) cell and the run that feeds it."""

    table: str
    row: str
    seed: int
    overrides: tuple[str, ...]  # experiment=..., the row's and the profile's overrides (no seed)
    run_id: str


def compose(overrides: list[str]) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from kmexp.config import register_resolvers

    register_resolvers()
    from kmexp.resources import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=overrides)


def plan(table_id: str, table, seeds: list[int], profile: list[str] | tuple = (), extra: list[str] | tuple = ()) -> list[Cell]:
    """Every cell of ``table`` for ``seeds`` with its run identity (one compose per row)."""
    cells = []
    for row in table.rows:
        overrides = merge_overrides([f"experiment={row.experiment}"], row.overrides, profile, extra)
        # Hydra's own settings (launcher, sweep dirs) name and place a run: not part of its identity
        overrides = [o for o in overrides if not override_key(o).startswith(("hydra.", "hydra/"))]
        cfg = compose(overrides)
        for seed in seeds:
            with open_dict(cfg):
                cfg.seed = seed
            cells.append(Cell(table_id, row.key, seed, tuple(overrides), run_identity(cfg)))
    return cells
