"""OmegaConf resolvers used by configs/ (registered once, on import of the entry points)."""

from __future__ import annotations

from omegaconf import OmegaConf


def _run_name(override_dirname: str) -> str:
    """Run directory name: the command-line overrides (``method=km,seed=3``) or ``default``."""
    return override_dirname.replace("/", "-") or "default"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("kmexp.run_name"):
        OmegaConf.register_new_resolver("kmexp.run_name", _run_name)
