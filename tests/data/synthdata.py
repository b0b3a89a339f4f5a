"""Tiny synthetic datasets (CIFAR-like pickles, IDX files, image folders) for fast tests."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer",
               b"dog", b"frog", b"horse", b"ship", b"truck"]  # fmt: skip


def write_cifar(folder: Path, per_batch: int = 20, seed: int = 0) -> Path:
    """A CIFAR-like ``cifar-10-batches-py`` with ``per_batch`` rows per batch (protocol 2)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in np.arange(per_batch) % 10],
            b"data": rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(per_batch)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": CIFAR_NAMES, b"num_cases_per_batch": per_batch, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def idx_bytes(array: np.ndarray) -> bytes:
    """Serialise a uint8 array as IDX (magic 0x0000080<ndim>, big-endian dims, data)."""
    header = (0x800 + array.ndim).to_bytes(4, "big")
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(folder: Path, n_train: int = 30, n_test: int = 10, gz: bool = True) -> Path:
    """A tiny MNIST-like folder of IDX files (gzipped by default)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        files = {
            f"{prefix}-images-idx3-ubyte": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
            f"{prefix}-labels-idx1-ubyte": (np.arange(n) % 10).astype(np.uint8),
        }
        for name, arr in files.items():
            data = idx_bytes(arr)
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
    return folder


def write_image_folder(
    root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 6,
    size: tuple[int, int] = (16, 16), test: str | None = "flat", n_test: int = 5,
) -> Path:  # fmt: skip
    """``root/train/<class>/*.png`` (+ ``test/``: "flat" unlabelled, "labelled", or None)."""
    rng = np.random.default_rng(0)

    def save(path: Path, mode: str = "RGB") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(arr).convert(mode).save(path)

    for c in classes:
        for i in range(per_class):
            save(root / "train" / c / f"{i}.{c}.png", "L" if i == 0 else "RGB")
    if test == "flat":
        for i in range(1, n_test + 1):
            save(root / "test" / f"{i}.png")
    elif test == "labelled":
        for c in classes:
            for i in range(2):
                save(root / "test" / c / f"t{i}.png")
    return root
