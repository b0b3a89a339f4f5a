"""Selection on the test split: where a run or a study chooses by a test metric, and the one
line that warns about it.

Early stopping chooses when to stop (and, with ``restore_best``, which weights to keep),
reduce-on-plateau chooses when to lower the learning rate, a study's objective chooses the
best setting and its pruner which trials to stop. When the metric that drives the choice is
measured on the test split, the test figure of what was chosen is no longer an estimate on
unseen data: it is optimistically biased. Reproductions of reports that did this (seed A's
grid stops on test accuracy and ranks its settings by it) need to be able to, so this is a
warning, never an error; ``trainlab validate``, ``run`` and ``study`` print it and the run's
log and the study's results and report keep it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .run import RunConfig

TEST_PREFIX = "test_"


@dataclass(frozen=True)
class SelectionOnTest:
    """One choice made by a test metric: the field that asks for it, its value, what it chooses."""

    field: str
    value: str
    chooses: str

    def describe(self) -> str:
        """``train.early_stopping.monitor = test_loss chooses when to stop``."""
        return f"{self.field} = {self.value} chooses {self.chooses}"


def is_test_metric(metric: str) -> bool:
    """Whether ``metric`` (``test_loss``, ``val_accuracy``, ``best_val_accuracy``...) is
    measured on the test split."""
    return metric.startswith(TEST_PREFIX)


def run_selections(config: RunConfig) -> list[SelectionOnTest]:
    """The callbacks of a run config that choose by a test metric."""
    found = []
    stopping = config.train.early_stopping
    if stopping is not None and is_test_metric(stopping.monitor):
        what = "when to stop and which weights to keep (restore_best)" if stopping.restore_best else "when to stop"
        found.append(SelectionOnTest("train.early_stopping.monitor", stopping.monitor, what))
    plateau = config.train.reduce_on_plateau
    if plateau is not None and is_test_metric(plateau.monitor):
        found.append(SelectionOnTest("train.reduce_on_plateau.monitor", plateau.monitor,
                                     "when to lower the learning rate"))
    return found


def objective_selection(metric: str, field: str = "study.objective") -> SelectionOnTest | None:
    """The study objective's choice of the best setting, when ``metric`` is a test metric.

    Args:
        metric: the objective's summary.json metric.
        field: the field named in the warning. Default ``"study.objective"``.
    """
    return SelectionOnTest(field, metric, "the best setting") if is_test_metric(metric) else None


def pruner_selection(monitor: str, field: str = "study.pruner.monitor") -> SelectionOnTest | None:
    """A study pruner's choice of the trials it stops, when ``monitor`` is a test metric.

    Args:
        monitor: the per-evaluation metric the pruner watches.
        field: the field named in the warning. Default ``"study.pruner.monitor"``.
    """
    return SelectionOnTest(field, monitor, "which trials to stop early") if is_test_metric(monitor) else None


def leakage_warning(selections: Iterable[SelectionOnTest | None]) -> str | None:
    """One line that names every choice made on the test split and what it means; None
    when there is none. Repeated choices (the same field and value) are named once."""
    unique = list(dict.fromkeys(s for s in selections if s is not None))
    if not unique:
        return None
    return ("selects on the test set: " + "; ".join(s.describe() for s in unique)
            + ", so the test figures of what is chosen are optimistically biased (choose by a val_* metric, "
            "with data.val_fraction, to keep the test set unseen)")


def run_leakage_warning(config: RunConfig) -> str | None:
    """The warning line of a run config (None: it chooses nothing on the test split)."""
    return leakage_warning(run_selections(config))


__all__ = [
    "SelectionOnTest",
    "is_test_metric",
    "leakage_warning",
    "objective_selection",
    "pruner_selection",
    "run_leakage_warning",
    "run_selections",
]
