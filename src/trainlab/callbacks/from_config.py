"""The callbacks a run config asks for, in the order they must run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from trainlab.callbacks.base import Callback, CallbackList, TrainState
from trainlab.callbacks.checkpoint_trigger import CheckpointTrigger
from trainlab.callbacks.early_stopping import EarlyStopping
from trainlab.callbacks.metrics_logger import MetricsLogger
from trainlab.callbacks.mlflow import MlflowLogger
from trainlab.callbacks.reduce_on_plateau import ReduceLROnPlateau
from trainlab.callbacks.tensorboard import TensorBoardLogger

if TYPE_CHECKING:
    from trainlab.config import RunConfig
    from trainlab.run_files import RunDir


def build_callbacks(config: RunConfig, run_dir: RunDir, extra: Sequence[Callback] = ()) -> list[Callback]:
    """The callbacks a config asks for, then ``extra``, in the order they must run.

    The logger runs first (so a row is on disk before anything decides to stop), then the
    trackers (``output.tensorboard``, ``output.mlflow``), and the checkpoint trigger last (so
    it sees a stop request made by the others).
    """
    train = config.train
    callbacks: list[Callback] = [MetricsLogger(run_dir)]
    if config.output.tensorboard:
        callbacks.append(TensorBoardLogger(run_dir))
    if config.output.mlflow is not None:
        callbacks.append(MlflowLogger(config, run_dir))
    # The config sections carry exactly the callbacks' arguments, under the same names.
    if train.early_stopping is not None:
        callbacks.append(EarlyStopping(**train.early_stopping.model_dump()))
    if train.reduce_on_plateau is not None:
        callbacks.append(ReduceLROnPlateau(**train.reduce_on_plateau.model_dump()))
    callbacks.extend(extra)
    if config.output.save_checkpoint:
        callbacks.append(CheckpointTrigger(every=train.checkpoint_every or 1))
    return callbacks


class StartWatch(CallbackList):
    """The run's callbacks, noting whether training began: ``on_train_begin`` comes once the
    engine has built its model and loaded any checkpoint, just before the first step."""

    began = False

    def call(self, hook: str, state: TrainState, *args: Any) -> None:
        if hook == "on_train_begin":
            self.began = True
        super().call(hook, state, *args)


__all__ = ["StartWatch", "build_callbacks"]
