"""The one small exception hierarchy of trainlab.

Every error a user can act on is a :class:`TrainlabError`. The CLI prints its message
(no traceback) and exits with its ``exit_code``:

- 1 :class:`TrainlabError` (any other)
- 2 :class:`ConfigError`
- 3 :class:`DataError` and its subclasses
- 4 :class:`RunDirError`
- 5 :class:`TrainingError`
- 6 :class:`FileAccessError`: a file or folder cannot be read or written (the CLI turns
  every ``OSError`` that reaches it into one)
"""

from __future__ import annotations

import errno as errno_codes
import os


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


#: Errors that only a write can meet: there the path cannot have been read.
_WRITE_ERRNOS = frozenset({errno_codes.ENOSPC, errno_codes.EDQUOT, errno_codes.EFBIG, errno_codes.EROFS})


class FileAccessError(TrainlabError, OSError):
    """A file or folder cannot be read or written: permission denied, a read-only file system,
    a full disk, a missing folder. Exit code 6.

    The message names the path and the cause: ``cannot write runs/x/checkpoint.npz: No space
    left on device``. It is an ``OSError`` too (same ``errno``, ``strerror``, ``filename``),
    so code that tolerates a failed write, such as the data cache, still catches it.

    Args:
        code: the ``errno`` of the failure (None when unknown).
        strerror: the cause in words; default the system's text for ``code``.
        filename: the path that could not be read or written.
        action: the verb of the message: ``"write"``, ``"read"``, ``"create"``; default
            ``"write"`` for errors only writes meet (disk full, read-only), else ``"access"``.
    """

    exit_code = 6

    def __init__(self, code: int | None, strerror: str | None = None,
                 filename: str | os.PathLike[str] | None = None, action: str | None = None) -> None:
        cause = strerror or (os.strerror(code) if code else "failed")
        super().__init__(code, cause, None if filename is None else os.fspath(filename))
        self.action = action or ("write" if code in _WRITE_ERRNOS else "access")

    @classmethod
    def from_os_error(cls, error: OSError, action: str | None = None,
                      filename: str | os.PathLike[str] | None = None) -> FileAccessError:
        """The same failure as ``error``, about ``filename`` (default the error's own path)."""
        if isinstance(error, FileAccessError) and action is None and filename is None:
            return error
        path = filename if filename is not None else error.filename
        return cls(error.errno, error.strerror or str(error) or None, path,
                   action or getattr(error, "action", None))

    def __str__(self) -> str:
        where = f" {self.filename}" if self.filename is not None else ""
        return f"cannot {self.action}{where}: {self.strerror}"

    def __reduce__(self) -> tuple[object, ...]:  # keeps the action across pickling (worker processes)
        return (type(self), (self.errno, self.strerror, self.filename, self.action))


def user_error(exc: TrainlabError | OSError) -> TrainlabError:
    """The error to show a user for ``exc``: itself, or an ``OSError`` as a :class:`FileAccessError`.

    Of failed writes raised while handling one another, the first is shown: a run whose
    checkpoint write fails on a full disk fails to write its summary too, and the checkpoint is
    the news. (Only failed writes: an OSError that was handled on purpose, such as a missing
    cache file, is not why the command failed.)
    """
    if not isinstance(exc, OSError):
        return exc
    shown: OSError = exc
    seen = exc.__context__
    while isinstance(seen, OSError):
        if isinstance(seen, FileAccessError) and seen.action == "write":
            shown = seen
        seen = seen.__context__
    return FileAccessError.from_os_error(shown)


__all__ = [
    "ConfigError",
    "CorruptDataError",
    "DataError",
    "DatasetNotFoundError",
    "DownloadError",
    "FileAccessError",
    "RunDirError",
    "TrainingError",
    "TrainlabError",
    "UnsafeDataError",
    "user_error",
]
