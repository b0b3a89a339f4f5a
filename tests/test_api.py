"""The Python API end to end on real data: run, open, resume, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

import trainlab.api as tl
from tests.helpers import timeless, write_config
from trainlab.errors import ConfigError, RunDirError
from trainlab.run_files import METRICS_COLUMNS

pytestmark = pytest.mark.usefixtures("real_data")


def test_run_writes_a_complete_run_directory(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "runs")
    run = tl.run(cfg, run_id="r1", progress=False, echo=False)
    assert run.path == tmp_path / "runs" / "t" / "r1"
    for name in ("config.yaml", "metrics.csv", "summary.json", "run.log", "checkpoint.npz", "predictions.npz"):
        assert (run.path / name).is_file(), name
    summary = run.summary
    for key in ("test_accuracy", "test_loss", "best_val_accuracy", "epochs", "steps", "train_seconds",
                "images_per_second", "params", "status"):
        assert key in summary, key
    assert summary["status"] == "completed" and summary["steps"] == 80 and summary["params"] == 784 * 32 + 32 + 330
    assert 0.8 < summary["test_accuracy"] <= 1.0
    provenance = run.config["provenance"]
    assert provenance["versions"]["numpy"] and provenance["data"]["train"] == 2000
    assert len(provenance["data"]["fingerprint"]) >= 8
    assert list(run.metrics[0])[: len(METRICS_COLUMNS)] == list(METRICS_COLUMNS)
    assert [s for s, _ in run.series("accuracy", "val")] == [40, 80]
    reopened = tl.open_run(run.path)
    assert reopened.summary == summary and reopened.metrics == run.metrics


def test_run_writes_its_report_when_asked(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "runs", train={"epochs": 1, "batch_size": 100})
    run = tl.run(cfg, overrides=["output.report=true"], run_id="r", progress=False, echo=False)
    assert (run.path / "report.html").is_file() and (run.path / "figures").is_dir()
    assert (run.path / "predictions_initial.npz").is_file()
    assert "report:" in (run.path / "run.log").read_text()


def test_overrides_and_python_config(tmp_path: Path) -> None:
    cfg = tl.load_config(write_config(tmp_path / "c.yaml", tmp_path / "runs"), ["train.epochs=1", "seed=3"])
    assert cfg.train.epochs == 1 and cfg.seed == 3
    run = tl.run(cfg, overrides=["optimizer.lr=0.05"], run_id="r", progress=False, echo=False)
    assert run.config["optimizer"]["lr"] == 0.05 and run.summary["steps"] == 40


def test_same_seed_same_metrics(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "runs",
                       model={"type": "mlp", "hidden": [32], "dropout": 0.2, "batch_norm": True})
    first = tl.run(cfg, run_id="a", progress=False, echo=False)
    second = tl.run(cfg, run_id="b", progress=False, echo=False)
    other = tl.run(cfg, overrides=["seed=1"], run_id="c", progress=False, echo=False)
    assert timeless(first.metrics) == timeless(second.metrics)
    # Without the wall clock: every row carries ``elapsed``, so the raw rows always differ.
    assert other.config["seed"] == 1
    assert timeless(first.metrics) != timeless(other.metrics)


def test_existing_run_dir_refused_then_overwrite(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "runs", train={"epochs": 1, "batch_size": 100})
    tl.run(cfg, run_id="r", progress=False, echo=False)
    with pytest.raises(RunDirError, match="already exists"):
        tl.run(cfg, run_id="r", progress=False, echo=False)
    run = tl.run(cfg, run_id="r", overwrite=True, progress=False, echo=False)
    assert run.summary["status"] == "completed"


def test_resume_with_changed_config_names_the_fields(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "runs", train={"epochs": 1, "batch_size": 100})
    run = tl.run(cfg, run_id="r", progress=False, echo=False)
    with pytest.raises(ConfigError, match=r"optimizer\.lr: 0\.1 -> 0\.2"):
        tl.run(cfg, overrides=["optimizer.lr=0.2"], resume=run.path, progress=False, echo=False)


def test_resume_of_finished_run_changes_nothing(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "runs", train={"epochs": 1, "batch_size": 100})
    run = tl.run(cfg, run_id="r", progress=False, echo=False)
    again = tl.run(resume=run.path, progress=False, echo=False)
    assert again.metrics == run.metrics
    assert again.summary["test_accuracy"] == run.summary["test_accuracy"]


def test_nothing_to_run() -> None:
    with pytest.raises(ConfigError, match="nothing to run"):
        tl.run()


def test_engine_rules_fail_before_any_file_is_written(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "runs",
                       model={"type": "cnn", "conv": [{"filters": 8}], "fc": [10]})
    with pytest.raises(ConfigError, match="numpy"):
        tl.run(cfg, progress=False, echo=False)
    assert not (tmp_path / "runs").exists()
