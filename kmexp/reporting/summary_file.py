"""Reading a run's ``summary.json`` defensively, for tools that gather many of them.

A summary can be damaged (a disk error, a truncated copy, a hand edit): binary bytes, not
JSON, JSON that is not an object, or metric fields that are not finite numbers.
:func:`read_summary` returns the summary or the reason it is malformed, so that
``kmexp.results`` can list it as "malformed" with its path and build the table from the
good ones.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

METRIC_PREFIXES = ("test/", "val/", "params/", "patch/")


def read_summary(path: Path) -> tuple[dict | None, str | None]:
    """``(summary, None)`` when well-formed, else ``(None, reason)``."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as e:
        return None, f"unreadable ({e.strerror or e})"
    except UnicodeDecodeError:
        return None, "not text (binary bytes)"
    try:
        summary = json.loads(text)
    except json.JSONDecodeError as e:
        return None, f"not JSON ({e.msg} at line {e.lineno})"
    if not isinstance(summary, dict):
        return None, f"not a JSON object (a {type(summary).__name__})"
    if summary.get("status") != "finished":
        return summary, None  # failed / preempted runs carry no metrics to check
    for key, value in summary.items():
        if key.startswith(METRIC_PREFIXES) and value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return None, f"{key} is not a number ({value!r})"
            if not math.isfinite(value):
                return None, f"{key} is not finite ({value!r})"
    return summary, None
