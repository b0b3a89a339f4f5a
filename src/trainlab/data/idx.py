"""Reader for IDX files (MNIST, Fashion-MNIST), plain or gzipped."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptDataError, DatasetNotFoundError

IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension

SPLIT_PREFIX = {"train": "train", "test": "t10k"}


def read_bytes(path: Path) -> bytes:
    """Return the decompressed bytes of an IDX file (``.gz`` decompressed in memory)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CorruptDataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise CorruptDataError(
            f"{path}: truncated or corrupt gzip ({type(exc).__name__}: {exc}); "
            "delete it and download it again"
        ) from exc


def parse_idx(data: bytes, expected_magic: int, source: str) -> np.ndarray:
    """Parse IDX bytes: check the magic number and that the declared sizes match the length."""
    if len(data) < 4:
        raise CorruptDataError(f"{source}: {len(data)} bytes, too short for an IDX header")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise CorruptDataError(
            f"{source}: bad magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
            f"({'images' if expected_magic == IMAGES_MAGIC else 'labels'} file)"
        )
    ndim = expected_magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CorruptDataError(f"{source}: truncated header ({len(data)} bytes)")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        raise CorruptDataError(
            f"{source}: header declares shape {dims} ({expected} bytes) but the data has "
            f"{len(data)} bytes; the file is truncated or corrupt"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def find_idx_file(folder: Path, split: str, kind: str) -> Path:
    """Locate ``<prefix>-<kind>-idx?-ubyte[.gz]`` (also the ``.idx?-ubyte`` spelling)."""
    prefix = SPLIT_PREFIX[split]
    nd = 3 if kind == "images" else 1
    names = (f"{prefix}-{kind}-idx{nd}-ubyte", f"{prefix}-{kind}.idx{nd}-ubyte")
    for name in names:
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                return candidate
    raise DatasetNotFoundError(f"{folder}: missing {names[0]}.gz (or {names[0]})")


def idx_source_files(folder: Path) -> list[Path]:
    """The four IDX files of a folder, in a fixed order."""
    return [find_idx_file(folder, s, k) for s in ("train", "test") for k in ("images", "labels")]


def read_idx_split(folder: Path, split: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read one split; return images (N, H, W, 1) uint8 and labels (N,) int64."""
    img_path = find_idx_file(folder, split, "images")
    lbl_path = find_idx_file(folder, split, "labels")
    images = parse_idx(read_bytes(img_path), IMAGES_MAGIC, str(img_path))
    labels = parse_idx(read_bytes(lbl_path), LABELS_MAGIC, str(lbl_path))
    if images.shape[0] != labels.shape[0]:
        raise CorruptDataError(
            f"{img_path} holds {images.shape[0]} images but {lbl_path} holds "
            f"{labels.shape[0]} labels"
        )
    if labels.size and int(labels.max()) >= num_classes:
        raise CorruptDataError(
            f"{lbl_path}: label {int(labels.max())} out of range 0..{num_classes - 1}"
        )
    return images[..., None], labels.astype(np.int64)  # (N, H, W, 1)


def read_idx_folder(folder: Path, class_names: list[str]) -> dict[str, Any]:
    """Read train and test splits of an IDX dataset folder."""
    x_train, y_train = read_idx_split(folder, "train", len(class_names))
    x_test, y_test = read_idx_split(folder, "test", len(class_names))
    if x_train.shape[1:] != x_test.shape[1:]:
        raise CorruptDataError(
            f"{folder}: train images are {x_train.shape[1:3]} but test images {x_test.shape[1:3]}"
        )
    return {
        "x_train": x_train,
        "y_train": y_train,
        "x_test": x_test,
        "y_test": y_test,
        "class_names": list(class_names),
    }


__all__ = ["find_idx_file", "idx_source_files", "parse_idx", "read_bytes", "read_idx_folder"]
