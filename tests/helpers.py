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
