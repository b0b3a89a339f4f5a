"""``prepare_data``: a loaded dataset split, subset and normalised, ready for training."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config.data import DEFAULT_MAX_IMAGE_PIXELS
from ..errors import ConfigError
from .loader import RawDataset, load_dataset
from .normalize import apply_normalizer, fit_normalizer
from .splits import random_subset, stratified_split, stratified_subset, tail_split

_LIMIT_KEYS = ("train", "val", "test")
#: How the validation rows are chosen from the training set.
VAL_SPLITS = ("stratified", "tail")
#: Which rows the normalisation statistics are taken from.
STATS_FROM = ("train", "train+val")


@dataclass
class PreparedData:
    """Float arrays (N, C, H, W) and int64 labels for train, val and test."""

    x_train: np.ndarray  # (N, C, H, W)
    y_train: np.ndarray  # (N,)
    x_val: np.ndarray  # (V, C, H, W); 0 rows when there is no validation split
    y_val: np.ndarray  # (V,)
    x_test: np.ndarray | None  # (M, C, H, W)
    y_test: np.ndarray | None  # (M,), None when the test set is unlabelled
    test_ids: list[str] | None
    class_names: list[str]
    input_shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int
    normalizer: dict[str, Any]
    fingerprint: str
    source: Path


def _limits(limit: int | dict[str, int | None] | None) -> dict[str, int | None]:
    """An int caps train only; a dict caps each split it names."""
    if limit is None:
        return {}
    if isinstance(limit, bool) or not isinstance(limit, (int, dict)):
        raise ConfigError(f"limit={limit!r} must be an int or a dict with keys train/val/test")
    if isinstance(limit, int):
        limit = {"train": limit}
    unknown = sorted(set(limit) - set(_LIMIT_KEYS))
    if unknown:
        raise ConfigError(f"limit has unknown key(s) {unknown}; allowed: train, val, test")
    for key, value in limit.items():
        if value is not None and (not isinstance(value, int) or value < 0):
            raise ConfigError(f"limit[{key!r}]={value!r} must be a non-negative int or None")
    return dict(limit)


def split_indices(
    raw: RawDataset,
    *,
    val_fraction: float = 0.1,
    val_size: int | None = None,
    limit: int | dict[str, int | None] | None = None,
    seed: int = 0,
    val_split: str = "stratified",
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Row indices of the train and validation splits (both drawn from ``raw``'s training
    set) and of the test split (None without a test set), as :func:`prepare_data` takes them.

    The split is stratified by ``seed`` (``val_split="stratified"``), or the validation rows
    are the last ones of the training set in stored order (``"tail"``, as Keras's
    ``validation_split`` takes them); ``limit`` then takes a stratified subset of each split
    it caps (an unlabelled test set gets a seeded random subset).
    """
    if val_split not in VAL_SPLITS:
        raise ConfigError(f"val_split={val_split!r}: choose one of {', '.join(VAL_SPLITS)}")
    caps = _limits(limit)
    if val_size is None and float(val_fraction) == 0.0:
        train_idx = np.arange(len(raw.y_train), dtype=np.int64)
        val_idx = np.zeros(0, dtype=np.int64)
    elif val_split == "tail":
        train_idx, val_idx = tail_split(len(raw.y_train), val_fraction=val_fraction, val_size=val_size)
    else:
        train_idx, val_idx = stratified_split(
            raw.y_train, val_fraction=None if val_size is not None else val_fraction,
            val_size=val_size, seed=seed,
        )  # fmt: skip
    if caps.get("train") is not None:
        train_idx = train_idx[stratified_subset(raw.y_train[train_idx], caps["train"], seed)]
    if caps.get("val") is not None:
        val_idx = val_idx[stratified_subset(raw.y_train[val_idx], caps["val"], seed)]
    test_idx = None
    if raw.x_test is not None:
        n_test = len(raw.x_test)
        test_idx = np.arange(n_test, dtype=np.int64)
        if caps.get("test") is not None:
            cap = caps["test"]
            test_idx = (
                stratified_subset(raw.y_test, cap, seed)
                if raw.y_test is not None
                else random_subset(n_test, cap, seed)
            )
    return train_idx, val_idx, test_idx


def _test_rows(
    raw: RawDataset, test_idx: np.ndarray | None
) -> tuple[np.ndarray | None, np.ndarray | None, list[str] | None]:
    """The test split's uint8 images, labels (None: unlabelled) and ids at ``test_idx``."""
    x_test = y_test = None
    test_ids = raw.test_ids
    if raw.x_test is not None and test_idx is not None:
        x_test = raw.x_test if len(test_idx) == len(raw.x_test) else raw.x_test[test_idx]
        if raw.y_test is not None:
            y_test = np.asarray(raw.y_test[test_idx], dtype=np.int64)
        if test_ids is not None:
            test_ids = [test_ids[i] for i in test_idx]
    return x_test, y_test, test_ids


# Long for its 17 arguments and their Args docstring; the body is short: load, split, take the test
# rows, normalise.
def prepare_data(
    dataset: str,
    *,
    data_dir: str | Path | None = None,
    val_fraction: float = 0.1,
    val_size: int | None = None,
    limit: int | dict[str, int | None] | None = None,
    normalize: str = "channel",
    scale: float = 1.0,
    resize: int | tuple[int, int] | None = None,
    skip_corrupt: bool = False,
    seed: int = 0,
    dtype: Any = np.float32,
    center_by: str = "channel",
    val_split: str = "stratified",
    stats_from: str = "train",
    mean: list[float] | None = None,
    std: list[float] | None = None,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> PreparedData:
    """Load ``dataset``, split off a validation set, subset, and normalise.

    Args:
        dataset: a dataset name or path, as for ``load_dataset``.
        data_dir: the data folder. Default None ($TRAINLAB_DATA or ~/.cache/trainlab/data).
        val_fraction: share of the training rows held out for validation, in [0, 1).
            Default 0.1.
        val_size: exact validation size; overrides ``val_fraction``. Default None.
        limit: an int caps the training split; a dict {"train": n, "val": n, "test": n} caps
            each split it names. Subsets are stratified. Default None.
        normalize: "none" (raw 0..255 floats), "scale" (x / 255 * scale), "channel"
            (per-channel mean/std), "pixel" (per-pixel mean subtracted), "feature" (each
            position's mean/std), "center" (x / 255 * scale less its mean) or "fixed" (given
            per-channel constants); see
            :mod:`.normalize`. Statistics come from the (limited) training split, or the
            training and validation rows with ``stats_from="train+val"``; never from test.
            Default "channel".
        scale: the upper end of the range for ``normalize="scale"`` and ``"center"``.
            Default 1.0.
        resize: passed to ``load_dataset``. Default None.
        skip_corrupt: passed to ``load_dataset``. Default False.
        seed: seeds the split and the subsets. Default 0.
        dtype: the float dtype of the arrays. Default np.float32.
        center_by: ``normalize="center"``: subtract the mean of each "channel" or of each
            "pixel" position. Default "channel".
        val_split: "stratified" (a seeded, class-stratified hold-out) or "tail" (the last
            rows of the training set in stored order). Default "stratified".
        stats_from: "train" (the training split, after ``limit``) or "train+val" (the
            training and validation splits together, both after ``limit``: without a limit,
            the training set before the hold-out, as some published code computes its mean
            image). Default "train".
        mean, std: ``normalize="fixed"`` only: one constant per channel on the [0, 1]
            scale (ImageNet's are [0.485, 0.456, 0.406] and [0.229, 0.224, 0.225]).
            Default None.
        max_image_pixels: passed to ``load_dataset``. Default Pillow's limit, 89,478,485.
    """
    if stats_from not in STATS_FROM:
        raise ConfigError(f"stats_from={stats_from!r}: choose one of {', '.join(STATS_FROM)}")
    raw = load_dataset(dataset, data_dir, resize=resize, skip_corrupt=skip_corrupt,
                       max_image_pixels=max_image_pixels)
    train_idx, val_idx, test_idx = split_indices(
        raw, val_fraction=val_fraction, val_size=val_size, limit=limit, seed=seed, val_split=val_split
    )
    x_test, y_test, test_ids = _test_rows(raw, test_idx)
    n_train = len(raw.y_train)
    x_train_u8 = raw.x_train if len(train_idx) == n_train else raw.x_train[train_idx]
    # Statistics from the training split only, so that val and test do not leak into them,
    # unless the config asks for the published code's way (validation rows included).
    stats_rows = x_train_u8
    if stats_from == "train+val" and len(val_idx):
        stats_rows = raw.x_train[np.sort(np.concatenate([train_idx, val_idx]))]
    normalizer = fit_normalizer(stats_rows, normalize, scale, center_by, mean, std)
    _, h, w, c = raw.x_train.shape
    return PreparedData(
        x_train=apply_normalizer(x_train_u8, normalizer, dtype),
        y_train=np.asarray(raw.y_train[train_idx], dtype=np.int64),
        x_val=apply_normalizer(raw.x_train[val_idx], normalizer, dtype),
        y_val=np.asarray(raw.y_train[val_idx], dtype=np.int64),
        x_test=None if x_test is None else apply_normalizer(x_test, normalizer, dtype),
        y_test=y_test,
        test_ids=test_ids,
        class_names=list(raw.class_names),
        input_shape=(c, h, w),
        num_classes=len(raw.class_names),
        normalizer=normalizer,
        fingerprint=raw.fingerprint,
        source=raw.source,
    )


__all__ = ["STATS_FROM", "VAL_SPLITS", "PreparedData", "prepare_data", "split_indices"]
