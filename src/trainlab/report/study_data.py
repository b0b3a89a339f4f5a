"""A study directory as a study report reads it: its stages and trials from the storage,
each trial's run directory, and the settings ranked with their verdicts.

Everything statistical comes from :mod:`trainlab.studies.results` (the same numbers as
``results.md``); this module only finds the study and the trials' run directories.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from trainlab.errors import RunDirError
from trainlab.run_files import CONFIG_FILE
from trainlab.studies.results import (
    RESULTS_CSV,
    Setting,
    StageData,
    load_stages,
    rank_settings,
    summary_number,
)
from trainlab.studies.storage import JOURNAL_FILE, StorageHandle, open_storage, resolve_url

DEFAULT_ALPHA = 0.05


def is_study_dir(path: str | Path) -> bool:
    """Whether ``path`` is a study directory (a journal or results.csv, and no run config)."""
    path = Path(path)
    if not path.is_dir() or (path / CONFIG_FILE).exists():
        return False
    return (path / JOURNAL_FILE).exists() or (path / RESULTS_CSV).exists()


@dataclass
class StudyData:
    """One study of a storage, read for a report."""

    path: Path
    name: str
    stages: list[StageData]
    handle: StorageHandle
    alpha: float = DEFAULT_ALPHA

    @property
    def metric(self) -> str:
        """The objective's summary.json metric."""
        return str(self.stages[0].attrs.get("metric", "objective")) if self.stages else "objective"

    @property
    def maximize(self) -> bool:
        """Whether a higher objective is better."""
        return self.stages[0].maximize if self.stages else True

    @property
    def trials(self) -> list[tuple[StageData, FrozenTrial]]:
        """Every trial (latest attempt) with its stage."""
        return [(stage, trial) for stage in self.stages for trial in stage.trials]

    def count(self, state: TrialState) -> int:
        """Trials in ``state`` over every stage."""
        return sum(stage.count(state) for stage in self.stages)

    def ranked(self, stage: StageData) -> list[Setting]:
        """The stage's settings, best first, with mean, spread and verdict (see results.md)."""
        return rank_settings(stage, self.alpha)

    def run_dir(self, trial: FrozenTrial) -> Path | None:
        """The trial's run directory, when it exists."""
        result = trial.user_attrs.get("result") or {}
        candidates = [Path(result["run_dir"])] if result.get("run_dir") else []
        candidates.append(self.path / trial_key(trial))
        return next((c for c in candidates if (c / CONFIG_FILE).exists()), None)

    def better(self, a: float, b: float) -> bool:
        """Whether objective ``a`` is better than ``b``."""
        return a > b if self.maximize else a < b

    def best_settings(self) -> list[tuple[StageData, Setting]]:
        """Every stage's settings, best mean first across stages."""
        pairs = [(stage, s) for stage in self.stages for s in self.ranked(stage)]
        sign = -1.0 if self.maximize else 1.0
        return sorted(pairs, key=lambda p: sign * p[1].spread.mean)

    def best_trial(self, setting: Setting) -> FrozenTrial:
        """The repeat of a setting with the best objective."""
        best = setting.trials[0]
        for trial in setting.trials[1:]:
            if trial.value is not None and best.value is not None and self.better(trial.value, best.value):
                best = trial
        return best


def trial_key(trial: FrozenTrial) -> str:
    """The trial's key (``t0003-r1``), which also names its run directory; ``t{number:04d}``
    for a trial stored without one, as the study runner names it."""
    return str(trial.user_attrs.get("key", f"t{trial.number:04d}"))


def trial_seconds(trial: FrozenTrial) -> float | None:
    """Wall time of a trial: from its result, else from Optuna's start and end times."""
    seconds = (trial.user_attrs.get("result") or {}).get("seconds")
    if isinstance(seconds, int | float):
        return float(seconds)
    if trial.datetime_start and trial.datetime_complete:
        return (trial.datetime_complete - trial.datetime_start).total_seconds()
    return None


def mean_seconds(trials: list[FrozenTrial]) -> float | None:
    """Mean wall time of the trials that have one."""
    values = [s for s in (trial_seconds(t) for t in trials) if s is not None]
    return sum(values) / len(values) if values else None


def trial_value(trial: FrozenTrial, metric: str) -> float | None:
    """The objective a trial shows: its value when it completed; for any other trial, the
    ``metric`` its run's summary had reached when it stopped (a pruned trial's); else None.

    A pruner's intermediate values are never shown as the objective: they are its
    ``monitor`` (val_loss, say, for an accuracy study), negated where its direction differs.
    """
    return trial.value if trial.state == TrialState.COMPLETE else summary_number(trial, metric)


def open_study(path: str | Path, storage: str | None = None, alpha: float = DEFAULT_ALPHA) -> StudyData:
    """Open the study kept in ``path`` (its journal, or ``storage``, a database URL).

    The study whose name is the directory's name is chosen, else the only one there.

    Raises:
        RunDirError: no study storage there, or several studies and none named like the folder.
    """
    path = Path(path)
    if storage is None and not (path / JOURNAL_FILE).exists():
        raise RunDirError(f"{path}: no {JOURNAL_FILE} here; a study on a database needs --storage URL")
    handle = open_storage(resolve_url(storage, path), heartbeat=None, lock_dir=path)
    found = load_stages(handle)
    if not found:
        raise RunDirError(f"{path}: {handle.url} holds no trainlab study")
    name = path.name if path.name in found else (next(iter(found)) if len(found) == 1 else None)
    if name is None:
        raise RunDirError(f"{path}: {handle.url} holds several studies ({', '.join(sorted(found))}) and none is "
                          f"named {path.name!r}")
    return StudyData(path, name, found[name], handle, alpha)


def shown(value: Any) -> str:
    """A parameter value for a label or a table cell."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


__all__ = ["StudyData", "is_study_dir", "mean_seconds", "open_study", "shown", "trial_key",
           "trial_seconds", "trial_value"]
