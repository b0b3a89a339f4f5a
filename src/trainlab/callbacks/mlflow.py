"""MlflowLogger: a run as an MLflow run (``output.mlflow``), and a study as a parent run.

What is logged: the resolved config as params (dotted paths, ``source`` left out: it
documents settings, it sets none), each evaluation's numbers as metrics named like the
monitors (``val_accuracy``, ``train_loss``, ``lr``) at the global step, the summary's
numbers as ``summary/<key>`` with its status as a tag, and ``report.html``, ``figures/``,
``summary.json``, ``config.yaml`` and ``metrics.csv`` as artifacts. The MLflow run ends
FINISHED (completed or stopped early), KILLED (interrupted) or FAILED.

Where: ``output.mlflow.tracking_uri``, by default the SQLite file ``mlflow.db`` in
``output.dir`` (MLflow's plain file store no longer runs), with its artifacts beside it in
``mlflow-artifacts/``. The run directory records its MLflow run in :data:`RUN_FILE`, so a
resumed run continues the same MLflow run. A study (:func:`study_run`) writes
:data:`PARENT_FILE` into its directory; each trial's run, a folder of that directory, is
then logged as a child run of the study's.

Everything goes through ``MlflowClient`` with explicit run ids: no global MLflow state, so a
notebook's own active run is left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainlab.callbacks.base import TrainState
from trainlab.callbacks.tracker import Tracker, measured, require_package, summary_numbers
from trainlab.errors import ConfigError
from trainlab.io import atomic_write_json
from trainlab.run_files import CONFIG_FILE, FIGURES_DIR, METRICS_FILE, REPORT_FILE, SUMMARY_FILE

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from trainlab.config import RunConfig
    from trainlab.config.run import MlflowConfig
    from trainlab.run_files import RunDir

#: In a run directory: the MLflow run it is logged to (tracking URI, run id).
RUN_FILE = "mlflow_run.json"
#: In a study directory: the study's MLflow run, the parent of its trials' runs.
PARENT_FILE = "mlflow_parent.json"
#: The default tracking store, a SQLite file in ``output.dir``.
DB_FILE = "mlflow.db"
#: Beside a SQLite store: where its runs' artifacts go.
ARTIFACTS_DIR = "mlflow-artifacts"
# The run directory's files worth having next to the numbers in MLflow's UI.
_RUN_ARTIFACTS = (REPORT_FILE, SUMMARY_FILE, CONFIG_FILE, METRICS_FILE)
# MLflow's limit on a param value (MAX_PARAM_VAL_LENGTH) and a generous one for tag values.
_MAX_PARAM = 6000
_MAX_TAG = 5000
_STATUS = {"completed": "FINISHED", "stopped_early": "FINISHED", "interrupted": "KILLED"}


def tracking_uri(settings: MlflowConfig, output_dir: str | Path) -> str:
    """The tracking URI a run logs to: the configured one, else ``sqlite:///<output_dir>/mlflow.db``."""
    if settings.tracking_uri is not None:
        return settings.tracking_uri
    return f"sqlite:///{(Path(output_dir) / DB_FILE).resolve()}"


def flat_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A config dict as ``{"optimizer.lr": "0.1", "model.hidden": "[32]"}``: strings as they
    are, everything else as JSON (so ``null``, ``true``, lists read as in YAML's flow style)."""
    params: dict[str, str] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            params.update(flat_params(value, f"{path}."))
        else:
            text = value if isinstance(value, str) else json.dumps(value)
            params[path] = text[:_MAX_PARAM]
    return params


class MlflowLogger(Tracker):
    """Log a run to MLflow: params at the start, metrics at each evaluation, the summary and
    the report when it ends.

    Args:
        config: the run's resolved config (its ``output.mlflow`` is set).
        run_dir: the run directory; it gets :data:`RUN_FILE`.

    Raises:
        ConfigError: the mlflow package is not installed.

    Example:
        >>> callbacks.append(MlflowLogger(config, run_dir))
    """

    def __init__(self, config: RunConfig, run_dir: RunDir) -> None:
        require_package("mlflow", "output.mlflow")
        assert config.output.mlflow is not None  # build_callbacks adds it only then
        self.config = config
        self.settings = config.output.mlflow
        self.run_dir = run_dir
        self.run_id: str | None = None
        self._client: MlflowClient | None = None
        self._logged_up_to = -1  # a resumed run skips the evaluations its MLflow run has

    def on_train_begin(self, state: TrainState) -> None:
        from mlflow import MlflowClient

        record_path = self.run_dir.path / RUN_FILE
        if record_path.exists():  # resumed: continue the MLflow run this directory started
            record = json.loads(record_path.read_text(encoding="utf-8"))
            self._client = client = MlflowClient(record["tracking_uri"])
            self.run_id = record["run_id"]
            client.update_run(self.run_id, status="RUNNING")
            self._logged_up_to = _last_step(client, self.run_id)
            return
        parent = _read_parent(self.run_dir.path.parent)
        if parent is not None:  # a study's trial: the study's store and experiment
            uri, experiment_id = parent["tracking_uri"], parent["experiment_id"]
            self._client = client = MlflowClient(uri)
        else:
            uri = tracking_uri(self.settings, self.config.output.dir)
            self._client = client = MlflowClient(uri)
            experiment_id = _experiment_id(client, uri, self.settings.experiment or self.config.name)
        tags = {"trainlab.run_dir": str(self.run_dir.path.resolve()), "trainlab.engine": self.config.engine}
        if parent is not None:
            tags["mlflow.parentRunId"] = parent["run_id"]
        run = client.create_run(experiment_id, run_name=self.run_dir.path.name, tags=tags)
        self.run_id = run.info.run_id
        atomic_write_json(record_path, {"tracking_uri": uri, "run_id": self.run_id})
        from mlflow.entities import Param

        resolved = self.config.model_dump(mode="json", exclude={"source"})
        client.log_batch(self.run_id, params=[Param(k, v) for k, v in flat_params(resolved).items()])

    def on_evaluate(self, state: TrainState, rows: list[dict[str, Any]]) -> None:
        if self._client is None or self.run_id is None or state.step <= self._logged_up_to:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        values = {f"{row['split']}_{column}" if row.get("split") else column: value
                  for row in rows for column, value in measured(row).items()}
        values["lr"] = state.lr
        self._client.log_batch(self.run_id, metrics=[Metric(k, v, now, state.step) for k, v in values.items()])

    def finish(self, summary: Mapping[str, Any], run_path: Path) -> None:
        """Log the summary and the run's files, then end the MLflow run with the run's status."""
        client, run_id = self._client, self.run_id
        if client is None or run_id is None:
            return
        self._client = None
        status = str(summary.get("status", "failed"))
        try:
            from mlflow.entities import Metric, RunTag

            now, step = int(time.time() * 1000), int(summary.get("steps", 0))
            tags = [RunTag("trainlab.status", status)]
            tags += [RunTag(f"trainlab.{key}", str(summary[key])[:_MAX_TAG])
                     for key in ("stop_reason", "error") if summary.get(key)]
            client.log_batch(run_id, tags=tags, metrics=[
                Metric(f"summary/{key}", value, now, step) for key, value in summary_numbers(summary).items()])
            for name in _RUN_ARTIFACTS:
                if (run_path / name).is_file():
                    client.log_artifact(run_id, str(run_path / name))
            if (run_path / FIGURES_DIR).is_dir():
                client.log_artifacts(run_id, str(run_path / FIGURES_DIR), FIGURES_DIR)
        finally:
            client.set_terminated(run_id, _STATUS.get(status, "FAILED"))


@contextlib.contextmanager
def study_run(study_dir: Path, base: RunConfig, name: str) -> Iterator[str | None]:
    """While a study runs: its MLflow run, the parent of its trials' runs; yields its run id.

    Nothing happens (None is yielded) unless ``base.output.mlflow`` is set. The run is
    started once and recorded in ``study_dir/`` :data:`PARENT_FILE`; a resumed study
    continues it. Its trials use its store and experiment, which default as the trials'
    own would: ``mlflow.db`` in the study directory's parent (the trials' ``output.dir``)
    and the study directory's name (the trials' run name). It ends FINISHED, KILLED
    (Ctrl-C) or FAILED, with the study's results files as artifacts.

    Raises:
        ConfigError: ``output.mlflow`` is set but mlflow is not installed.
    """
    settings = base.output.mlflow
    if settings is None:
        yield None
        return
    require_package("mlflow", "output.mlflow")
    client, run_id = _open_parent(study_dir, settings, name)
    status = "FAILED"
    try:
        yield run_id
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        # A failure to record the end must not hide the study's own error.
        with contextlib.suppress(Exception) if status != "FINISHED" else contextlib.nullcontext():
            for result in sorted(study_dir.glob("results.*")):
                client.log_artifact(run_id, str(result))
            client.set_terminated(run_id, status)


def _open_parent(study_dir: Path, settings: MlflowConfig, name: str) -> tuple[MlflowClient, str]:
    """The study's MLflow client and run id: those :data:`PARENT_FILE` records, else a new run.

    Two processes starting one study at once each create a run; the first to record its
    own wins, and the other deletes its run and takes the recorded one.
    """
    from mlflow import MlflowClient

    recorded = _read_parent(study_dir)
    if recorded is not None:
        client = MlflowClient(recorded["tracking_uri"])
        client.update_run(recorded["run_id"], status="RUNNING")
        return client, recorded["run_id"]
    uri = tracking_uri(settings, study_dir.parent)
    client = MlflowClient(uri)
    experiment_id = _experiment_id(client, uri, settings.experiment or study_dir.name)
    run = client.create_run(experiment_id, run_name=name, tags={
        "trainlab.study_dir": str(study_dir.resolve()), "trainlab.kind": "study"})
    record = {"tracking_uri": uri, "experiment_id": experiment_id, "run_id": run.info.run_id}
    if not _create_exclusively(study_dir / PARENT_FILE, record):
        client.delete_run(run.info.run_id)
        return _open_parent(study_dir, settings, name)
    return client, run.info.run_id


def _read_parent(folder: Path) -> dict[str, str] | None:
    path = folder / PARENT_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _create_exclusively(path: Path, record: Mapping[str, str]) -> bool:
    """Write ``record`` as JSON to ``path`` unless it exists; whether this call wrote it.

    The file appears complete or not at all: it is written aside, then hard-linked in place
    (a link, unlike a rename, fails when the target exists).
    """
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(dict(record), handle, indent=2, sort_keys=True)
        os.link(temp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(temp)


def _experiment_id(client: MlflowClient, uri: str, name: str) -> str:
    """The id of experiment ``name``, created when missing (a SQLite store's with its
    artifacts beside the database, not in MLflow's default ``./mlruns`` of the working folder)."""
    from mlflow.exceptions import MlflowException

    location = None
    if uri.startswith("sqlite:///"):  # SQLite creates the file, not its folder
        database = Path(uri.removeprefix("sqlite:///"))
        database.parent.mkdir(parents=True, exist_ok=True)
        location = (database.parent.resolve() / ARTIFACTS_DIR).as_uri()
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage != "active":
            raise ConfigError(f"MLflow experiment {name!r} in {uri} is deleted: restore it, or choose "
                              "another with output.mlflow.experiment")
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except MlflowException:  # another process created it since we looked
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def _last_step(client: MlflowClient, run_id: str) -> int:
    """The last step an MLflow run has metrics for (-1: none)."""
    history = client.get_metric_history(run_id, "lr")
    return max((metric.step for metric in history), default=-1)


__all__ = ["ARTIFACTS_DIR", "DB_FILE", "PARENT_FILE", "RUN_FILE", "MlflowLogger", "flat_params",
           "study_run", "tracking_uri"]
