"""Run directories that a refused run must not leave behind.

Hydra creates the run directory (``.hydra/`` and the job's ``.log``) before the task
function starts, i.e. before :mod:`kmexp.validate` can refuse the configuration. A run
refused there removes that directory again, so a typo leaves nothing a later
``resume=true``, ``kmexp.reproduce status`` or ``kmexp.results`` would mistake for a run.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path


def is_fresh(run_dir: Path) -> bool:
    """True when ``run_dir`` holds only what Hydra writes before a job starts."""
    return run_dir.is_dir() and all(e.name in (".hydra", ".kmexp_attempt") or e.suffix == ".log" for e in run_dir.iterdir())


def discard_if_fresh(run_dir: Path, log_root: Path | None = None) -> bool:
    """Remove ``run_dir`` if :func:`is_fresh`, then its parents that became empty, up to
    (not including) ``log_root``. Returns whether it was removed."""
    run_dir = Path(run_dir).resolve()
    if not is_fresh(run_dir):
        return False
    _close_log_files_in(run_dir)
    shutil.rmtree(run_dir)
    stop = Path(log_root).resolve() if log_root else run_dir.parent
    parent = run_dir.parent
    while parent != stop and stop in parent.parents and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent
    return True


def _close_log_files_in(run_dir: Path) -> None:
    """Detach the file handlers Hydra opened on the job's ``.log`` inside ``run_dir``: a later
    log record (the next job of an in-process sweep) would otherwise re-create the file."""
    loggers = [logging.getLogger(), *(lg for lg in logging.Logger.manager.loggerDict.values()
                                      if isinstance(lg, logging.Logger))]
    for lg in loggers:
        for handler in list(lg.handlers):
            if isinstance(handler, logging.FileHandler) and run_dir in Path(handler.baseFilename).resolve().parents:
                lg.removeHandler(handler)
                handler.close()
