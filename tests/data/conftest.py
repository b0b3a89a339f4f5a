"""Fixtures for the datasets tests: the real datasets loaded once, a fresh cache per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainlab.data import RawDataset, load_dataset


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache for one test (overrides the session cache)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("TRAINLAB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def cifar(real_data: Path) -> RawDataset:
    return load_dataset("cifar10", real_data)


@pytest.fixture(scope="session")
def mnist(real_data: Path) -> RawDataset:
    return load_dataset("mnist", real_data)


@pytest.fixture(scope="session")
def cats(real_data: Path) -> RawDataset:
    return load_dataset("cats-vs-dogs", real_data)
