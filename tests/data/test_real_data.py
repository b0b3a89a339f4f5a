"""The real datasets (via $TRAINLAB_DATA): counts, statistics, checksums, cache speed."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
from synthdata import idx_bytes

from trainlab.data import (
    PreparedData,
    RawDataset,
    dataset_info,
    list_datasets,
    load_dataset,
    prepare_data,
)
from trainlab.data.idx import read_bytes
from trainlab.data.prepare import split_indices


def test_cifar10_counts(cifar: RawDataset) -> None:
    assert cifar.x_train.shape == (50_000, 32, 32, 3) and cifar.x_train.dtype == np.uint8
    assert cifar.x_test is not None and cifar.x_test.shape == (10_000, 32, 32, 3)
    assert cifar.y_train.dtype == np.int64
    assert np.bincount(cifar.y_train).tolist() == [5000] * 10
    assert cifar.y_test is not None and np.bincount(cifar.y_test).tolist() == [1000] * 10
    assert cifar.class_names[0] == "airplane" and cifar.class_names[-1] == "truck"
    assert cifar.test_ids is None and cifar.skipped_corrupt == 0
    assert len(cifar.fingerprint) == 16


def test_cifar10_alias_and_stats(real_data: Path, cifar: RawDataset) -> None:
    info = dataset_info("cifar-10", real_data)
    json.dumps(info)  # JSON-serialisable
    assert info["counts"] == {"train": 50_000, "test": 10_000}
    assert info["per_class"]["train"]["frog"] == 5000
    assert np.round(info["train_mean"], 4).tolist() == [0.4914, 0.4822, 0.4465]
    assert np.round(info["train_std"], 4).tolist() == [0.2470, 0.2435, 0.2616]
    assert info["fingerprint"] == cifar.fingerprint


def test_cifar10_second_load_fast_and_equal(real_data: Path, cifar: RawDataset) -> None:
    start = time.perf_counter()
    again = load_dataset("cifar10", real_data)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"cached load took {elapsed:.2f}s"
    assert np.array_equal(again.x_train, cifar.x_train)
    assert np.array_equal(again.y_test, cifar.y_test)
    assert again.fingerprint == cifar.fingerprint
    # memory-mapped, but a plain ndarray to callers
    assert type(again.x_train) is np.ndarray
    assert float(again.x_train[:10].mean()) == float(np.asarray(cifar.x_train[:10]).mean())


def test_mnist_counts_and_decompressed_md5(real_data: Path, mnist: RawDataset) -> None:
    assert mnist.x_train.shape == (60_000, 28, 28, 1) and mnist.x_test.shape == (10_000, 28, 28, 1)
    assert mnist.y_test is not None and len(mnist.y_test) == 10_000
    expected = {
        "train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
    }
    for name, md5 in expected.items():
        assert hashlib.md5(read_bytes(real_data / "mnist" / name)).hexdigest() == md5
    # The decoded arrays re-serialise to the exact same bytes: decoding is lossless.
    rebuilt = {
        "train-images-idx3-ubyte.gz": idx_bytes(mnist.x_train[..., 0]),
        "train-labels-idx1-ubyte.gz": idx_bytes(mnist.y_train.astype(np.uint8)),
        "t10k-images-idx3-ubyte.gz": idx_bytes(mnist.x_test[..., 0]),
        "t10k-labels-idx1-ubyte.gz": idx_bytes(mnist.y_test.astype(np.uint8)),
    }
    for name, data in rebuilt.items():
        assert hashlib.md5(data).hexdigest() == expected[name]


def test_cats_vs_dogs(cats: RawDataset) -> None:
    assert cats.class_names == ["cat", "dog"]
    assert np.bincount(cats.y_train).tolist() == [9_999, 9_999]
    assert cats.x_train.shape == (19_998, 64, 64, 3) and cats.x_train.dtype == np.uint8
    assert cats.x_test is not None and cats.x_test.shape == (4_999, 64, 64, 3)
    assert cats.y_test is None
    assert cats.test_ids is not None and len(cats.test_ids) == 4_999
    assert cats.test_ids[:3] == ["1", "2", "3"] and cats.test_ids[-1] == "4999"
    assert cats.source.name == "cats-vs-dogs.tar.gz"


def test_cats_vs_dogs_extracted_into_cache_not_data(session_cache: Path, cats: RawDataset) -> None:
    extracted = list((session_cache / "extracted").iterdir())
    assert any((p / "train" / "cat").is_dir() for p in extracted)
    assert not (cats.source.parent / "train").exists()


def test_list_datasets() -> None:
    rows = {row["name"]: row for row in list_datasets()}
    assert set(rows) == {"cifar10", "mnist", "fashion-mnist", "cats-vs-dogs"}
    assert rows["cifar10"]["urls"] == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert rows["fashion-mnist"]["urls"][0].startswith("http://fashion-mnist.s3-website")
    assert rows["mnist"]["image_shape"] == [28, 28, 1] and rows["mnist"]["train_count"] == 60_000
    assert rows["cats-vs-dogs"]["urls"] == []
    json.dumps(rows)


# 2,000 / 500 / 300 rows: the statistics tests stay fast on the real data
SPLIT = {"val_fraction": 0.1, "limit": {"train": 2000, "val": 500, "test": 300}}


def _prepare_cifar(real_data: Path, cifar: RawDataset,
                   kind: str) -> tuple[PreparedData, list[np.ndarray]]:  # fmt: skip
    """``prepare_data`` with ``kind``, checked for shapes and labels; with the uint8 (N, H, W, C) rows
    of its train, val and test splits, taken from the dataset by their indices (no normaliser)."""
    data = prepare_data("cifar10", data_dir=real_data, normalize=kind, scale=100.0, **SPLIT)
    assert data.x_train.shape == (2000, 3, 32, 32) and data.x_train.dtype == np.float32
    assert data.x_val.shape == (500, 3, 32, 32) and data.x_test.shape == (300, 3, 32, 32)
    assert data.input_shape == (3, 32, 32) and data.num_classes == 10
    assert np.bincount(data.y_train).tolist() == [200] * 10
    json.dumps(data.normalizer)
    train_idx, val_idx, test_idx = split_indices(cifar, **SPLIT)
    assert data.y_train.tolist() == cifar.y_train[train_idx].tolist()
    assert data.y_val.tolist() == cifar.y_train[val_idx].tolist()
    return data, [cifar.x_train[train_idx], cifar.x_train[val_idx], cifar.x_test[test_idx]]


@pytest.mark.parametrize("kind", ["channel", "pixel"])
def test_prepare_cifar_stats_from_train_only(real_data: Path, cifar: RawDataset, kind: str) -> None:
    data, (train, val, test) = _prepare_cifar(real_data, cifar, kind)
    train64 = train.astype(np.float64)
    both = np.concatenate([train, val]).astype(np.float64)  # what a leak of val would give
    mean = np.asarray(data.normalizer["mean"])
    if kind == "channel":
        np.testing.assert_allclose(mean, train64.mean(axis=(0, 1, 2)), rtol=1e-12)
        np.testing.assert_allclose(data.normalizer["std"], train64.std(axis=(0, 1, 2)), rtol=1e-12)
        assert not np.allclose(mean, both.mean(axis=(0, 1, 2)), rtol=1e-6)
        # exactly zero mean / unit std on the training split; the val split is only close
        assert np.allclose(data.x_train.mean(axis=(0, 2, 3)), 0, atol=1e-4)
        assert np.allclose(data.x_train.std(axis=(0, 2, 3)), 1, atol=1e-4)
        assert not np.allclose(data.x_val.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    else:
        np.testing.assert_allclose(mean, train64.mean(axis=0).transpose(2, 0, 1), rtol=1e-12)  # (C, H, W)
        assert not np.allclose(mean, both.mean(axis=0).transpose(2, 0, 1), rtol=1e-6)
        assert np.abs(data.x_train.mean(axis=0)).max() < 1e-3
        # every split less the training mean image, in float32 as apply_normalizer computes it
        for x, rows in ((data.x_train, train), (data.x_val, val), (data.x_test, test)):
            assert np.array_equal(x, rows.transpose(0, 3, 1, 2).astype(np.float32) - mean.astype(np.float32))


@pytest.mark.parametrize("kind", ["scale", "none"])
def test_prepare_cifar_without_statistics(real_data: Path, cifar: RawDataset, kind: str) -> None:
    """No statistics to take: every split is its pixels times 100 / 255 (scale) or as they are."""
    data, rows = _prepare_cifar(real_data, cifar, kind)
    factor = np.float32(100.0 / 255.0) if kind == "scale" else np.float32(1.0)
    for x, pixels in zip((data.x_train, data.x_val, data.x_test), rows, strict=True):
        assert np.array_equal(x, pixels.transpose(0, 3, 1, 2).astype(np.float32) * factor)
    assert data.normalizer == ({"kind": "scale", "scale": 100.0} if kind == "scale" else {"kind": "none"})
    assert data.x_train.max() == pytest.approx(100.0 if kind == "scale" else 255.0)
