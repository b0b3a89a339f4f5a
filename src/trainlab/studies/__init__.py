"""Hyperparameter studies on Optuna: a base run plus a search space, run by any number of workers.

``trainlab study STUDY.yaml`` loads a study file (:func:`load_study`), plans each stage once
in the storage and runs its trials as normal run directories (:func:`run_study`, with the
trial executor its caller injects: :func:`trainlab.api.run_study` passes the API's), then
writes ``results.csv`` and ``results.md`` with mean, spread and verdicts over repeats.
"""

from __future__ import annotations

from .results import load_stages, rank_settings, stage_status, write_results
from .runner import Options, TrialExecutor, Worker, open_study_storage, run_study
from .space import Param, grid_points, narrow, parse_space, random_points
from .spec import Stage, Study, load_study
from .stats import spread, verdicts, welch_p
from .storage import open_storage, resolve_url

__all__ = [
    "Options",
    "Param",
    "Stage",
    "Study",
    "TrialExecutor",
    "Worker",
    "grid_points",
    "load_stages",
    "load_study",
    "narrow",
    "open_storage",
    "open_study_storage",
    "parse_space",
    "random_points",
    "rank_settings",
    "resolve_url",
    "run_study",
    "spread",
    "stage_status",
    "verdicts",
    "welch_p",
    "write_results",
]
