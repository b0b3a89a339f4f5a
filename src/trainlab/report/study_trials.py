"""The trials table of a study report: every trial (best first within its state), with its state,
parameters, seed, objective, the model's parameter count, epochs, time and error."""

from __future__ import annotations

import math
from collections.abc import Callable

from optuna.trial import FrozenTrial, TrialState

from trainlab.report.curves import epochs_text
from trainlab.report.html import fmt
from trainlab.report.study_data import StudyData, shown, trial_key, trial_seconds, trial_value
from trainlab.studies.results import StageData, trial_summary

#: How each Optuna trial state reads in the report.
STATE_TEXT = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running",
              "WAITING": "waiting"}
# Complete trials first, then the ones that stopped early, then the ones not finished.
_STATE_ORDER = {"COMPLETE": 0, "PRUNED": 1, "FAIL": 2, "RUNNING": 3, "WAITING": 4}


def _sort_key(study: StudyData) -> Callable[[tuple[StageData, FrozenTrial]], tuple[int, int, float, int]]:
    """Stage, then state, then the objective (best first), then the trial number."""
    sign = -1.0 if study.maximize else 1.0

    def key(pair: tuple[StageData, FrozenTrial]) -> tuple[int, int, float, int]:
        stage, trial = pair
        value = sign * trial.value if trial.state == TrialState.COMPLETE and trial.value is not None else math.inf
        return (stage.index, _STATE_ORDER.get(trial.state.name, 9), value, trial.number)

    return key


def trial_table(study: StudyData, multi: bool) -> tuple[list[str], list[list[str]]]:
    """Columns and text rows of every trial of ``study``; ``multi`` adds a stage column.

    The ``params`` column (the model's parameter count) is shown only when a trial recorded one;
    a pruned trial shows the objective its run had reached when it stopped (:func:`trial_value`).
    """
    names = list(dict.fromkeys(p.name for stage in study.stages for p in stage.params))
    rows = []
    summaries = {id(trial): trial_summary(trial) for _, trial in study.trials}
    counted = any(isinstance(summary.get("params"), int) for summary in summaries.values())
    for stage, trial in sorted(study.trials, key=_sort_key(study)):
        summary = summaries[id(trial)]
        value = trial_value(trial, study.metric)
        seconds = trial_seconds(trial)
        count = [str(summary.get("params", ""))] if counted else []
        rows.append([*([stage.name] if multi else []), trial_key(trial),
                     STATE_TEXT.get(trial.state.name, trial.state.name),
                     *[shown(trial.params[n]) if n in trial.params else "" for n in names],
                     fmt(trial.user_attrs.get("seed")), f"{value:.4f}" if value is not None else "", *count,
                     epochs_text(summary),
                     f"{seconds:.1f}" if seconds is not None else "", str(trial.user_attrs.get("error") or "")])
    columns = [*(["stage"] if multi else []), "trial", "state", *names, "seed", study.metric,
               *(["params"] if counted else []), "epochs", "time (s)", "error"]
    return columns, rows


__all__ = ["STATE_TEXT", "trial_table"]
