"""``dataset_info``: a JSON-serialisable summary of a dataset (counts, shape, statistics)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .loader import load_dataset
from .normalize import channel_stats


def _per_class(labels: np.ndarray | None, class_names: list[str]) -> dict[str, int] | None:
    if labels is None:
        return None
    counts = np.bincount(np.asarray(labels), minlength=len(class_names))
    return {name: int(counts[i]) for i, name in enumerate(class_names)}


def dataset_info(name_or_path: str, data_dir: str | Path | None = None) -> dict[str, Any]:
    """Summarise a dataset: counts per split and class, image shape and dtype, train
    per-channel mean/std (fractions of 255), the source read and the cache folder used."""
    raw = load_dataset(name_or_path, data_dir)
    mean, std = channel_stats(raw.x_train)
    n_test = 0 if raw.x_test is None else len(raw.x_test)
    return {
        "name": raw.name,
        "source": str(raw.source),
        "cache": str(raw.cache_dir) if raw.cache_dir else None,
        "fingerprint": raw.fingerprint,
        "counts": {"train": len(raw.y_train), "test": n_test},
        "per_class": {
            "train": _per_class(raw.y_train, raw.class_names),
            "test": _per_class(raw.y_test, raw.class_names),
        },
        "test_labelled": raw.y_test is not None if n_test else None,
        "class_names": list(raw.class_names),
        "num_classes": len(raw.class_names),
        "image_shape": list(raw.x_train.shape[1:]),  # (H, W, C)
        "dtype": str(raw.x_train.dtype),
        "train_mean": [round(float(v) / 255.0, 6) for v in mean],
        "train_std": [round(float(v) / 255.0, 6) for v in std],
        "skipped_corrupt": raw.skipped_corrupt,
    }


__all__ = ["dataset_info"]
