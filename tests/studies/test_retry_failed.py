"""``trainlab study run FILE --retry-failed``: failed trials run again, once per key, in their own directories.

Most tests use a stand-in executor that fails the trials it is told to on their first
attempt; the last one fails a real tiny run after its first checkpoint and checks that the
retry resumes from it.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

import trainlab
import trainlab.api
import trainlab.studies as studies_package
from tests.studies.conftest import write_study
from trainlab.callbacks import Callback, TrainState
from trainlab.cli import main
from trainlab.config import RunConfig
from trainlab.studies import Options, load_study, open_study_storage, run_study
from trainlab.studies.results import RESULTS_CSV, rank_settings
from trainlab.studies.storage import enqueue_failed


class FailFirst:
    """Scores a config by how close its learning rate is to 0.1; the trials (keys) in ``fail``
    raise on their first attempt (or on every one, with ``always``)."""

    def __init__(self, fail: set[str], always: bool = False) -> None:
        self.fail = set(fail)
        self.always = always
        self.calls: list[Path] = []

    def __call__(self, config: RunConfig, run_dir: Path, callbacks: list[Callback],
                 data_dir: str | None) -> dict[str, Any]:
        self.calls.append(run_dir)
        if run_dir.name in self.fail:
            if not self.always:
                self.fail.discard(run_dir.name)
            raise RuntimeError("CUDA out of memory")
        lr = config.optimizer.lr or 1.0
        score = 0.9 - abs(lr - 0.1) + 0.001 * config.seed
        return {"status": "completed", "best_val_accuracy": score, "test_accuracy": score}


def _study_file(tmp_path: Path, name: str = "r") -> Path:
    return write_study(tmp_path / f"{name}.yaml", {"space": {"optimizer.lr": [0.01, 0.1, 1.0]}, "repeats": 2},
                       tmp_path / "runs", name=name)


def _all_trials(path: Path) -> list[optuna.trial.FrozenTrial]:
    """Every attempt of the study's one stage, failed ones included."""
    study = load_study(path)
    handle = open_study_storage(study, Options())
    return optuna.load_study(study_name=study.stage_name(study.stages[0]), storage=handle.storage).trials


def _rows(tmp_path: Path, name: str = "r") -> list[dict[str, str]]:
    return list(csv.DictReader((tmp_path / "runs" / name / RESULTS_CSV).open()))


def test_a_failed_trial_stays_failed_on_resume_and_runs_again_with_retry_failed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _study_file(tmp_path)
    fake = FailFirst({"t0002-r0"})
    run_study(path, options=Options(echo=False), execute=fake)
    assert {r["trial"]: r["state"] for r in _rows(tmp_path)}["t0002-r0"] == "FAIL"

    resumed = FailFirst(set())
    (stage,) = run_study(path, options=Options(echo=False), execute=resumed)
    assert resumed.calls == []  # without the flag nothing changes: the failed trial is skipped
    assert stage.count(TrialState.FAIL) == 1

    retried = FailFirst(set())
    (stage,) = run_study(path, options=Options(echo=True), execute=retried, retry_failed=True)
    assert "retrying 1 failed trial(s): t0002-r0" in capsys.readouterr().out
    study_dir = tmp_path / "runs" / "r"
    assert retried.calls == [study_dir / "t0002-r0"]  # the same key, the same run directory
    assert stage.count(TrialState.COMPLETE) == 6 and stage.count(TrialState.FAIL) == 0

    rows = _rows(tmp_path)
    assert sorted(r["trial"] for r in rows) == sorted(f"t{s:04d}-r{r}" for s in range(3) for r in range(2))
    assert {r["state"] for r in rows} == {"COMPLETE"}
    assert {r["trial"]: r["attempts"] for r in rows}["t0002-r0"] == "2"
    assert [s.spread.n for s in rank_settings(stage)] == [2, 2, 2]  # each key counted once

    history = _all_trials(path)  # the failed attempt stays in Optuna's history
    failed = [t for t in history if t.state == TrialState.FAIL]
    assert len(history) == 7 and len(failed) == 1 and "out of memory" in failed[0].user_attrs["error"]
    (again,) = [t for t in history if t.user_attrs["key"] == "t0002-r0" and t.state == TrialState.COMPLETE]
    assert again.system_attrs["failed_trial"] == failed[0].number
    assert "error" not in again.user_attrs and again.params == failed[0].params


def test_retry_failed_leaves_complete_keys_alone_and_retries_a_key_once_per_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _study_file(tmp_path)
    run_study(path, options=Options(echo=False), execute=FailFirst({"t0001-r1"}, always=True))

    stubborn = FailFirst({"t0001-r1"}, always=True)
    (stage,) = run_study(path, options=Options(echo=True), execute=stubborn, retry_failed=True)
    assert "retrying 1 failed trial(s): t0001-r1" in capsys.readouterr().out
    assert [p.name for p in stubborn.calls] == ["t0001-r1"]  # failing again is not retried again
    assert stage.count(TrialState.FAIL) == 1 and stage.attempts["t0001-r1"] == 2

    fixed = FailFirst(set())
    (stage,) = run_study(path, options=Options(echo=True), execute=fixed, retry_failed=True)
    assert [p.name for p in fixed.calls] == ["t0001-r1"]
    assert stage.attempts["t0001-r1"] == 3 and stage.count(TrialState.COMPLETE) == 6

    done = FailFirst(set())
    run_study(path, options=Options(echo=True), execute=done, retry_failed=True)
    assert done.calls == []  # every key complete: nothing is queued
    assert "retrying 0 failed trial(s)" in capsys.readouterr().out
    assert len(_all_trials(path)) == 8  # 6 planned + 2 retries, nothing more


def test_retrying_an_earlier_stage_says_that_later_stages_keep_their_plan(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = {"space": {"optimizer.lr": [0.01, 0.1, 1.0]},
             "stages": [{"name": "coarse"}, {"name": "final", "best": True}]}
    path = write_study(tmp_path / "m.yaml", study, tmp_path / "runs", name="m")
    run_study(path, options=Options(echo=False), execute=FailFirst({"coarse-t0002"}))
    retried = FailFirst(set())
    coarse, final = run_study(path, options=Options(echo=True), execute=retried, retry_failed=True)
    out = capsys.readouterr().out
    assert "retrying 1 failed trial(s): coarse-t0002" in out and "stage(s) final were planned" in out
    assert [p.name for p in retried.calls] == ["coarse-t0002"]
    assert coarse.count(TrialState.COMPLETE) == 3 and [t.user_attrs["key"] for t in final.trials] == ["final-t0000"]


def _trial(state: TrialState, key: str, lr: float) -> optuna.trial.FrozenTrial:
    return optuna.create_trial(state=state, params={"lr": lr}, distributions={"lr": FloatDistribution(0, 1)},
                               user_attrs={"key": key, "error": "boom", "worker": {"pid": 1}},
                               value=0.5 if state == TrialState.COMPLETE else None)


def test_retry_failed_queues_a_key_only_when_none_of_its_trials_is_done_or_queued() -> None:
    study = optuna.create_study(direction="maximize")
    for state, key in [(TrialState.FAIL, "done"), (TrialState.COMPLETE, "done"),
                       (TrialState.FAIL, "pruned"), (TrialState.PRUNED, "pruned"),
                       (TrialState.FAIL, "queued"), (TrialState.WAITING, "queued"),
                       (TrialState.FAIL, "twice"), (TrialState.FAIL, "twice"), (TrialState.FAIL, "once")]:
        study.add_trial(_trial(state, key, 0.1 * (len(study.trials) + 1)))
    assert enqueue_failed(study) == ["once", "twice"]
    waiting = {t.user_attrs["key"]: t for t in study.get_trials(states=(TrialState.WAITING,))}
    assert sorted(waiting) == ["once", "queued", "twice"]
    # a copy of the latest failed attempt, without that attempt's own error and worker
    assert waiting["twice"].system_attrs["failed_trial"] == 7 and waiting["twice"].params == {"lr": 0.8}
    assert "error" not in waiting["twice"].user_attrs and "worker" not in waiting["twice"].user_attrs
    assert enqueue_failed(study) == []  # once per key: both are waiting now


def test_api_passes_retry_failed_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(studies_package, "run_study", lambda study, **kwargs: seen.update(kwargs) or [])
    trainlab.run_study(tmp_path / "s.yaml", retry_failed=True)
    assert seen["retry_failed"] is True and seen["execute"] is trainlab.api.execute_trial
    trainlab.api.run_study(tmp_path / "s.yaml")
    assert seen["retry_failed"] is False


def test_cli_status_points_at_retry_failed_and_run_retries(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    path = _study_file(tmp_path, "cli")
    monkeypatch.setattr(trainlab.api, "execute_trial", FailFirst({"t0000-r1", "t0002-r0"}))
    assert main(["study", str(path), "-q"]) == 0
    capsys.readouterr()
    study_dir = tmp_path / "runs" / "cli"
    assert main(["study", "status", str(study_dir), "--no-watch"]) == 0
    out = capsys.readouterr().out
    assert "2 failed trial(s)" in out and "--retry-failed" in out

    assert main(["study", str(path), "--retry-failed"]) == 0
    out = capsys.readouterr().out
    assert "retrying 2 failed trial(s): t0000-r1, t0002-r0" in out
    assert main(["study", "status", str(study_dir), "--no-watch"]) == 0
    assert "--retry-failed" not in capsys.readouterr().out  # nothing left to retry
    assert [r["attempts"] for r in _rows(tmp_path, "cli")].count("2") == 2


class _FailAtEpoch(Callback):
    """Raises at the end of epoch ``epoch``, as a run that hits a bug (or OOM) part-way would."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, state: TrainState) -> None:
        if state.epoch >= self.epoch:
            raise RuntimeError(f"failed at epoch {state.epoch}")


class _FirstStep(Callback):
    """Records the step training starts at (above 0: resumed from a checkpoint)."""

    def __init__(self) -> None:
        self.step: int | None = None

    def on_train_begin(self, state: TrainState) -> None:
        self.step = state.step


@pytest.mark.usefixtures("real_data")
def test_a_real_failed_trial_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    path = write_study(tmp_path / "real.yaml", {"space": {"optimizer.lr": [0.1]}}, tmp_path / "runs",
                       name="real", train={"epochs": 3, "batch_size": 50, "checkpoint_every": 1})
    first = _FirstStep()

    def failing(config: RunConfig, run_dir: Path, callbacks: list[Callback], data_dir: str | None) -> dict[str, Any]:
        return trainlab.api.execute_trial(config, run_dir, [*callbacks, first, _FailAtEpoch(2)], data_dir)

    (stage,) = run_study(path, options=Options(echo=False), execute=failing)
    assert stage.count(TrialState.FAIL) == 1 and first.step == 0
    assert "failed at epoch 2" in stage.trials[0].user_attrs["error"]

    again = _FirstStep()

    def recording(config: RunConfig, run_dir: Path, callbacks: list[Callback], data_dir: str | None) -> dict[str, Any]:
        return trainlab.api.execute_trial(config, run_dir, [*callbacks, again], data_dir)

    (stage,) = run_study(path, options=Options(echo=False), execute=recording, retry_failed=True)
    assert stage.count(TrialState.COMPLETE) == 1
    assert again.step is not None and again.step > 0  # resumed, not started again
    assert stage.trials[0].user_attrs["result"]["status"] == "completed"
    assert stage.trials[0].user_attrs["result"]["run_dir"] == str(tmp_path / "runs" / "real" / "t0000")
