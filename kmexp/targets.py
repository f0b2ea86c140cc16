"""Which modules a method touches: peft-style ``target_modules`` / ``exclude_modules``.

Kernel Modulation attaches a modulator to every convolution (Sec. III-A); as a library
one often wants a subset. Selection follows peft's ``LoraConfig`` conventions:

- ``None``: every module of the wanted types;
- a list of names: a module is selected when its full name equals an entry or ends with
  ``"." + entry`` (``["conv1"]`` selects ``conv1`` and ``layer1.0.conv1``);
- a string: a regular expression that must match the full module name.

``exclude_modules`` uses the same rules and wins over ``target_modules``. The classifier
(:func:`kmexp.components.classifier_module`) is never a target: it is the task head.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from torch import nn

from kmexp.components import classifier_module
from kmexp.errors import ConfigError

Selector = str | Sequence[str] | None


def matches(name: str, selector: Selector) -> bool:
    if selector is None:
        return True
    if isinstance(selector, str):
        return re.fullmatch(selector, name) is not None
    return any(name == s or name.endswith(f".{s}") for s in selector)


def select_modules(
    model: nn.Module,
    target_modules: Selector = None,
    exclude_modules: Selector = None,
    types: tuple[type, ...] = (nn.Conv2d,),
    accept: Callable[[nn.Module], bool] | None = None,
) -> list[str]:
    """Names (in ``named_modules`` order) of the modules of ``types`` that are targeted and
    not excluded (and pass ``accept``); :class:`ConfigError` when nothing is selected."""
    head = classifier_module(model)
    names = [
        name for name, m in model.named_modules()
        if name and isinstance(m, types) and m is not head
        and matches(name, target_modules)
        and not (exclude_modules is not None and matches(name, exclude_modules))
        and (accept is None or accept(m))
    ]
    if not names:
        raise ConfigError(
            f"target_modules={target_modules!r}, exclude_modules={exclude_modules!r} select no "
            f"{'/'.join(t.__name__ for t in types)} module of {type(model).__name__}"
        )
    return names
