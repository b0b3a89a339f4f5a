"""Stratified splits and subsets, and prepare_data's options (on tiny synthetic data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from synthdata import write_idx, write_image_folder

from trainlab.data import prepare_data, stratified_split, stratified_subset
from trainlab.data.splits import tail_split
from trainlab.errors import ConfigError


def _labels() -> np.ndarray:
    # unequal classes: 7, 13, 50, 1 rows
    return np.repeat(np.arange(4), [7, 13, 50, 1])


def test_split_exact_stratification() -> None:
    y = np.repeat(np.arange(10), 500)
    train, val = stratified_split(y, val_fraction=0.1, seed=3)
    assert len(val) == 500 and len(train) == 4500
    assert np.bincount(y[val]).tolist() == [50] * 10
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(y)))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)


def test_split_rounding_totals_exact() -> None:
    y = _labels()
    for size in range(0, len(y)):
        train, val = stratified_split(y, val_size=size, seed=0)
        assert len(val) == size and len(train) == len(y) - size
        counts = np.bincount(y[val], minlength=4)
        quota = np.bincount(y) * size / len(y)
        assert np.all(np.abs(counts - quota) < 1)  # each class within one row of its quota
    _, val = stratified_split(y, val_fraction=0.3)
    assert len(val) == round(0.3 * len(y))


def test_split_seeded() -> None:
    y = np.repeat(np.arange(5), 40)
    a = stratified_split(y, val_fraction=0.25, seed=1)
    b = stratified_split(y, val_fraction=0.25, seed=1)
    c = stratified_split(y, val_fraction=0.25, seed=2)
    assert np.array_equal(a[1], b[1]) and not np.array_equal(a[1], c[1])


def test_split_bad_arguments() -> None:
    y = np.arange(10) % 2
    with pytest.raises(ConfigError, match="val_fraction"):
        stratified_split(y, val_fraction=1.0)
    with pytest.raises(ConfigError, match="val_size"):
        stratified_split(y, val_size=10)


def test_subset_balanced_and_seeded() -> None:
    y = np.repeat(np.arange(3), [100, 200, 300])
    idx = stratified_subset(y, 60, seed=0)
    assert np.bincount(y[idx]).tolist() == [10, 20, 30] and np.all(np.diff(idx) > 0)
    assert np.array_equal(idx, stratified_subset(y, 60, seed=0))
    assert not np.array_equal(idx, stratified_subset(y, 60, seed=1))
    assert len(stratified_subset(y, 10_000)) == 600


@pytest.fixture
def pets(tmp_path: Path, fresh_cache: Path) -> Path:
    return write_image_folder(tmp_path / "pets", classes=("a", "b", "c"), per_class=20, n_test=9)


def test_prepare_split_and_limits(pets: Path) -> None:
    data = prepare_data(str(pets), val_size=6, limit={"train": 30, "test": 4}, seed=5)
    assert data.x_train.shape == (30, 3, 16, 16) and np.bincount(data.y_train).tolist() == [10] * 3
    assert data.x_val.shape == (6, 3, 16, 16) and np.bincount(data.y_val).tolist() == [2] * 3
    assert data.x_test.shape == (4, 3, 16, 16) and data.y_test is None and len(data.test_ids) == 4
    assert data.input_shape == (3, 16, 16) and data.num_classes == 3
    again = prepare_data(str(pets), val_size=6, limit={"train": 30, "test": 4}, seed=5)
    assert np.array_equal(again.x_val, data.x_val) and again.test_ids == data.test_ids


def test_prepare_int_limit_caps_train_only(pets: Path) -> None:
    data = prepare_data(str(pets), val_fraction=0.2, limit=9)
    assert len(data.y_train) == 9 and len(data.y_val) == 12 and len(data.test_ids) == 9


def test_prepare_no_val(pets: Path) -> None:
    data = prepare_data(str(pets), val_fraction=0.0, normalize="none", dtype=np.float64)
    assert data.x_val.shape == (0, 3, 16, 16) and data.y_val.shape == (0,)
    assert data.x_train.dtype == np.float64 and len(data.y_train) == 60


def test_prepare_stats_from_training_split_only(pets: Path) -> None:
    data = prepare_data(str(pets), val_fraction=0.25, normalize="channel", seed=0)
    raw = prepare_data(str(pets), val_fraction=0.25, normalize="none", seed=0)
    mean = raw.x_train.astype(np.float64).mean(axis=(0, 2, 3))
    std = raw.x_train.astype(np.float64).std(axis=(0, 2, 3))
    assert np.allclose(data.normalizer["mean"], mean) and np.allclose(data.normalizer["std"], std)
    # the statistics do not move when only the val or test content changes
    both = np.concatenate([raw.x_train, raw.x_val]).astype(np.float64).mean(axis=(0, 2, 3))
    assert not np.allclose(data.normalizer["mean"], both)
    pixel = prepare_data(str(pets), val_fraction=0.25, normalize="pixel", seed=0)
    assert np.allclose(pixel.normalizer["mean"], raw.x_train.astype(np.float64).mean(axis=0))


def test_tail_split_holds_out_the_last_rows_in_order() -> None:
    train, val = tail_split(10, val_size=3)
    assert train.tolist() == list(range(7)) and val.tolist() == [7, 8, 9]
    train, val = tail_split(10, val_fraction=0.2)
    assert train.tolist() == list(range(8)) and val.tolist() == [8, 9]
    assert len(tail_split(10)[1]) == 0
    with pytest.raises(ConfigError, match="val_size"):
        tail_split(10, val_size=10)
    with pytest.raises(ConfigError, match="val_fraction"):
        tail_split(10, val_fraction=1.0)


def test_prepare_tail_split_takes_the_stored_last_rows_whatever_the_seed(pets: Path) -> None:
    everything = prepare_data(str(pets), val_fraction=0.0, normalize="none")
    for seed in (0, 7):
        data = prepare_data(str(pets), val_size=6, val_split="tail", normalize="none", seed=seed)
        assert np.array_equal(data.x_val, everything.x_train[-6:])
        assert np.array_equal(data.y_val, everything.y_train[-6:])
        assert np.array_equal(data.x_train, everything.x_train[:-6])
    with pytest.raises(ConfigError, match="val_split"):
        prepare_data(str(pets), val_split="random")


def test_prepare_stats_from_train_and_val_rows(pets: Path) -> None:
    everything = prepare_data(str(pets), val_fraction=0.0, normalize="none", dtype=np.float64)
    both = prepare_data(str(pets), val_fraction=0.25, normalize="pixel", stats_from="train+val", seed=0)
    assert np.allclose(both.normalizer["mean"], everything.x_train.mean(axis=0))
    train_only = prepare_data(str(pets), val_fraction=0.25, normalize="pixel", seed=0)
    assert not np.allclose(train_only.normalizer["mean"], both.normalizer["mean"])
    with pytest.raises(ConfigError, match="stats_from"):
        prepare_data(str(pets), stats_from="test")


def test_prepare_idx_grayscale_channel(tmp_path: Path, fresh_cache: Path) -> None:
    data = prepare_data(str(write_idx(tmp_path / "mnist")), val_fraction=0.0, normalize="scale")
    # uniform random bytes scaled by 1/255: both ends are hit, and the mean is near 127.5 / 255
    assert data.input_shape == (1, 28, 28) and data.x_train.min() == 0 and data.x_train.max() == 1
    assert abs(float(data.x_train.mean()) - 0.5) < 0.01


def test_prepare_bad_options(pets: Path) -> None:
    with pytest.raises(ConfigError, match="normalize"):
        prepare_data(str(pets), normalize="zscore")
    with pytest.raises(ConfigError, match="unknown key"):
        prepare_data(str(pets), limit={"training": 3})
