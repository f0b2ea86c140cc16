"""Errors that end a run with one clear message instead of a traceback.

``kmexp.train`` catches :class:`KmexpError`, prints its message and exits non-zero.
"""


class KmexpError(Exception):
    """Base class: a user-facing problem (bad config, missing data, bad patch...)."""


class ConfigError(KmexpError):
    """The composed configuration is invalid."""


class DatasetNotFoundError(KmexpError):
    """A dataset is missing on disk and could not be downloaded."""


class WeightsNotFoundError(KmexpError):
    """Pretrained weights were requested but are not available."""


class PatchError(KmexpError):
    """A task patch is corrupted or was made for another base model."""


class ExistingRunError(KmexpError):
    """The run directory already holds a checkpoint and resume was not requested."""


class NonFiniteLossError(KmexpError):
    """The training loss became NaN or infinite."""
