"""Small helpers shared by tests: write a run config for a subset of real data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from trainlab.callbacks.base import Callback


def write_config(path: Path, output_dir: Path, **sections: Any) -> Path:
    """Write a run config with sensible small defaults; ``sections`` replace whole sections."""
    config: dict[str, Any] = {
        "name": "t",
        "seed": 0,
        "engine": "numpy",
        "data": {"dataset": "mnist", "limit": {"train": 2000, "val": 500, "test": 1000}, "normalize": "scale"},
        "model": {"type": "mlp", "hidden": [32]},
        "optimizer": {"type": "sgd", "lr": 0.1},
        "train": {"epochs": 2, "batch_size": 50},
        # Reports take seconds each; the report tests and one API test turn them on.
        "output": {"dir": str(output_dir), "report": False},
    }
    config.update(sections)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def timeless(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Metrics (or steps.csv) rows without ``elapsed``: the training clock differs between two
    runs of one config, while every other cell must match exactly."""
    return [{key: value for key, value in row.items() if key != "elapsed"} for row in rows]


class InterruptAt(Callback):
    """Stands in for a kill: raises KeyboardInterrupt at the evaluation of optimizer step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_evaluate(self, state: Any, rows: list[dict[str, Any]]) -> None:
        if state.step == self.step:
            raise KeyboardInterrupt


class CrashAtEvaluation(Callback):
    """Fails at the n-th evaluation, before that evaluation's checkpoint is written."""

    def __init__(self, at: int) -> None:
        self.at, self.seen = at, 0

    def on_evaluate(self, state: Any, rows: list[dict[str, Any]]) -> None:
        self.seen += 1
        if self.seen == self.at:
            raise RuntimeError("simulated crash")


def fit_torch(cfg: dict[str, Any], data: Any, root: Path, run_id: str, resume: bool = False,
              extra: list[Callback] | None = None) -> Path:
    """Train ``cfg`` (a config dict) on prepared ``data`` with the torch engine in ``root/run_id``,
    checked as the pipeline checks it, quietly; ``resume`` continues that run directory."""
    from trainlab.api import build_callbacks
    from trainlab.callbacks import CallbackList, TrainState
    from trainlab.config import RunConfig
    from trainlab.engines.base import FitContext
    from trainlab.engines.torch import TorchEngine
    from trainlab.runs import create_run_dir

    config = RunConfig.from_dict(cfg)
    engine = TorchEngine()
    engine.check_config(config)
    run_dir = create_run_dir(root, config.name, run_id, resume=resume, overwrite=not resume)
    context = FitContext(run_dir=run_dir, callbacks=CallbackList(build_callbacks(config, run_dir, extra or [])),
                         state=TrainState(), resume=resume, progress=False, log=lambda _m: None)
    engine.fit(config, data, context)
    return run_dir.path


def assert_same_checkpoint_arrays(path_a: Path, path_b: Path, prefixes: tuple[str, ...]) -> None:
    """The NumPy checkpoints ``path_a`` and ``path_b`` hold the same keys under ``prefixes``
    (at least one: a renamed prefix must not leave nothing compared) with equal arrays."""
    import numpy as np

    with np.load(path_a) as a, np.load(path_b) as b:
        keys_a = sorted(k for k in a.files if k.startswith(prefixes))
        keys_b = sorted(k for k in b.files if k.startswith(prefixes))
        assert keys_a and keys_a == keys_b, (keys_a, keys_b)
        for key in keys_a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def import_script(name: str) -> Any:
    """``scripts/<name>.py`` imported as the module ``name`` (registered in sys.modules, so that
    its dataclasses and pickles resolve)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
