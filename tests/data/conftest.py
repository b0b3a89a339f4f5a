"""Fixtures for the datasets tests: the real data folder, a session cache, tiny synthetic data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from trainlab.data import RawDataset, load_dataset


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One cache for the whole session (CIFAR is decoded once), never the user's own cache."""
    cache = tmp_path_factory.mktemp("trainlab-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRAINLAB_CACHE", str(cache))
        yield cache


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache for one test (overrides the session cache)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("TRAINLAB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real datasets folder, from $TRAINLAB_DATA (the Makefile sets it)."""
    env = os.environ.get("TRAINLAB_DATA", "")
    if not env or not Path(env).is_dir():
        pytest.skip(
            "real datasets not available: set TRAINLAB_DATA to the datasets folder "
            "(e.g. TRAINLAB_DATA=/work/shared/datasets; `make test` sets it)"
        )
    return Path(env)


@pytest.fixture(scope="session")
def cifar(real_data: Path) -> RawDataset:
    return load_dataset("cifar10", real_data)


@pytest.fixture(scope="session")
def mnist(real_data: Path) -> RawDataset:
    return load_dataset("mnist", real_data)


@pytest.fixture(scope="session")
def cats(real_data: Path) -> RawDataset:
    return load_dataset("cats-vs-dogs", real_data)
