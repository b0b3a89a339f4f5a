"""Fixtures shared by every test: the real data folder and a session-wide cache."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One cache for the whole session (CIFAR is decoded once), never the user's own cache."""
    cache = tmp_path_factory.mktemp("trainlab-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRAINLAB_CACHE", str(cache))
        yield cache


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"  # the checkout's neighbour


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real datasets folder: $TRAINLAB_DATA (the Makefile sets it), else ../shared/datasets
    beside the checkout, which then becomes $TRAINLAB_DATA for the runs the tests start (a bare
    ``pytest`` runs the real-data tests too)."""
    env = os.environ.get("TRAINLAB_DATA", "")
    if not env and SHARED_DATA.is_dir():
        os.environ["TRAINLAB_DATA"] = env = str(SHARED_DATA)
    if not env or not Path(env).is_dir():
        pytest.skip(
            "real datasets not available: set TRAINLAB_DATA to the datasets folder "
            "(e.g. TRAINLAB_DATA=../shared/datasets; `make test` sets it)"
        )
    return Path(env)


@contextlib.contextmanager
def _torch_threads_of_one() -> Iterator[None]:
    """One torch thread: the machine is shared (the torch engine reads TRAINLAB_NUM_THREADS)."""
    import torch

    before = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRAINLAB_NUM_THREADS", "1")
        yield
    torch.set_num_threads(before)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a test."""
    with _torch_threads_of_one():
        yield


@pytest.fixture(scope="module")
def one_torch_thread_per_module() -> Iterator[None]:
    """One torch thread for a whole module (its module-scoped fixtures train with it)."""
    with _torch_threads_of_one():
        yield
