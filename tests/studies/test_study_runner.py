"""Running studies in-process with a stand-in for the training run (no data needed).

The stand-in scores a config by how close its learning rate is to 0.1 (plus seed noise)
and, when asked, plays out evaluations through the callbacks, as the engines do.
"""

from __future__ import annotations

import ast
import csv
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from optuna.trial import TrialState

import trainlab.studies as studies_package
from tests.studies.conftest import write_study
from trainlab.api import execute_trial
from trainlab.callbacks import Callback, TrainState
from trainlab.config import RunConfig
from trainlab.studies import Options, load_stages, load_study, open_study_storage, run_study
from trainlab.studies.results import RESULTS_CSV, RESULTS_MD, rank_settings


class FakeRun:
    """Scores configs without training; records every config it was given."""

    def __init__(self, interrupt_at: int | None = None, evaluations: int = 0) -> None:
        self.configs: list[RunConfig] = []
        self.interrupt_at = interrupt_at
        self.evaluations = evaluations

    def score(self, config: RunConfig) -> float:
        noise = np.random.default_rng(config.seed).normal(0, 0.002)
        return 0.9 - 0.1 * abs(math.log10(config.optimizer.lr or 1) + 1) + noise

    def __call__(self, config: RunConfig, run_dir: Path, callbacks: list[Callback],
                 data_dir: str | None) -> dict[str, Any]:
        if self.interrupt_at is not None and len(self.configs) == self.interrupt_at:
            raise KeyboardInterrupt
        self.configs.append(config)
        score = self.score(config)
        summary: dict[str, Any] = {"status": "completed", "best_val_accuracy": score, "test_accuracy": score}
        state = TrainState()
        for epoch in range(1, self.evaluations + 1):
            state.epoch, state.step = epoch, 10 * epoch
            state.logs = {"val_accuracy": score * epoch / self.evaluations}
            for callback in callbacks:
                callback.on_evaluate(state, [{"split": "val", "accuracy": state.logs["val_accuracy"]}])
            if state.stop_training:
                summary.update(status="stopped_early", stop_reason=state.stop_reason)
                break
        return summary


def _run(tmp_path: Path, study: dict[str, Any], fake: FakeRun, name: str = "s") -> list[Any]:
    path = write_study(tmp_path / f"{name}.yaml", study, tmp_path / "runs", name=name)
    return run_study(path, options=Options(echo=False), execute=fake)


def test_grid_runs_each_point_once_and_writes_results(tmp_path: Path) -> None:
    fake = FakeRun()
    stages = _run(tmp_path, {"space": {"optimizer.lr": [0.01, 0.1, 1.0],
                                       "act": {"linked": {"relu": {"model.activation": "relu"},
                                                          "tanh": {"model.activation": "tanh"}}}}}, fake)
    (stage,) = stages
    assert [t.state for t in stage.trials] == [TrialState.COMPLETE] * 6
    seen = sorted((c.optimizer.lr, c.model.activation) for c in fake.configs)
    assert seen == sorted((lr, a) for lr in (0.01, 0.1, 1.0) for a in ("relu", "tanh"))
    assert {c.output.dir for c in fake.configs} == {str(tmp_path / "runs")} and fake.configs[0].name == "s"
    rows = list(csv.DictReader((tmp_path / "runs" / "s" / RESULTS_CSV).open()))
    assert len(rows) == 6 and [r["trial"] for r in rows][:2] in (["t0002", "t0003"], ["t0003", "t0002"])
    objectives = [float(r["objective"]) for r in rows]
    assert objectives == sorted(objectives, reverse=True)
    assert {"optimizer.lr", "act", "seed", "state", "seconds", "test_accuracy"} <= set(rows[0])
    assert "| 1 | 0.1 |" in (tmp_path / "runs" / "s" / RESULTS_MD).read_text()


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_random_and_tpe_are_reproducible_under_a_seed(tmp_path: Path, sampler: str) -> None:
    study = {"sampler": sampler, "n_trials": 8, "seed": 7,
             "space": {"optimizer.lr": {"loguniform": [1e-4, 1.0]}, "train.batch_size": [32, 64]}}
    runs = []
    for name in ("a", "b"):
        fake = FakeRun()
        _run(tmp_path, study, fake, name)
        runs.append([(c.optimizer.lr, c.train.batch_size) for c in fake.configs])
    assert runs[0] == runs[1] and len(set(runs[0])) == 8
    other = FakeRun()
    _run(tmp_path, {**study, "seed": 8}, other, "c")
    assert [(c.optimizer.lr, c.train.batch_size) for c in other.configs] != runs[0]


def test_tpe_does_not_train_a_finished_setting_twice_and_counts_it_once(tmp_path: Path) -> None:
    fake = FakeRun()
    (stage,) = _run(tmp_path, {"sampler": "tpe", "n_trials": 8, "seed": 3,
                               "space": {"optimizer.lr": [0.01, 0.1], "train.batch_size": [32, 64]}}, fake)
    trained = [(c.optimizer.lr, c.train.batch_size) for c in fake.configs]
    assert len(trained) == len(set(trained)) <= 4  # each of the 4 settings trained at most once
    duplicates = [t for t in stage.trials if "duplicate_of" in t.user_attrs]
    assert len(duplicates) == 8 - len(trained) > 0
    assert all(t.state == TrialState.COMPLETE for t in stage.trials)
    by_key = {t.user_attrs["key"]: t for t in stage.trials}
    for dup in duplicates:
        first = by_key[dup.user_attrs["duplicate_of"]]
        assert dup.params == first.params and dup.value == first.value
    settings = rank_settings(stage)
    assert len(settings) == len(trained) and all(len(s.values) == 1 for s in settings)
    text = (tmp_path / "runs" / "s" / RESULTS_MD).read_text()
    assert f"{len(duplicates)} of the complete trials drew a setting that had already run" in text


def test_repeats_use_seeds_and_report_spread(tmp_path: Path) -> None:
    fake = FakeRun()
    (stage,) = _run(tmp_path, {"repeats": 3, "sampler": "tpe", "n_trials": 2,
                               "space": {"optimizer.lr": {"loguniform": [1e-3, 1.0]}}}, fake)
    keys = sorted(t.user_attrs["key"] for t in stage.trials)
    assert keys == [f"t{i:04d}-r{r}" for i in range(2) for r in range(3)]
    by_lr: dict[float, list[int]] = {}
    for c in fake.configs:
        by_lr.setdefault(c.optimizer.lr, []).append(c.seed)
    assert sorted(map(sorted, by_lr.values())) == [[0, 1, 2], [0, 1, 2]]
    text = (tmp_path / "runs" / "s" / RESULTS_MD).read_text()
    assert "95 % CI" in text and "Welch's t-test" in text


def test_coarse_to_fine_narrows_then_runs_the_best(tmp_path: Path) -> None:
    fake = FakeRun()
    study = {"space": {"optimizer.lr": {"loguniform": [1e-4, 1.0]}},
             "stages": [{"name": "coarse", "sampler": "random", "n_trials": 12},
                        {"name": "fine", "narrow": {"top": 3, "margin": 0.0}, "n_trials": 6},
                        {"name": "final", "best": True, "overrides": {"train.epochs": 5}}]}
    coarse, fine, final = _run(tmp_path, study, fake)
    best3 = sorted(coarse.trials, key=lambda t: -t.value)[:3]
    lrs = [t.params["optimizer.lr"] for t in best3]
    (space,) = fine.params
    assert math.isclose(space.low, min(lrs)) and math.isclose(space.high, max(lrs))
    assert all(space.low <= t.params["optimizer.lr"] <= space.high for t in fine.trials)
    assert len(fine.trials) == 6 and fine.attrs["sampler"] == "random"
    best_fine = max(fine.trials + best3, key=lambda t: t.value)
    (last,) = final.trials
    assert math.isclose(last.params["optimizer.lr"], best_fine.params["optimizer.lr"])
    assert fake.configs[-1].train.epochs == 5 and [c.train.epochs for c in fake.configs[:-1]] == [2] * 18
    assert [t.user_attrs["key"] for t in final.trials] == ["final-t0000"]


def test_resume_after_an_interrupt_runs_only_what_is_left(tmp_path: Path) -> None:
    path = write_study(tmp_path / "s.yaml", {"space": {"optimizer.lr": [0.01, 0.03, 0.1, 0.3, 1.0]}},
                       tmp_path / "runs", name="s")
    with pytest.raises(KeyboardInterrupt):
        run_study(path, options=Options(echo=False), execute=FakeRun(interrupt_at=2))
    study = load_study(path)
    (stage,) = load_stages(open_study_storage(study, Options()), "s")["s"]
    states = sorted(t.state.name for t in stage.trials)
    assert states == ["COMPLETE", "COMPLETE", "WAITING", "WAITING", "WAITING"]  # the interrupted one re-queued
    again = FakeRun()
    (stage,) = run_study(path, options=Options(echo=False), execute=again)
    assert len(again.configs) == 3
    assert sorted(t.user_attrs["key"] for t in stage.trials if t.state == TrialState.COMPLETE) == [
        f"t{i:04d}" for i in range(5)]
    rows = list(csv.DictReader((tmp_path / "runs" / "s" / RESULTS_CSV).open()))
    assert len(rows) == 5 and {r["state"] for r in rows} == {"COMPLETE"}
    assert sorted(r["attempts"] for r in rows) == ["1", "1", "1", "1", "2"]


def test_median_pruner_prunes_a_clearly_worse_trial(tmp_path: Path) -> None:
    fake = FakeRun(evaluations=4)
    study = {"pruner": {"type": "median", "n_startup_trials": 2},
             "space": {"optimizer.lr": [0.1, 0.11, 0.09, 1e-4]}}
    (stage,) = _run(tmp_path, study, fake)
    states = {t.params["optimizer.lr"]: t.state for t in stage.trials}
    assert states[1e-4] == TrialState.PRUNED
    assert [states[lr] for lr in (0.1, 0.11)] == [TrialState.COMPLETE] * 2
    pruned = next(t for t in stage.trials if t.state == TrialState.PRUNED)
    assert list(pruned.intermediate_values) == [1]  # stopped at its first evaluation
    assert pruned.user_attrs["result"]["status"] == "stopped_early"


def test_failed_trial_is_recorded_and_the_study_goes_on(tmp_path: Path) -> None:
    class Failing(FakeRun):
        def score(self, config: RunConfig) -> float:
            if config.optimizer.lr == 1.0:
                raise RuntimeError("loss is NaN")
            return super().score(config)

    (stage,) = _run(tmp_path, {"space": {"optimizer.lr": [0.1, 1.0, 0.01]}}, Failing())
    states = {t.params["optimizer.lr"]: t.state for t in stage.trials}
    assert states == {0.1: TrialState.COMPLETE, 1.0: TrialState.FAIL, 0.01: TrialState.COMPLETE}
    failed = next(t for t in stage.trials if t.state == TrialState.FAIL)
    assert "loss is NaN" in failed.user_attrs["error"]


def test_workers_need_an_executor_they_can_unpickle(tmp_path: Path) -> None:
    """Worker processes get the executor pickled: one that cannot be is refused up front."""
    path = write_study(tmp_path / "w.yaml", {"space": {"optimizer.lr": [0.1]}}, tmp_path / "runs", name="w")
    with pytest.raises(ValueError, match="must pickle"):
        run_study(path, workers=2, options=Options(echo=False), execute=lambda *args: {})
    assert not (tmp_path / "runs" / "w").exists()  # refused before the study was created
    assert pickle.loads(pickle.dumps(execute_trial)) is execute_trial  # the API's travels by name


def _imported_names(path: Path) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every absolute import in one file."""
    names: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return names


def test_studies_import_neither_the_api_nor_the_cli() -> None:
    """Imports flow one way (... -> studies -> api -> cli): the trial executor is injected."""
    folder = Path(studies_package.__file__).parent
    found = [f"{path.name}:{line}: {name}" for path in sorted(folder.glob("*.py"))
             for line, name in _imported_names(path)
             if name.split(".")[:2] in (["trainlab", "api"], ["trainlab", "cli"])
             or name.startswith("trainlab.cli_")]
    assert found == []


def test_an_edited_study_file_is_refused_not_silently_ignored(tmp_path: Path) -> None:
    """Re-running a study whose file changed (its space or its run config) would keep the
    finished trials as if they were of the new file: refused, naming what changed."""
    from trainlab.errors import ConfigError

    path = write_study(tmp_path / "s.yaml", {"space": {"optimizer.lr": [0.01, 0.1]}}, tmp_path / "runs", name="s")
    run_study(path, options=Options(echo=False), execute=FakeRun())
    run_study(path, options=Options(echo=False), execute=FakeRun())  # unchanged: resumes (nothing left)
    wider = write_study(tmp_path / "s.yaml", {"space": {"optimizer.lr": [0.01, 0.1, 1.0]}}, tmp_path / "runs",
                        name="s")
    with pytest.raises(ConfigError, match=r"planned with another space \(changed: optimizer.lr\)"):
        run_study(wider, options=Options(echo=False), execute=FakeRun())
    import yaml

    data = yaml.safe_load(path.read_text())
    data["study"]["space"] = {"optimizer.lr": [0.01, 0.1]}
    data["train"] = {**data.get("train", {}), "batch_size": 7}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"planned from another run config: train.batch_size: \d+ -> 7"):
        run_study(path, options=Options(echo=False), execute=FakeRun())
    # a new name is a study of its own
    (stage,) = run_study(load_study(path, name="s2"), options=Options(echo=False), execute=FakeRun())
    assert stage.count(TrialState.COMPLETE) == 2
