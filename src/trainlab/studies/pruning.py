"""Pruning: report each evaluation to Optuna and stop a trial its pruner gives up on."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import optuna

from trainlab.callbacks import Callback, TrainState
from trainlab.callbacks.base import monitored_value

from .spec import PrunerSpec

PRUNED_PREFIX = "pruned"


def make_pruner(spec: PrunerSpec | None) -> optuna.pruners.BasePruner:
    """The Optuna pruner a stage asks for (NopPruner when pruning is off)."""
    if spec is None:
        return optuna.pruners.NopPruner()
    if spec.type == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.n_startup_trials,
                                           n_warmup_steps=spec.n_warmup_steps)
    if spec.type == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=spec.min_resource,
                                                      reduction_factor=spec.reduction_factor)
    return optuna.pruners.HyperbandPruner(min_resource=spec.min_resource,
                                          reduction_factor=spec.reduction_factor)


class PruningCallback(Callback):
    """Reports ``monitor`` after every evaluation as the trial's intermediate value.

    Evaluations are numbered 1, 2, ... (the pruners' step), so trials with different batch
    sizes are compared evaluation by evaluation. When the pruner says so, training stops
    with a reason starting with "pruned"; the runner then ends the trial as PRUNED.

    Args:
        trial: the Optuna trial being run.
        monitor: the metric reported, e.g. ``"val_accuracy"``.
        maximize: whether higher is better for ``monitor`` (Optuna's pruners compare in the
            study's direction, so a loss monitor on an accuracy study is negated).
        study_maximizes: the direction of the study.
    """

    def __init__(self, trial: optuna.Trial, monitor: str = "val_accuracy",
                 maximize: bool = True, study_maximizes: bool = True) -> None:
        self.trial = trial
        self.monitor = monitor
        self.sign = 1.0 if maximize == study_maximizes else -1.0
        self.evaluations = 0
        self.pruned = False

    def on_evaluate(self, state: TrainState, rows: list[dict[str, Any]]) -> None:
        value = monitored_value(state, self.monitor, "study pruner")
        self.evaluations += 1
        if math.isnan(value):
            return
        self.trial.report(self.sign * value, self.evaluations)
        if self.trial.should_prune():
            self.pruned = True
            state.request_stop(f"{PRUNED_PREFIX} by the study's pruner at evaluation "
                               f"{self.evaluations} ({self.monitor} {value:.4g})")

    def state_dict(self) -> dict[str, Any]:
        return {"evaluations": self.evaluations}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.evaluations = int(state.get("evaluations", 0))


