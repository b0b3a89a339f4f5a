"""Engine-neutral callbacks: one class per file, driven by both engines."""

from __future__ import annotations

from trainlab.callbacks.base import Callback, CallbackList, TrainState, flatten_rows
from trainlab.callbacks.checkpoint_trigger import CheckpointTrigger
from trainlab.callbacks.early_stopping import EarlyStopping
from trainlab.callbacks.metrics_logger import MetricsLogger
from trainlab.callbacks.reduce_on_plateau import ReduceLROnPlateau

__all__ = [
    "Callback",
    "CallbackList",
    "CheckpointTrigger",
    "EarlyStopping",
    "MetricsLogger",
    "ReduceLROnPlateau",
    "TrainState",
    "flatten_rows",
]
