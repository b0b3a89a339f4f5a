"""Fixtures of the torch engine tests: one CPU thread, and training on tiny synthetic data."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from trainlab.api import build_callbacks
from trainlab.callbacks import CallbackList, TrainState
from trainlab.config import RunConfig
from trainlab.data import PreparedData
from trainlab.engines.base import FitContext
from trainlab.engines.torch import TorchEngine
from trainlab.engines.torch.engine import TorchTraining
from trainlab.engines.torch.runtime import TrainOptions
from trainlab.runs import create_run_dir


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One thread: the test machine is shared, and more threads than free cores is far slower."""
    monkeypatch.setenv("TRAINLAB_NUM_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def synthetic_data(n: int = 96, shape: tuple[int, int, int] = (1, 6, 6), classes: int = 3,
                   seed: int = 0) -> PreparedData:
    """Separable random images: each class has its own mean pattern."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, *shape)).astype(np.float32)

    def split(m: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(m) % classes
        x = centres[y] + 0.5 * rng.normal(size=(m, *shape)).astype(np.float32)
        return x.astype(np.float32), y.astype(np.int64)

    (xt, yt), (xv, yv), (xs, ys) = split(n), split(n // 4), split(n // 4)
    return PreparedData(xt, yt, xv, yv, xs, ys, None, [str(c) for c in range(classes)], shape, classes,
                        {"kind": "none"}, "synthetic", Path("."))


def base_config(**sections: Any) -> dict[str, Any]:
    """A minimal torch run on the synthetic data (the dataset name is not read)."""
    cfg: dict[str, Any] = {
        "engine": "torch",
        "data": {"dataset": "mnist"},
        "model": {"type": "mlp", "hidden": [16]},
        "train": {"epochs": 2, "batch_size": 16},
    }
    cfg.update(sections)  # a section given replaces the default one whole
    return cfg


@pytest.fixture(name="base_config")
def base_config_fixture() -> Callable[..., dict[str, Any]]:
    """:func:`base_config` for tests (test modules cannot import this conftest by name)."""
    return base_config


@pytest.fixture(name="synthetic_data")
def synthetic_data_fixture() -> Callable[..., PreparedData]:
    """:func:`synthetic_data` for tests."""
    return synthetic_data


FitFn = Callable[..., tuple[dict[str, Any], Path]]


@pytest.fixture
def fit_synthetic(tmp_path: Path) -> FitFn:
    """``fit(config_dict, data=None, resume=False, run_id="r", options=None) -> (summary, run_path)``.

    ``options`` (a :class:`TrainOptions`) stands in for config fields that do not exist yet.
    """

    def fit(cfg: dict[str, Any], data: PreparedData | None = None, resume: bool = False,
            run_id: str = "r", options: TrainOptions | None = None) -> tuple[dict[str, Any], Path]:
        config = RunConfig.from_dict(cfg)
        engine = TorchEngine()
        engine.check_config(config)
        run_dir = create_run_dir(tmp_path / "runs", config.name, run_id, resume=resume, overwrite=not resume)
        context = FitContext(run_dir=run_dir, callbacks=CallbackList(build_callbacks(config, run_dir)),
                             state=TrainState(), resume=resume, progress=False, log=lambda _m: None)
        if options is None:
            summary = engine.fit(config, data or synthetic_data(), context)
        else:
            summary = TorchTraining(config, data or synthetic_data(), context, options).run()
        return summary, run_dir.path

    return fit
