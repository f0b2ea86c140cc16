"""One composition per run: skip Hydra's extra compose that only reads ``hydra.mode``.

Hydra 1.3 composes the whole configuration twice for every ``python -m kmexp.train``: first
(``Hydra.get_mode``) only to read ``hydra.mode``, then for the run. No kmexp config sets
``hydra.mode`` (``tests/test_hydra_mode.py`` checks every YAML), so the first compose can only
return None -- Hydra's default, after which ``-m`` / no ``-m`` decides the mode -- unless the
command line sets ``hydra.mode`` or brings configs from elsewhere (``--config-dir``,
``hydra.searchpath``); then the original is used. The second compose also
validates everything the first did, so errors are unchanged.
"""

from __future__ import annotations

from hydra._internal.hydra import Hydra


def _sets_mode(override: str) -> bool:
    return override.lstrip("+~").split("=", 1)[0].strip() == "hydra.mode"


def _adds_configs(override: str) -> bool:
    return override.lstrip("+~").startswith("hydra.searchpath")


def _outside_configs(hydra: Hydra) -> bool:
    """Configs from outside kmexp (``--config-dir``, a search-path plugin) may set ``hydra.mode``."""
    return any(entry.provider not in ("hydra", "main", "schema")
               for entry in hydra.config_loader.get_search_path().get_path())


def compose_once() -> None:
    """Patch ``Hydra.get_mode`` (idempotent) so runs whose command line leaves ``hydra.mode`` unset compose once."""
    original = Hydra.get_mode
    if getattr(original, "kmexp_compose_once", False):
        return

    def get_mode(self, config_name, overrides, *args, **kwargs):
        if any(_sets_mode(o) or _adds_configs(o) for o in overrides) or _outside_configs(self):
            return original(self, config_name, overrides, *args, **kwargs)
        return None  # what the skipped compose returns when no config sets hydra.mode

    get_mode.kmexp_compose_once = True
    get_mode.__wrapped__ = original
    Hydra.get_mode = get_mode
