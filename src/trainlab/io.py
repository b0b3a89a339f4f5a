"""Atomic file writes: write to a temporary file beside the target, fsync, rename.

A process killed at any moment leaves either the old file or the new one, never a torn
one, because ``os.replace`` is atomic on POSIX file systems when both paths share a folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from trainlab.errors import FileAccessError, RunDirError

TEMP_SUFFIX = ".tmp"
# What tempfile.mkstemp(prefix=".<target>.", suffix=TEMP_SUFFIX) names: 8 random characters.
_TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX))


def _read_umask() -> int:
    """The process umask, read without changing it (Linux), else set and restored at once."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once, at import: setting and restoring it later could race with another thread's files.
_UMASK = _read_umask()


def is_temp_file_name(name: str) -> bool:
    """Whether ``name`` is the temporary file of an atomic write (an orphan once its writer died)."""
    return _TEMP_NAME.fullmatch(name) is not None


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces ``path`` only when the block succeeds.

    Args:
        path: the final file path; its folder must exist.
        mode: ``"w"`` for text or ``"wb"`` for bytes. Default ``"w"``.
        encoding: text encoding, ignored for bytes. Default ``"utf-8"``.

    Raises:
        FileAccessError: the file cannot be written (no such folder, permission denied, disk
            full, read-only file system); it names ``path``, not the temporary file, and the
            temporary file is gone.
    """
    target = Path(path)
    binary = "b" in mode
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent)
    except OSError as exc:
        raise FileAccessError.from_os_error(exc, "write", target) from exc
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as handle:
            yield handle
            handle.flush()
            os.fchmod(handle.fileno(), 0o666 & ~_UMASK)  # mkstemp's 0600 -> what open() would give
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):  # a failed clean-up must not hide why the write failed
            os.unlink(tmp_name)
        failure = _write_failure(exc, tmp_name)
        if failure is not None:
            raise FileAccessError.from_os_error(failure, "write", target) from exc
        raise
    _fsync_dir(target.parent)


def _write_failure(exc: BaseException, tmp_name: str) -> OSError | None:
    """The OSError of a failed write or rename behind ``exc``, if that is why it was raised.

    Such an error names the temporary file or nothing, while the user knows only the target;
    an OSError about another path (something the block read) is not about this write. Some
    writers hide the OSError behind their own error (torch.save raises a RuntimeError), so
    the chain of causes is searched too.
    """
    seen: BaseException | None = exc if isinstance(exc, Exception) else None  # never an interrupt
    while seen is not None:
        if isinstance(seen, FileAccessError):
            return None
        if isinstance(seen, OSError) and seen.filename in (None, tmp_name):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort: some file systems refuse it)."""
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w") as handle:
        handle.write(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_json(path: str | Path, obj: Any, indent: int = 2) -> None:
    """Write ``obj`` as JSON (sorted keys, trailing newline) to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=True, default=_json_default) + "\n")


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    """Save one array as ``.npy`` atomically (the result can be opened with ``mmap_mode``)."""
    with atomic_open(path, "wb") as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)


def atomic_save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Save several arrays as one uncompressed ``.npz`` atomically."""
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **arrays)


def atomic_write_with(path: str | Path, writer: Callable[[IO[bytes]], None]) -> None:
    """Let ``writer`` fill a binary handle; the result replaces ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        writer(handle)


def _json_default(value: Any) -> Any:
    """Turn NumPy scalars/arrays and paths into JSON values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def require_checkpoint(checkpoint: Path) -> Path:
    """``checkpoint`` if the file exists; else RunDirError: the run has no trained model to load."""
    if not checkpoint.exists():
        raise RunDirError(f"{checkpoint.parent}: no {checkpoint.name}, so there is no trained model to load "
                          "(was the run trained with output.save_checkpoint: false, or is it still starting?)")
    return checkpoint


__all__ = [
    "TEMP_SUFFIX",
    "atomic_open",
    "atomic_save_npy",
    "atomic_save_npz",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "atomic_write_with",
    "is_temp_file_name",
    "require_checkpoint",
]
