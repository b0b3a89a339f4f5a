"""The test-set leakage warning: what counts as choosing on the test split, and where it is said."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import trainlab.api as tl
from tests.helpers import write_config
from tests.studies.conftest import write_study
from trainlab.cli import main
from trainlab.config import RunConfig
from trainlab.config.leakage import (
    SelectionOnTest,
    is_test_metric,
    leakage_warning,
    objective_selection,
    pruner_selection,
    run_leakage_warning,
    run_selections,
)
from trainlab.studies import load_study
from trainlab.studies.spec import file_leakage_warning

BASE: dict[str, Any] = {"data": {"dataset": "mnist", "val_fraction": 0.1}, "model": {"type": "mlp", "hidden": [8]},
                        "engine": "numpy"}


def config(**train: Any) -> RunConfig:
    return RunConfig.from_dict({**BASE, "train": {"epochs": 2, **train}})


def test_which_monitors_choose_on_the_test_split() -> None:
    assert is_test_metric("test_loss") and not is_test_metric("val_loss") and not is_test_metric("best_val_accuracy")
    assert run_selections(config(early_stopping={"monitor": "val_loss"})) == []
    stop = run_selections(config(eval_on_test=True, early_stopping={"monitor": "test_loss"}))
    assert stop == [SelectionOnTest("train.early_stopping.monitor", "test_loss",
                                    "when to stop and which weights to keep (restore_best)")]
    (kept_last,) = run_selections(config(eval_on_test=True,
                                         early_stopping={"monitor": "test_accuracy", "restore_best": False}))
    assert kept_last.chooses == "when to stop"
    both = run_selections(config(eval_on_test=True, early_stopping={"monitor": "val_loss"},
                                 reduce_on_plateau={"monitor": "test_accuracy"}))
    assert [s.field for s in both] == ["train.reduce_on_plateau.monitor"]
    assert objective_selection("best_val_accuracy") is None and pruner_selection("val_accuracy") is None


def test_one_line_names_each_choice_once() -> None:
    assert leakage_warning([]) is None and leakage_warning([None]) is None
    assert run_leakage_warning(config()) is None
    objective = objective_selection("test_accuracy")
    stop = run_selections(config(eval_on_test=True, early_stopping={"monitor": "test_loss"}))[0]
    line = leakage_warning([objective, stop, stop, None, objective])
    assert line is not None and "\n" not in line
    assert line.count("study.objective = test_accuracy") == 1 and line.count("train.early_stopping.monitor") == 1
    assert "optimistically biased" in line and "val_" in line


def _study(tmp_path: Path, name: str, study: dict[str, Any], **run: Any) -> Path:
    return write_study(tmp_path / f"{name}.yaml", study, tmp_path / "runs", name=name, **run)


def test_a_study_chooses_on_test_by_objective_pruner_or_searched_monitor(tmp_path: Path) -> None:
    clean = _study(tmp_path, "clean", {"objective": "best_val_accuracy", "space": {"optimizer.lr": [0.1, 0.2]}})
    assert load_study(clean).leakage is None
    objective = load_study(_study(tmp_path, "obj", {"objective": "test_accuracy",
                                                    "space": {"optimizer.lr": [0.1, 0.2]}})).leakage
    assert objective is not None and "study.objective = test_accuracy chooses the best setting" in objective
    # one searched value monitors the test split: the study says so, once, for all its settings
    searched = load_study(_study(
        tmp_path, "searched",
        {"space": {"train.early_stopping.monitor": ["val_loss", "test_loss"], "optimizer.lr": [0.1, 0.2, 0.3]}},
        train={"epochs": 2, "batch_size": 50, "eval_on_test": True, "early_stopping": {"monitor": "val_loss"}}))
    assert searched.leakage is not None and searched.leakage.count("train.early_stopping.monitor = test_loss") == 1
    assert "study.objective" not in searched.leakage
    pruned = load_study(_study(tmp_path, "pruned", {"space": {"optimizer.lr": [0.1, 0.2]},
                                                   "pruner": {"type": "median", "monitor": "test_accuracy"}}))
    assert pruned.leakage is not None and "study.pruner.monitor = test_accuracy" in pruned.leakage
    staged = load_study(_study(tmp_path, "staged", {"space": {"optimizer.lr": [0.1, 0.2]}, "stages": [
        {"name": "a"}, {"name": "b", "best": True, "pruner": {"type": "median", "monitor": "test_loss"}}]}))
    assert staged.leakage is not None and "study.stages[1].pruner.monitor = test_loss" in staged.leakage


def test_validate_prints_one_warning_line_per_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean = write_config(tmp_path / "clean.yaml", tmp_path / "runs")
    leaky = write_config(tmp_path / "leaky.yaml", tmp_path / "runs",
                         train={"epochs": 2, "eval_on_test": True, "early_stopping": {"monitor": "test_loss"}})
    study = _study(tmp_path, "grid", {"objective": "test_accuracy", "space": {"optimizer.lr": [0.1, 0.2]}})
    assert file_leakage_warning(clean) is None and file_leakage_warning(leaky) is not None
    assert main(["validate", str(clean), str(leaky), str(study)]) == 0  # a warning, not an error
    captured = capsys.readouterr()
    assert captured.out.count("ok") == 3
    lines = [line for line in captured.err.splitlines() if line.startswith("warning")]
    assert len(lines) == 2 and str(leaky) in lines[0] and str(study) in lines[1]
    assert "train.early_stopping.monitor = test_loss" in lines[0] and "study.objective" in lines[1]
    assert str(clean) not in captured.err


@pytest.mark.usefixtures("real_data")
def test_run_logs_the_warning_and_its_report_shows_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path / "leaky.yaml", tmp_path / "runs",
                       data={"dataset": "mnist", "limit": {"train": 300, "val": 100, "test": 100},
                             "normalize": "scale"},
                       train={"epochs": 1, "batch_size": 50, "eval_on_test": True,
                              "early_stopping": {"monitor": "test_accuracy", "patience": 1}},
                       output={"dir": str(tmp_path / "runs"), "report": True, "save_predictions": False})
    run = tl.run(cfg, run_id="r", progress=False)
    out = capsys.readouterr().out
    assert out.count("warning: selects on the test set") == 1
    log = (run.path / "run.log").read_text()
    assert log.count("selects on the test set: train.early_stopping.monitor = test_accuracy") == 1
    html = (run.path / "report.html").read_text()
    assert "selects on the test set" in html and "optimistically biased" in html
    clean = yaml.safe_load(cfg.read_text())
    clean["train"]["early_stopping"]["monitor"] = "val_accuracy"
    clean["output"]["report"] = False
    cfg.write_text(yaml.safe_dump(clean))
    quiet = tl.run(cfg, run_id="q", progress=False, echo=False)
    assert "test set" not in (quiet.path / "run.log").read_text()
