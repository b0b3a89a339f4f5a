"""Fixtures of the report tests: a few tiny real runs, trained once per session, and their reports.

Runs are small (MNIST/CIFAR subsets, 1-2 epochs, one CPU thread). Interrupted runs and runs
without predictions are copies of a finished run with files taken away, as a killed run
leaves them (every write is atomic, so a killed run has whole files or none).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import write_config
from trainlab import api
from trainlab.errors import TrainingError

CIFAR = {"dataset": "cifar10", "limit": {"train": 1000, "val": 200, "test": 300}, "normalize": "channel"}


@dataclass
class ReportRuns:
    """Run directories of the session's runs, each with its report written."""

    mlp: Path  # numpy MLP on MNIST, early stopping, plus a gradcheck and initial predictions
    linear: Path  # numpy linear classifier on CIFAR-10 (weight templates, one per class)
    torch_cnn: Path  # torch CNN on CIFAR-10 with augmentation (model summary, conv filters)
    failed: Path  # numpy run whose loss became NaN
    killed: Path  # a copy of `linear` without summary.json and predictions.npz
    no_predictions: Path  # a copy of `mlp` without predictions.npz

    def all(self) -> dict[str, Path]:
        """Every run by its short name."""
        return dict(vars(self))


def _train(config: Path, run_id: str) -> Path:
    return api.run(config, run_id=run_id, progress=False, echo=False).path


@pytest.fixture(scope="session")
def report_runs(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReportRuns]:
    """Train the runs and write every report once for the whole session."""
    root = tmp_path_factory.mktemp("report-runs")
    out = root / "runs"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRAINLAB_NUM_THREADS", "1")
        mlp = _train(write_config(
            root / "mlp.yaml", out, name="mlp",
            train={"epochs": 2, "batch_size": 50, "eval_every": 10,
                   # min_delta above any real gain: stops after 2 more evaluations, best at step 10.
                   "early_stopping": {"monitor": "val_accuracy", "mode": "max", "patience": 2,
                                      "min_delta": 0.5}},
        ), "a")
        linear = _train(write_config(
            root / "linear.yaml", out, name="linear", data=CIFAR, model={"type": "linear"},
            optimizer={"type": "sgd", "lr": 0.01}, train={"epochs": 1, "batch_size": 100},
        ), "a")
        torch_cnn = _train(write_config(
            root / "cnn.yaml", out, name="cnn", engine="torch", data=CIFAR,
            model={"type": "cnn", "conv": [{"filters": 8}, {"filters": 16}]},
            augment={"hflip": True, "crop_padding": 2, "cutout": 8},
            optimizer={"type": "momentum", "lr": 0.05, "momentum": 0.9},
            train={"epochs": 1, "batch_size": 50, "eval_every": 5},
        ), "a")
        failed_config = write_config(root / "failed.yaml", out, name="failed", optimizer={"type": "sgd", "lr": 1e9},
                                     train={"epochs": 1, "batch_size": 50})
        with pytest.raises(TrainingError), np.errstate(all="ignore"):
            api.run(failed_config, run_id="a", progress=False, echo=False)
        failed = out / "failed" / "a"

    # A gradient check is an optional input (trainlab gradcheck --save); the engines write
    # predictions_initial.npz themselves: the linear run goes without it to show the note.
    (mlp / "gradcheck.json").write_text(json.dumps(api.gradcheck(root / "mlp.yaml", entries=10)), encoding="utf-8")
    (linear / "predictions_initial.npz").unlink()

    killed = out / "linear" / "killed"
    shutil.copytree(linear, killed)
    (killed / "summary.json").unlink()
    (killed / "predictions.npz").unlink()
    no_predictions = out / "mlp" / "no-predictions"
    shutil.copytree(mlp, no_predictions)
    (no_predictions / "predictions.npz").unlink()
    (no_predictions / "predictions_initial.npz").unlink()

    runs = ReportRuns(mlp, linear, torch_cnn, failed, killed, no_predictions)
    for path in runs.all().values():
        api.write_report(path)
    yield runs


# Headless Chromium as ../shared/STACK.md says it runs here (never `playwright install`).
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (skipped where chromium or playwright is missing)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()
