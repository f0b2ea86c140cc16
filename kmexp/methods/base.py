"""What a method is, and the registry that maps method names to methods.

A method (Kernel Modulation Table I, model patches Sec. 2) says

- which components train (:mod:`kmexp.components`): ``components``;
- which modules it adds to the network before freezing: :meth:`Method.inject`; the
  injected modules subclass :class:`kmexp.components.InjectedModule`, so they tag their
  own parameters and declare their own optimizer needs (e.g. no weight decay);
- whether normalization layers re-estimate their running statistics while training
  (``norm_stats: update``, PyTorch's exponential average, momentum 0.1; or
  ``epoch_average``, a cumulative average over each epoch, :mod:`kmexp.norm_statistics`;
  both shipped in the task patch) or keep the base model's (``frozen``);
- for meta-learning (KM Sec. IV-C), what the inner loop adapts: ``inner_components``.

Class attributes give a method's defaults; its config (``configs/method/<name>.yaml``)
may override ``components``, ``norm_stats`` and ``inner_components`` and sets the
method's own options (keyword arguments of its ``__init__``).
"""

from __future__ import annotations

from typing import ClassVar

from omegaconf import DictConfig, OmegaConf
from torch import nn

from kmexp.components import validate_components
from kmexp.errors import ConfigError

NORM_STATS = ("update", "epoch_average", "frozen")

METHODS: dict[str, type[Method]] = {}


def register_method(name: str):
    """Class decorator: ``@register_method("km")`` makes the class ``method=km``."""

    def register(cls: type[Method]) -> type[Method]:
        if name in METHODS and METHODS[name] is not cls:
            raise ValueError(f"method {name!r} is registered twice ({METHODS[name].__name__}, {cls.__name__})")
        cls.name = name
        METHODS[name] = cls
        return cls

    return register


class Method:
    """A registered training method; instances are built by :func:`parse_method`."""

    name: ClassVar[str] = ""
    components: tuple[str, ...] = ()
    norm_stats: str = "update"
    inner_components: tuple[str, ...] | None = None
    # the LightningModules under which the method means what it says (None: any); a meta-learning
    # method such as MAML would silently train a plain classifier elsewhere (kmexp.validate refuses)
    lightning_modules: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, components=None, norm_stats: str | None = None, inner_components=None):
        if components is not None:
            self.components = tuple(components)
        self.components = tuple(validate_components(self.components))
        if norm_stats is not None:
            self.norm_stats = norm_stats
        if self.norm_stats not in NORM_STATS:
            raise ConfigError(f"method.norm_stats={self.norm_stats!r} is not one of {list(NORM_STATS)}")
        if inner_components is not None:
            self.inner_components = tuple(validate_components(inner_components))

    def also_train(self, component: str) -> None:
        """Add ``component`` to what trains (for options such as ``train_classifier``)."""
        if component not in self.components:
            self.components = (*self.components, *validate_components([component]))

    def inject(self, model: nn.Module, model_cfg: dict) -> None:
        """Add the method's modules to ``model`` in place (before freezing); ``model_cfg``
        is the whole model section (e.g. ``modulator`` for KM). Default: nothing."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, components={list(self.components)}, norm_stats={self.norm_stats!r})"


def parse_method(cfg: dict | DictConfig | Method) -> Method:
    """The method of a ``method`` config section: ``name`` plus the method's options."""
    if isinstance(cfg, Method):
        return cfg
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    options = dict(cfg)
    name = options.pop("name", None)
    if name is None:
        raise ConfigError("method config needs 'name'")
    options.pop("description", None)
    if name not in METHODS:
        raise ConfigError(f"method={name!r} is not one of {sorted(METHODS)}")
    try:
        return METHODS[name](**options)
    except TypeError as e:  # an option the method does not take
        raise ConfigError(f"method {name!r}: {e}") from e
