"""Where datasets are read from and where decoded caches and extracted archives go."""

from __future__ import annotations

import os
from pathlib import Path

_DEFAULT_DATA = Path("~/.cache/trainlab/data")
_DEFAULT_CACHE = Path("~/.cache/trainlab/cache")


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """Return the data folder: ``data_dir``, else ``$TRAINLAB_DATA``, else ``~/.cache/trainlab/data``.

    The folder is not created (it may be read-only or not exist yet); readers report what is
    missing and ``fetch_dataset`` creates it when it downloads.
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser().resolve()
    env = os.environ.get("TRAINLAB_DATA", "").strip()
    if env:
        return Path(env).expanduser().resolve()
    return _DEFAULT_DATA.expanduser().resolve()


def cache_root() -> Path:
    """Return the cache folder (``$TRAINLAB_CACHE``, default ``~/.cache/trainlab/cache``), created on demand."""
    env = os.environ.get("TRAINLAB_CACHE", "").strip()
    root = Path(env).expanduser() if env else _DEFAULT_CACHE.expanduser()
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def is_writable_dir(folder: Path) -> bool:
    """True when files can be created in ``folder`` (or in its nearest existing parent)."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


__all__ = ["cache_root", "is_writable_dir", "resolve_data_dir"]
