"""The one place trainlab drives Optuna below its ``Study`` / ``Trial`` interface.

A worker claims the planned (WAITING) trials itself instead of calling ``Study.ask``:
``ask`` creates and samples a new trial when none is waiting, and a study here never
samples outside its plan (see :mod:`trainlab.studies.runner`). Claiming, failing and
requeueing a trial therefore go through the storage, which names trials by id, while
``Study`` and ``FrozenTrial`` show only their numbers (the id is the private ``_trial_id``,
the storage the private ``Study._storage``). The functions here bridge the two:

- with Optuna's public storage API (``BaseStorage.get_study_id_from_name``,
  ``get_trial_id_from_study_id_trial_number``, ``set_trial_state_values``), on the
  storage object trainlab opened itself (:class:`~trainlab.studies.storage.StorageHandle`);
- and in two places with what Optuna documents but does not recommend, or does not
  document: :func:`open_trial` (the ``optuna.Trial`` constructor) and :func:`rdb_engine`
  (``RDBStorage.engine``); in one with what it marks experimental: :func:`label_objective`
  (``Study.set_metric_names``, which names the objective in optuna-dashboard).

tests/studies/test_optuna_adapter.py exercises each function against the installed Optuna,
so that an upgrade that changes one of these fails that test, by name, rather than a study.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState


def trial_id(storage: BaseStorage, study_name: str, number: int) -> int:
    """The storage's id of trial ``number`` of the study ``study_name``."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)


def claim_waiting(storage: BaseStorage, study: optuna.Study) -> int | None:
    """Move one WAITING trial of ``study`` to RUNNING, atomically across workers; its id.

    None when no trial is waiting. Unlike ``Study.ask``, never creates a trial. Relies on
    ``set_trial_state_values`` returning False for RUNNING -> RUNNING (another worker
    claimed it first) and raising ``UpdateFinishedTrialError`` for a finished trial.
    """
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    if not waiting:
        return None
    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in waiting:
        tid = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        try:
            if storage.set_trial_state_values(tid, state=TrialState.RUNNING):
                return tid
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def open_trial(study: optuna.Study, claimed_id: int) -> optuna.Trial:
    """The ``optuna.Trial`` of a trial this worker claimed, to sample, prune and ``tell`` with.

    ``optuna.Trial(study, trial_id)`` is public, but its documentation says direct use "is
    not recommended" (``Study.ask`` builds it); ``ask`` cannot be used here (see above).
    """
    return optuna.Trial(study, claimed_id)


def rdb_engine(storage: BaseStorage) -> Any:
    """The SQLAlchemy engine of an ``RDBStorage`` (its ``engine`` attribute: not documented).

    The study's set-up lock is a PostgreSQL advisory lock taken on the storage's own
    connection pool, rather than on a second pool to the same database.
    """
    return storage.engine  # type: ignore[attr-defined]


def label_objective(study: optuna.Study, metric: str) -> bool:
    """Name the study's objective ``metric`` (``Study.set_metric_names``); whether it was written.

    optuna-dashboard and ``Study.trials_dataframe`` show the name instead of "Objective 0".
    ``set_metric_names`` is experimental in Optuna (a warning on every call, silenced here).
    A study already so named is left alone: every worker opens every stage, and a write
    each time would only grow the journal.
    """
    if study.metric_names == [metric]:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([metric])
    return True


__all__ = ["claim_waiting", "label_objective", "open_trial", "rdb_engine", "trial_id"]
