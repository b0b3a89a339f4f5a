"""Issue 27's report details, on synthetic studies and on the session's real runs: pruned
trials in whole epochs, study legends that name their parameters, no panel for a constant
learning rate, and 3x3 first-layer filters drawn as their signed weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState

from tests.report.conftest import ReportRuns
from trainlab.report import study_figures as sfigs
from trainlab.report.curves import epochs_text
from trainlab.report.html import render_report
from trainlab.report.study_data import StudyData, trial_key, trial_value
from trainlab.report.study_report import StudyReport, curve_label
from trainlab.report.study_trials import trial_table
from trainlab.run_files import CONFIG_FILE
from trainlab.studies.results import StageData
from trainlab.studies.space import Param

LR = Param("optimizer.lr", "loguniform", low=1e-3, high=1.0)
BN = Param("bn", "linked", values=("before", "after"), links={"before": {"model.bn": "before"},
                                                                "after": {"model.bn": "after"}})
DISTRIBUTIONS = {LR.name: FloatDistribution(1e-3, 1.0, log=True), BN.name: CategoricalDistribution(["before", "after"])}


def _trial(number: int, state: TrialState, summary: dict[str, Any], lr: float = 0.01) -> FrozenTrial:
    """A trial as a study stores it: its key, seed and result summary in the user attributes."""
    complete = state == TrialState.COMPLETE
    return optuna.trial.create_trial(
        state=state, value=0.5 if complete else None, params={LR.name: lr, BN.name: "before"},
        distributions=DISTRIBUTIONS, intermediate_values={} if complete else {160: 0.4},
        user_attrs={"key": f"t{number:04d}-r0", "seed": 0, "result": {"summary": summary}})


def _study(tmp_path: Path, trials: list[FrozenTrial]) -> StudyData:
    attrs = {"space": [LR.to_dict(), BN.to_dict()], "metric": "best_val_accuracy", "direction": "maximize"}
    # The trial table reads the stored trials only: no storage handle is needed.
    return StudyData(tmp_path, "s", [StageData("main", "s", 0, attrs, trials)], handle=None)  # type: ignore[arg-type]


def test_epochs_are_whole_numbers() -> None:
    assert epochs_text({"epochs": 3.0, "steps": 180}) == "3"
    assert epochs_text({"epochs": 160 / 60, "steps": 160}) == "2 (+40 steps)"  # pruned in its third epoch
    assert epochs_text({"epochs": 120 / 60 * (1 + 1e-12), "steps": 120}) == "2"  # float rounding is whole
    assert epochs_text({"epochs": 0.5}) == "0"
    assert epochs_text({}) == ""


def test_trial_table_shows_a_pruned_trial_in_whole_epochs(tmp_path: Path) -> None:
    trials = [_trial(0, TrialState.COMPLETE, {"epochs": 3.0, "steps": 180}),
              _trial(1, TrialState.PRUNED, {"epochs": 160 / 60, "steps": 160}, lr=0.1)]
    html = render_report("t", [StudyReport(_study(tmp_path, trials)).trials()])
    assert ">2 (+40 steps)</td>" in html and "2.667" not in html
    assert "whole epochs it completed" in html



def test_a_pruned_trial_shows_its_objective_not_the_pruners_monitor(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # a val_loss pruner on an accuracy study reports -val_loss: never show it as the accuracy
    pruned = optuna.trial.create_trial(
        state=TrialState.PRUNED, params={LR.name: 0.1, BN.name: "before"}, distributions=DISTRIBUTIONS,
        intermediate_values={1: -1.3456, 2: -1.2345},
        user_attrs={"key": "t0001-r0", "seed": 0, "result": {"summary": {"best_val_accuracy": 0.4125}}})
    silent = optuna.trial.create_trial(state=TrialState.PRUNED, params={LR.name: 0.3, BN.name: "before"},
                                       distributions=DISTRIBUTIONS, intermediate_values={1: -2.5},
                                       user_attrs={"key": "t0002-r0", "seed": 0})
    study = _study(tmp_path, [_trial(0, TrialState.COMPLETE, {}), pruned, silent])
    assert [trial_value(t, study.metric) for _, t in study.trials] == [0.5, 0.4125, None]
    columns, rows = trial_table(study, multi=False)
    shown_values = {row[columns.index("trial")]: row[columns.index(study.metric)] for row in rows}
    assert shown_values == {"t0000-r0": "0.5000", "t0001-r0": "0.4125", "t0002-r0": ""}
    plotted: dict[str, list[tuple[float, float | None]]] = {}
    draw = sfigs.numeric_effect

    def spy(name: str, points: list[sfigs.Point], *args: Any) -> Any:
        plotted[name] = [(p.value, p.objective) for p in points]
        return draw(name, points, *args)

    monkeypatch.setattr(sfigs, "numeric_effect", spy)
    html = render_report("t", [StudyReport(study).parameters()])
    assert 'id="fig-param_main_optimizer_lr"' in html and "could not be drawn" not in html
    assert sorted(plotted[LR.name]) == [(0.01, 0.5), (0.1, 0.4125)]  # each its objective; the silent one skipped

def test_legends_name_their_parameters() -> None:
    complete = _trial(3, TrialState.COMPLETE, {})
    assert curve_label(complete) == "t0003-r0: optimizer.lr=0.01, bn=before"
    assert curve_label(_trial(4, TrialState.PRUNED, {}, lr=0.1)) == "t0004-r0: optimizer.lr=0.1, bn=before (pruned)"
    rows = [{"step": s, "split": "val", "accuracy": s / 200, "loss": 1 / s} for s in (60, 120, 160)]
    fig = sfigs.overlaid_curves([sfigs.Curve(curve_label(complete), rows, 60.0)])
    assert fig is not None
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [curve_label(complete)]
    ax = fig.axes[0]
    ax.figure.canvas.draw()  # ticks are placed when drawn
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)  # epochs 1 .. 2.67: no 1.5, 2.5


def test_overlaid_curves_legend_names_a_run_without_validation_rows() -> None:
    val = [{"step": s, "split": "val", "accuracy": s / 200, "loss": 1 / s} for s in (60, 120)]
    train_only = [{"step": s, "split": "train", "loss": 1 / s} for s in (60, 120)]
    fig = sfigs.overlaid_curves([sfigs.Curve("with val", val, 60.0), sfigs.Curve("train only", train_only, 60.0)])
    assert fig is not None
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["with val", "train only"]


def test_trial_key_without_a_stored_key_names_the_run_directory(tmp_path: Path) -> None:
    trial = optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={})
    trial.number = 7
    assert trial_key(trial) == "t0007"  # the study runner's name for the trial's run directory
    run = tmp_path / "t0007"
    run.mkdir()
    (run / CONFIG_FILE).write_text("name: s\n", encoding="utf-8")
    assert _study(tmp_path, [trial]).run_dir(trial) == run


def _report(path: Path) -> str:
    return (path / "report.html").read_text(encoding="utf-8")


def test_run_reports_state_a_constant_learning_rate(report_runs: ReportRuns) -> None:
    text = _report(report_runs.linear)  # plain SGD at 0.01, no schedule
    assert "Learning rate 0.01 (constant), so it has no panel." in text
    svg = (report_runs.linear / "figures" / "learning_curves.svg").read_text(encoding="utf-8")
    assert "learning rate 0.01 (constant)" in svg


def test_torch_report_draws_3x3_filters_as_signed_weights(report_runs: ReportRuns) -> None:
    text = _report(report_runs.torch_cnn)  # model.conv uses the default 3x3 kernel
    assert "3x3 kernels are too small to read as image templates" in text
    assert (report_runs.torch_cnn / "figures" / "weight_templates.png").exists()
    assert "rows of the first dense layer" in _report(report_runs.mlp)  # an MLP keeps its image templates


def test_reliability_caption_states_the_max_gap_rule(report_runs: ReportRuns) -> None:
    text = _report(report_runs.mlp)  # 1000 test images: bins of at least 10
    assert "The max gap in the title is over the bins with at least 10 examples" in text
