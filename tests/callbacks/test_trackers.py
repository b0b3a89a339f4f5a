"""TensorBoard and MLflow trackers on real runs, read back with each tool's own reader."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import trainlab.api as tl
from tests.helpers import InterruptAt, timeless, write_config
from tests.studies.conftest import write_study
from trainlab.callbacks.mlflow import PARENT_FILE, RUN_FILE
from trainlab.callbacks.tensorboard import TENSORBOARD_DIR
from trainlab.config import RunConfig
from trainlab.errors import ConfigError
from trainlab.studies import Options

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

from mlflow import MlflowClient  # after the skips: optional packages
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

# 500 training images in batches of 50: 10 steps, evaluated at steps 5 and 10.
SMALL = {"dataset": "mnist", "limit": {"train": 500, "val": 200, "test": 200}, "normalize": "scale"}


@pytest.fixture(autouse=True)
def _quiet_mlflow(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No usage reports from MLflow, and a working folder of the test's own (MLflow's defaults
    would write ./mlruns there: the tests check that nothing does)."""
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.chdir(tmp_path)
    yield
    assert not (tmp_path / "mlruns").exists()


def _config(tmp_path: Path, output: dict[str, Any], **sections: Any) -> Path:
    """The tiny MNIST run (``sections`` replace whole sections) with ``output`` added."""
    sections = {"data": SMALL, "model": {"type": "mlp", "hidden": [16]},
                "train": {"epochs": 1, "batch_size": 50, "eval_every": 5}, **sections}
    config = write_config(tmp_path / "c.yaml", tmp_path / "runs", **sections)
    data = yaml.safe_load(config.read_text())
    data["output"].update(output)
    config.write_text(yaml.safe_dump(data))
    return config


def _scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run / TENSORBOARD_DIR))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def _csv_series(run: tl.Run, column: str, split: str) -> list[tuple[int, float]]:
    return [(int(step), value) for step, value in run.series(column, split)]


def _client(tmp_path: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")


@pytest.mark.usefixtures("real_data")
def test_both_trackers_log_what_metrics_csv_holds_and_change_no_number(tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"tensorboard": True, "mlflow": True, "report": True})
    run = tl.run(cfg, run_id="tracked", progress=False, echo=False)
    plain = tl.run(cfg, overrides=["output.tensorboard=false", "output.mlflow=null", "output.report=false"],
                   run_id="plain", progress=False, echo=False)
    assert timeless(run.metrics) == timeless(plain.metrics)

    # TensorBoard: float32 scalars at the global step, one tag per split and column.
    val = _csv_series(run, "accuracy", "val")
    assert [s for s, _ in val] == [5, 10]
    for tag, column, split in (("val/accuracy", "accuracy", "val"), ("train/loss", "loss", "train")):
        expected = _csv_series(run, column, split)
        logged = _scalars(run.path, tag)
        assert [s for s, _ in logged] == [s for s, _ in expected]
        assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6)
    assert [s for s, _ in _scalars(run.path, "lr")] == [5, 10]
    assert _scalars(run.path, "summary/test_accuracy") == [(10, pytest.approx(run.summary["test_accuracy"]))]

    # MLflow: one run in experiment "t" (the run name), in runs/mlflow.db.
    client = _client(tmp_path)
    record = json.loads((run.path / RUN_FILE).read_text())
    logged_run = client.get_run(record["run_id"])
    experiment = client.get_experiment_by_name("t")
    assert experiment is not None and logged_run.info.experiment_id == experiment.experiment_id
    assert logged_run.info.status == "FINISHED" and logged_run.info.run_name == "tracked"
    params = logged_run.data.params
    assert params["optimizer.lr"] == "0.1" and params["data.limit.train"] == "500"
    assert params["model.hidden"] == "[16]" and params["engine"] == "numpy"
    assert not any(key.startswith("source") for key in params)
    history = client.get_metric_history(record["run_id"], "val_accuracy")
    assert [(m.step, m.value) for m in history] == val
    assert logged_run.data.metrics["summary/test_accuracy"] == run.summary["test_accuracy"]
    assert logged_run.data.tags["trainlab.status"] == "completed"
    artifacts = {a.path for a in client.list_artifacts(record["run_id"])}
    assert {"report.html", "figures", "summary.json", "config.yaml", "metrics.csv"} <= artifacts
    assert any(a.path.endswith(".png") for a in client.list_artifacts(record["run_id"], "figures"))
    # Beside the database, not in the working folder.
    assert list((tmp_path / "runs" / "mlflow-artifacts").glob("*/artifacts/report.html"))


@pytest.mark.usefixtures("real_data")
def test_a_resumed_run_continues_its_mlflow_run_and_logs_each_step_once(tmp_path: Path) -> None:
    # 20 steps, evaluated (and checkpointed) every 3: cut at 9, resumed from the checkpoint of 6.
    cfg = _config(tmp_path, {"tensorboard": True, "mlflow": {"experiment": "resumes"}},
                  train={"epochs": 2, "batch_size": 50, "eval_every": 3})
    with pytest.raises(KeyboardInterrupt):
        tl.run(cfg, run_id="cut", progress=False, echo=False, callbacks=[InterruptAt(9)])
    path = tmp_path / "runs" / "t" / "cut"
    run_id = json.loads((path / RUN_FILE).read_text())["run_id"]
    client = _client(tmp_path)
    assert client.get_run(run_id).info.status == "KILLED"
    assert [m.step for m in client.get_metric_history(run_id, "val_accuracy")] == [3, 6, 9]

    run = tl.run(resume=path, progress=False, echo=False)
    assert json.loads((path / RUN_FILE).read_text())["run_id"] == run_id
    (experiment,) = [e for e in client.search_experiments() if e.name == "resumes"]
    assert len(client.search_runs([experiment.experiment_id])) == 1
    assert client.get_run(run_id).info.status == "FINISHED"
    val = _csv_series(run, "accuracy", "val")
    assert [s for s, _ in val] == [3, 6, 9, 12, 15, 18, 20]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "val_accuracy")] == val
    logged = _scalars(path, "val/accuracy")
    assert [s for s, _ in logged] == [s for s, _ in val]  # the first attempt's step 9 was purged
    assert [v for _, v in logged] == pytest.approx([v for _, v in val], rel=1e-6)


@pytest.mark.usefixtures("real_data", "one_torch_thread")
def test_tensorboard_on_the_torch_engine(tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"tensorboard": True}, engine="torch")
    run = tl.run(cfg, run_id="r", progress=False, echo=False)
    logged = _scalars(run.path, "val/accuracy")
    assert logged == [(s, pytest.approx(v, rel=1e-6)) for s, v in _csv_series(run, "accuracy", "val")]


@pytest.mark.usefixtures("real_data")
def test_a_study_logs_each_trial_as_a_child_run(tmp_path: Path) -> None:
    study = write_study(tmp_path / "s.yaml", {"space": {"optimizer.lr": [0.05, 0.2]}}, tmp_path / "runs",
                        name="s", train={"epochs": 1, "batch_size": 50},
                        output={"mlflow": True, "report": False})
    tl.run_study(study, options=Options(echo=False))
    parent = json.loads((tmp_path / "runs" / "s" / PARENT_FILE).read_text())
    client = _client(tmp_path)
    study_run = client.get_run(parent["run_id"])
    assert study_run.info.status == "FINISHED" and study_run.data.tags["trainlab.kind"] == "study"
    assert {"results.csv", "results.md"} <= {a.path for a in client.list_artifacts(parent["run_id"])}
    children = client.search_runs([parent["experiment_id"]],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent['run_id']}'")
    assert sorted(c.info.run_name for c in children) == ["t0000", "t0001"]
    assert sorted(c.data.params["optimizer.lr"] for c in children) == ["0.05", "0.2"]
    for child in children:
        summary = json.loads((tmp_path / "runs" / "s" / child.info.run_name / "summary.json").read_text())
        assert child.info.status == "FINISHED"
        assert child.data.metrics["summary/best_val_accuracy"] == summary["best_val_accuracy"]


@pytest.mark.parametrize(("field", "package"), [("tensorboard", "tensorboard"), ("mlflow", "mlflow")])
def test_a_missing_package_is_a_config_error_before_anything_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, field: str, package: str) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # `import <package>` now raises ImportError
    cfg = _config(tmp_path, {field: True})
    with pytest.raises(ConfigError) as error:
        tl.run(cfg, run_id="r", progress=False, echo=False)
    assert str(error.value) == f"output.{field} needs the {package} package: pip install 'trainlab[trackers]'"
    assert not (tmp_path / "runs").exists()


def test_mlflow_shorthand_and_defaults() -> None:
    base = {"data": {"dataset": "mnist"}, "model": {"type": "linear"}}
    on = RunConfig.from_dict({**base, "output": {"mlflow": True}})
    assert on.output.mlflow is not None and on.output.mlflow.tracking_uri is None
    assert on.output.mlflow.experiment is None and not on.output.tensorboard
    assert RunConfig.from_dict({**base, "output": {"mlflow": False}}).output.mlflow is None
    assert RunConfig.from_dict(on.model_dump(mode="json")) == on  # round trip through config.yaml
    with pytest.raises(ConfigError, match=r"output\.mlflow\.uri"):
        RunConfig.from_dict({**base, "output": {"mlflow": {"uri": "http://x"}}})
