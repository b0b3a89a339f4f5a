"""``trainlab study`` end to end on tiny real MNIST runs: run, status, pruning, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.studies.conftest import write_study
from trainlab.cli import main

pytestmark = pytest.mark.usefixtures("real_data")


def test_study_run_then_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_study(tmp_path / "s.yaml", {"space": {"model.hidden": [[8], [16]]}, "repeats": 2},
                       tmp_path / "runs", name="cli")
    assert main(["study", str(path)]) == 0
    out = capsys.readouterr().out
    assert "t0001-r1 model.hidden=[16]: best_val_accuracy" in out and "results.md" in out
    study_dir = tmp_path / "runs" / "cli"
    for key in ("t0000-r0", "t0000-r1", "t0001-r0", "t0001-r1"):
        summary = json.loads((study_dir / key / "summary.json").read_text())
        assert summary["status"] == "completed"
    assert main(["study", "status", str(study_dir), "--no-watch"]) == 0
    out = capsys.readouterr().out
    assert "study cli" in out and "best setting of main: model.hidden=" in out
    assert main(["study", "status", str(path), "--no-watch"]) == 0  # a study file works too
    out = capsys.readouterr().out
    assert "study cli" in out and "best setting of main: model.hidden=" in out


def test_real_pruning_stops_a_clearly_worse_trial(tmp_path: Path) -> None:
    from optuna.trial import TrialState

    from trainlab.api import run_study
    from trainlab.studies import Options

    path = write_study(tmp_path / "p.yaml", {"pruner": {"type": "median", "n_startup_trials": 3},
                                             "space": {"optimizer.lr": [0.1, 0.2, 0.3, 1.0e-6]}},
                       tmp_path / "runs", name="prune", train={"epochs": 3, "batch_size": 50})
    (stage,) = run_study(path, options=Options(echo=False))
    states = {t.params["optimizer.lr"]: t.state for t in stage.trials}
    assert states == {0.1: TrialState.COMPLETE, 0.2: TrialState.COMPLETE, 0.3: TrialState.COMPLETE,
                      1e-6: TrialState.PRUNED}
    pruned = tmp_path / "runs" / "prune" / "t0003"
    summary = json.loads((pruned / "summary.json").read_text())
    assert summary["status"] == "stopped_early" and summary["stop_reason"].startswith("pruned")
    assert summary["epochs"] < 3


def test_bad_study_file_exits_2_with_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_study(tmp_path / "bad.yaml", {"space": {"optimiser.lr": [0.1]}}, tmp_path / "runs")
    assert main(["study", str(path)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "optimiser.lr" in err and "did you mean 'optimizer'" in err
    assert main(["study", "status", str(tmp_path / "nowhere"), "--no-watch"]) == 2
    assert "nowhere does not exist" in capsys.readouterr().err


def test_set_overrides_the_base_and_name_gives_a_directory_of_its_own(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_study(tmp_path / "s.yaml", {"space": {"model.hidden": [[8], [16]]}}, tmp_path / "runs",
                       name="full", train={"epochs": 3, "batch_size": 50})
    args = ["study", str(path), "--set", "train.epochs=1", "--set", "data.limit.train=300",
            "--name", "full-reduced-e1", "--workers", "2"]
    assert main(args) == 0  # the worker processes get the overrides too
    study_dir = tmp_path / "runs" / "full-reduced-e1"
    assert not (tmp_path / "runs" / "full").exists()
    for key in ("t0000", "t0001"):
        summary = json.loads((study_dir / key / "summary.json").read_text())
        assert summary["epochs"] == 1
        config = (study_dir / key / "config.yaml").read_text()
        assert "train: 300" in config
    assert "train.epochs=1" in (study_dir / "results.md").read_text()
    capsys.readouterr()
    # the same directory without the overrides is refused, not silently mixed
    assert main(["study", str(path), "--name", "full-reduced-e1"]) == 2
    err = capsys.readouterr().err
    assert "--set train.epochs=1" in err and "--name" in err
    # a bad key names itself
    assert main(["study", str(path), "--set", "train.epoch=1", "--name", "x"]) == 2
    assert "train.epoch" in capsys.readouterr().err


def test_load_study_applies_set_before_stage_overrides(tmp_path: Path) -> None:
    from trainlab.studies import load_study

    path = write_study(tmp_path / "s.yaml", {"space": {"optimizer.lr": [0.1]}}, tmp_path / "runs", name="n")
    study = load_study(path, overrides=["train.epochs=5", "optimizer.lr=0.5"], name="n-small")
    assert study.base.train.epochs == 5 and study.base.optimizer.lr == 0.5
    assert study.name == "n-small" and study.dir == tmp_path / "runs" / "n-small"
    assert study.overrides == ("train.epochs=5", "optimizer.lr=0.5")


def test_set_study_keys_change_the_study_section(tmp_path: Path) -> None:
    from trainlab.studies import load_study

    path = write_study(tmp_path / "s.yaml", {"space": {"optimizer.lr": {"loguniform": [0.01, 0.1]}},
                                             "stages": [{"name": "coarse", "sampler": "random", "n_trials": 60},
                                                        {"name": "fine", "narrow": {"top": 3}, "n_trials": 20}]},
                       tmp_path / "runs", name="n")
    study = load_study(path, overrides=["study.stages[0].n_trials=6", "train.epochs=1"], name="n-small")
    assert [s.n_trials for s in study.stages] == [6, 20] and study.base.train.epochs == 1
