"""The one small exception hierarchy of trainlab.

Every error a user can act on is a :class:`TrainlabError`. The CLI prints its message
(no traceback) and exits with its ``exit_code``.
"""

from __future__ import annotations


class TrainlabError(Exception):
    """Root of every error trainlab raises on purpose. Exit code 1."""

    exit_code: int = 1


class ConfigError(TrainlabError):
    """A config file or override is invalid: names the file, the field path, the value."""

    exit_code = 2


class DataError(TrainlabError):
    """A dataset is missing, corrupt or unusable."""

    exit_code = 3


class DatasetNotFoundError(DataError):
    """The dataset files are not where trainlab looked; the message says where to put them."""


class CorruptDataError(DataError):
    """A dataset file is truncated, malformed, or holds something it should not."""


class UnsafeDataError(CorruptDataError):
    """A file tried something dangerous (a pickle global, an archive member escaping its folder)."""


class DownloadError(DataError):
    """A download failed or its checksum did not match."""


class RunDirError(TrainlabError):
    """A run directory cannot be created, written, resumed or opened."""

    exit_code = 4


class TrainingError(TrainlabError):
    """Training stopped abnormally (for example a NaN loss)."""

    exit_code = 5


__all__ = [
    "ConfigError",
    "CorruptDataError",
    "DataError",
    "DatasetNotFoundError",
    "DownloadError",
    "RunDirError",
    "TrainingError",
    "TrainlabError",
    "UnsafeDataError",
]
