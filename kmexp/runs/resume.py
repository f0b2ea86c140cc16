"""What to do with a run directory: start fresh, resume, report a finished run, or refuse.

- No checkpoint: a fresh start (the configuration is saved as ``run_config.json``).
- ``summary.json`` says ``finished`` and the configuration is the same: nothing is retrained;
  ``kmexp.train`` prints where the summary is and exits 0 (a re-launched sweep trains nothing).
- A checkpoint and the same saved configuration: resume automatically (a requeued job needs
  no flag; ``resume=true`` is accepted too). ``resume=false`` refuses instead.
- A different saved configuration: refused, naming the keys that differ.
- ``last.ckpt`` unreadable (torn by a crash on a filesystem without atomic renames, damaged
  later): the newest readable checkpoint (``last.prev.ckpt``, ``best-*.ckpt``) is used, with a
  warning.

"Same configuration" ignores keys that do not change what is computed (where logs go, the
progress bar, the device count, data loader workers, the checkpoint interval).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from kmexp.config import drop_dotted
from kmexp.errors import ExistingRunError
from kmexp.runs.atomic_io import LAST, PREVIOUS

log = logging.getLogger(__name__)

CONFIG_FILE = "run_config.json"
LEGACY_HPC_PREFIX = "legacy-hpc_ckpt_"
# dotted keys that may change between a run and its resumption
VOLATILE = ("resume", "logger", "paths", "callbacks.progress_bar", "checkpointing", "trainer.accelerator",
            "trainer.devices", "dataset.datamodule.num_workers", "dataset.datamodule.root", "memory_format",
            "compile")


@dataclass
class Decision:
    action: str  # "fresh" | "resume" | "finished"
    ckpt_path: Path | None = None
    step: int | None = None


def comparable_config(cfg: DictConfig | dict) -> dict:
    c = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else json.loads(json.dumps(cfg))
    drop_dotted(c, VOLATILE)
    return json.loads(json.dumps(c, default=str))


def save_run_config(run_dir: Path, cfg: DictConfig) -> None:
    path = run_dir / CONFIG_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(comparable_config(cfg), indent=1, sort_keys=True))
    tmp.replace(path)


def _differences(a, b, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _differences(a.get(k, "<missing>"), b.get(k, "<missing>"), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix[:-1]}: {a!r} -> {b!r}"]


def checkpoint_step(path: Path) -> int | None:
    """The checkpoint's global step, or ``None`` when it cannot be read."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(ckpt["global_step"]) if "state_dict" in ckpt else None
    except Exception:  # noqa: BLE001 - any failure means unreadable
        return None


def candidates(ckpt_dir: Path) -> list[Path]:
    found = [ckpt_dir / LAST, ckpt_dir / PREVIOUS, *sorted(ckpt_dir.glob("best-*.ckpt")),
             *sorted(ckpt_dir.glob(f"{LEGACY_HPC_PREFIX}*.ckpt"))]
    return [p for p in found if p.is_file()]


def newest_readable(ckpt_dir: Path) -> tuple[Path | None, int | None]:
    best: tuple[Path | None, int | None] = (None, None)
    unreadable = []
    for p in candidates(ckpt_dir):
        step = checkpoint_step(p)
        if step is None:
            unreadable.append(p.name)
        elif best[1] is None or step > best[1]:
            best = (p, step)
    if unreadable:
        log.warning("unreadable checkpoint(s) in %s: %s; using %s", ckpt_dir, ", ".join(unreadable),
                    best[0].name if best[0] else "none (starting over)")
        if best[0] is not None:
            print(f"[kmexp] warning: {', '.join(unreadable)} unreadable; resuming from {best[0].name} "
                  f"(step {best[1]})")
    return best


def finished_summary(run_dir: Path) -> dict | None:
    try:
        s = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return s if isinstance(s, dict) and s.get("status") == "finished" else None


def retire_hpc_checkpoints(run_dir: Path) -> None:
    """Move Lightning's ``hpc_ckpt_*.ckpt`` (written by earlier versions on SLURM) into
    ``checkpoints/legacy-hpc_ckpt_*``: on SLURM Lightning would otherwise load one of them
    whenever ``fit``/``test`` get no explicit checkpoint. They stay resume candidates."""
    for p in sorted(run_dir.glob("hpc_ckpt_*.ckpt")):
        target = run_dir / "checkpoints" / f"legacy-{p.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        p.replace(target)
        log.warning("moved Lightning's %s to %s (last.ckpt is the only resume point now)", p.name, target)


def decide(run_dir: Path, cfg: DictConfig) -> Decision:
    ckpt_dir = run_dir / "checkpoints"
    saved_path = run_dir / CONFIG_FILE
    saved = json.loads(saved_path.read_text()) if saved_path.is_file() else None
    finished = finished_summary(run_dir)
    if saved is None and finished is not None and isinstance(finished.get("config"), dict):
        saved = comparable_config(finished["config"])  # a run from before run_config.json existed
    current = comparable_config(cfg)
    if saved is not None and saved != current:
        diff = _differences(saved, current)
        raise ExistingRunError(
            f"{run_dir} holds a run with a different configuration ({'; '.join(diff[:5])}"
            f"{' ...' if len(diff) > 5 else ''}). Pass paths.log_dir=... or another override to start a new run."
        )
    if finished is not None and saved is not None:
        return Decision("finished")
    if not candidates(ckpt_dir):
        return Decision("fresh")
    resume = cfg.get("resume", "auto")
    if resume is False or (saved is None and resume is not True):
        raise ExistingRunError(
            f"{run_dir} already holds a checkpoint. Re-run with resume=true (or without resume=false) to "
            f"continue it, or pass paths.log_dir=... / a different override to start a new run."
        )
    path, step = newest_readable(ckpt_dir)
    if path is None:
        return Decision("fresh")
    return Decision("resume", path, step)
