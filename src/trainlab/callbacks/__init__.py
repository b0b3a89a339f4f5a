"""Engine-neutral callbacks: one class per file, driven by both engines.

The trackers (:class:`TensorBoardLogger`, :class:`MlflowLogger`) import their packages only
when a run uses them: they are optional (the ``trackers`` extra).
"""

from __future__ import annotations

from trainlab.callbacks.base import Callback, CallbackList, TrainState, flatten_rows
from trainlab.callbacks.checkpoint_trigger import CheckpointTrigger
from trainlab.callbacks.early_stopping import EarlyStopping
from trainlab.callbacks.from_config import build_callbacks
from trainlab.callbacks.metrics_logger import MetricsLogger
from trainlab.callbacks.mlflow import MlflowLogger
from trainlab.callbacks.reduce_on_plateau import ReduceLROnPlateau
from trainlab.callbacks.tensorboard import TensorBoardLogger
from trainlab.callbacks.tracker import Tracker, check_trackers, finish_trackers

__all__ = [
    "Callback",
    "CallbackList",
    "CheckpointTrigger",
    "EarlyStopping",
    "MetricsLogger",
    "MlflowLogger",
    "ReduceLROnPlateau",
    "TensorBoardLogger",
    "Tracker",
    "TrainState",
    "build_callbacks",
    "check_trackers",
    "finish_trackers",
    "flatten_rows",
]
