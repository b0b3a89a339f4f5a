"""Cache of decoded datasets: uint8 ``.npy`` arrays plus a manifest, keyed by source identity.

A cache entry is a folder of ``.npy`` files and a ``manifest.json`` written last. Each file is
written atomically, so a reader that finds a manifest whose listed files all exist with the
listed sizes has a complete entry, even while another process is writing the same entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_save_npy, atomic_write_json
from .locations import cache_root

CACHE_VERSION = 2  # bump when the decoded layout or its meta changes, so old entries are ignored
ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")
MANIFEST = "manifest.json"


def source_identity(files: Iterable[Path]) -> list[list[Any]]:
    """(path, size, mtime_ns) of each source file: cheap to compute, changes when a file does."""
    out: list[list[Any]] = []
    for path in sorted(Path(p) for p in files):
        st = path.stat()
        out.append([str(path.resolve()), st.st_size, st.st_mtime_ns])
    return out


def content_digest(decoded: Mapping[str, Any]) -> str:
    """sha256 of the decoded arrays (dtype, shape and bytes) with the class names and test ids.

    It changes exactly when a pixel, a label, a class or the split does, not when files are
    copied or touched. About 0.2 s for CIFAR-10; computed once, when the source is decoded.
    """
    hasher = hashlib.sha256()
    for key in ARRAY_KEYS:
        array = decoded.get(key)
        if array is None:
            hasher.update(f"{key}:none;".encode())
            continue
        array = np.ascontiguousarray(array)
        hasher.update(f"{key}:{array.dtype.str}:{array.shape};".encode())
        hasher.update(memoryview(array).cast("B"))
    extra = {"class_names": list(decoded.get("class_names", [])), "test_ids": decoded.get("test_ids")}
    hasher.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return hasher.hexdigest()


def walk_files(folder: Path) -> list[Path]:
    """Every regular file under ``folder`` (hidden files skipped), via fast ``os.scandir``."""
    found: list[Path] = []
    stack = [folder]
    while stack:
        current = stack.pop()
        with os.scandir(current) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file():
                    found.append(Path(entry.path))
    return found


def digest(*parts: Any) -> str:
    """Short sha256 of a JSON rendering of ``parts``."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def entry_dir(name: str, key: str) -> Path:
    """The cache folder of one decoded dataset variant."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60] or "dataset"
    return cache_root() / "datasets" / f"{safe}-{key}"


def load_entry(folder: Path) -> tuple[dict[str, np.ndarray | None], dict[str, Any]] | None:
    """Return (arrays memory-mapped read-only, meta) of a complete entry, else None."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("version") != CACHE_VERSION or not manifest.get("complete"):
        return None
    arrays: dict[str, np.ndarray | None] = {}
    try:
        for key in ARRAY_KEYS:
            size = manifest["files"].get(key)
            if size is None:
                arrays[key] = None
                continue
            path = folder / f"{key}.npy"
            if path.stat().st_size != size:
                return None
            # np.asarray drops the memmap subclass: callers get a plain (read-only) ndarray
            # whose slices and reductions behave as usual while pages load lazily.
            arrays[key] = np.asarray(np.load(path, mmap_mode="r", allow_pickle=False))
    except (OSError, ValueError, KeyError):
        return None
    return arrays, manifest["meta"]


def store_entry(folder: Path, arrays: dict[str, np.ndarray | None], meta: dict[str, Any]) -> bool:
    """Write an entry (arrays first, manifest last); return False if the cache is unwritable."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        sizes: dict[str, int | None] = {}
        for key in ARRAY_KEYS:
            arr = arrays.get(key)
            if arr is None:
                sizes[key] = None
                continue
            path = folder / f"{key}.npy"
            atomic_save_npy(path, arr)
            sizes[key] = path.stat().st_size
        atomic_write_json(
            folder / MANIFEST,
            {"version": CACHE_VERSION, "complete": True, "files": sizes, "meta": meta},
        )
    except OSError:
        return False
    return True


__all__ = ["content_digest", "digest", "entry_dir", "load_entry", "source_identity", "store_entry", "walk_files"]
