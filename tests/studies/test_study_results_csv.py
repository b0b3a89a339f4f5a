"""results.csv loads into pandas with typed columns (a stand-in for the training run: no data needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.studies.conftest import write_study
from trainlab.callbacks import Callback
from trainlab.config import RunConfig
from trainlab.studies import Options, run_study
from trainlab.studies.results import RESULTS_CSV, csv_cell

SPACE = {"optimizer.lr": [0.01, 0.1, 1.0], "model.hidden": [[8], [16, 16]], "model.batch_norm": [True, False],
         "train.batch_size": [32, 64]}


def _execute(config: RunConfig, run_dir: Path, callbacks: list[Callback], data_dir: str | None) -> dict[str, Any]:
    """Fails at lr 1.0 (a row with no numbers); ``params`` only for the narrow model."""
    lr = float(config.optimizer.lr or 0.0)
    if lr == 1.0:
        raise RuntimeError("diverged")
    summary: dict[str, Any] = {"status": "completed", "best_val_accuracy": 0.9 - abs(lr - 0.1),
                               "test_accuracy": np.float64(0.8), "test_loss": float("nan")}
    if list(config.model.hidden) == [8]:
        summary["params"] = 6370
    return summary


def test_results_csv_loads_into_pandas_with_typed_columns(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    path = write_study(tmp_path / "s.yaml", {"space": SPACE}, tmp_path / "runs", name="s")
    run_study(path, options=Options(echo=False), execute=_execute)
    csv_path = tmp_path / "runs" / "s" / RESULTS_CSV
    assert "None" not in csv_path.read_text()
    frame = pd.read_csv(csv_path)
    assert list(frame.columns) == [  # a stable order: identity, the space's parameters in order, numbers, the rest
        "stage", "trial", "number", "state", *SPACE, "seed", "objective", "best_val_accuracy", "test_accuracy",
        "test_loss", "final_val_loss", "train_seconds", "params", "seconds", "attempts", "run_dir", "error"]
    assert len(frame) == 24 and (frame["state"] == "FAIL").sum() == 8
    kinds = {column: frame[column].dtype.kind for column in frame.columns}
    for column in ("optimizer.lr", "objective", "best_val_accuracy", "test_accuracy", "test_loss", "params",
                   "seconds"):
        assert kinds[column] == "f", (column, frame[column].dtype)
    for column in ("number", "train.batch_size", "seed", "attempts"):
        assert kinds[column] == "i", (column, frame[column].dtype)
    assert kinds["model.batch_norm"] == "b"
    assert sorted({json.dumps(json.loads(h)) for h in frame["model.hidden"]}) == ["[16, 16]", "[8]"]
    failed = frame[frame["state"] == "FAIL"]
    assert failed["objective"].isna().all() and failed["error"].str.contains("diverged").all()
    complete = frame[frame["state"] == "COMPLETE"]
    assert (complete["test_accuracy"] == 0.8).all() and complete["test_loss"].isna().all()
    assert complete["params"].notna().sum() == 8  # the narrow model's trials; the others: empty cells


@pytest.mark.parametrize(("value", "cell"), [
    (None, ""), (True, "true"), (False, "false"), (3, "3"), (0.1, "0.1"), (np.float64(0.1), "0.1"),
    (float("inf"), "inf"), ([500, 500], "[500, 500]"), ({"a": 1}, '{"a": 1}'), ("relu", "relu"),
])
def test_csv_cell(value: Any, cell: str) -> None:
    assert csv_cell(value) == cell
