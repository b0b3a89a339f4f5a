"""The training loop both engines share: batches in a seeded order, evaluations, callbacks,
checkpoints and progress, called from one place.

An engine subclasses :class:`TrainingLoop` and fills in what differs between NumPy and
PyTorch: how an order is drawn, what one step does, how an evaluation is measured, what
a checkpoint holds and what the summary reports. The order of events is fixed here:

    start -> on_train_begin -> [shuffle at each epoch start] -> step -> (steps.csv row)
          -> (progress) -> (evaluate -> on_evaluate -> checkpoint if requested)
          -> (on_epoch_end) -> ... -> on_train_end -> final checkpoint if requested -> summary

Every metrics row gets ``elapsed``: the training seconds at that evaluation, counted on from
the checkpoint's ``train_seconds`` when a run is resumed. With ``train.log_steps`` the loop
also writes ``steps.csv`` (see :mod:`trainlab.engines.step_log`).

Interrupts: during :meth:`TrainingLoop.run`, SIGINT (Ctrl-C) and SIGTERM stop the run before
the next step (:mod:`trainlab.engines.interrupts`); the loop then writes a checkpoint of the
step reached (unless ``output.save_checkpoint`` is off) and raises KeyboardInterrupt. A
resume from it continues as if nothing had happened: checkpoints hold the running sums of
the evaluation interval they fall in. Checkpoints also record the config and data they were
made with, which a resume verifies (:mod:`trainlab.engines.resume`).
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from trainlab.engines.interrupts import StopSignals
from trainlab.engines.resume import check_config, check_data, resume_record
from trainlab.engines.step_log import StepLog
from trainlab.progress import ProgressReporter
from trainlab.schedules import scheduled_lr

if TYPE_CHECKING:
    from trainlab.config import RunConfig
    from trainlab.engines.base import FitContext


class TrainingLoop(ABC):
    """Drives one run; subclasses set the attributes below in ``__init__``.

    Attributes:
        config: the run config.
        context: the run directory, callbacks, state and log of this run.
        batch_size: examples per step.
        steps_per_epoch: full batches in one pass over the training split.
        total_steps: the planned run length.
        eval_every: steps between evaluations.
        train_seconds: training time so far (carried over a resume by the checkpoint).
        data_fingerprint: the prepared data's fingerprint (recorded in checkpoints).
        progress_every: steps between progress updates. Default 10.
    """

    config: RunConfig
    context: FitContext
    batch_size: int
    steps_per_epoch: int
    total_steps: int
    eval_every: int
    train_seconds: float = 0.0
    data_fingerprint: str = ""
    progress_every: int = 10
    # The clock of this session: train_seconds = seconds_before + (perf_counter() - started).
    _started: float = 0.0
    _seconds_before: float = 0.0
    _step_log: StepLog | None = None
    # The step of the checkpoint on disk that this session wrote or resumed from (None: none).
    _checkpoint_step: int | None = None

    # -- what an engine provides ----------------------------------------------------------
    @abstractmethod
    def start(self) -> None:
        """Before the first step: load the checkpoint when resuming, else describe the model."""

    @abstractmethod
    def shuffle(self) -> None:
        """Draw the data order of the epoch that starts now."""

    @abstractmethod
    def step(self, position: int, lr: float) -> None:
        """One update on the batch at ``position`` (0-based) of the current epoch's order."""

    @abstractmethod
    def progress_figures(self) -> dict[str, float]:
        """Loss and accuracy for the progress line (may raise on a NaN loss)."""

    @abstractmethod
    def evaluation_rows(self) -> list[dict[str, Any]]:
        """One metrics row per split for this evaluation; resets the training interval."""

    @abstractmethod
    def save_checkpoint(self) -> None:
        """Write everything an exact resume needs, atomically."""

    @abstractmethod
    def final_metrics(self, split: str) -> tuple[float, float] | None:
        """Loss and accuracy of ``split`` (train, val or test) at the end; None when it has
        no labelled rows."""

    @abstractmethod
    def run_facts(self) -> dict[str, Any]:
        """What the summary says about the engine and model (engine, params, device...)."""

    @abstractmethod
    def save_predictions(self, filename: str) -> None:
        """Test-split probabilities (and labels) into the run directory, when asked for."""

    def step_loss(self) -> Any:
        """The training loss of the step just taken, for ``steps.csv`` (``train.log_steps``).

        A float, or a 0-d tensor that may stay on its device until the row is written. This
        default reads :meth:`progress_figures`; an engine whose loss lives on a device
        overrides it so that recording a row costs no host sync.
        """
        return self.progress_figures()["loss"]

    # -- shared ---------------------------------------------------------------------------
    def elapsed(self) -> float:
        """Training seconds so far: the checkpoint's time plus this session's."""
        return self._seconds_before + time.perf_counter() - self._started

    def learning_rate(self, step: int) -> float:
        """The scheduled learning rate at ``step`` times reduce-on-plateau's scale."""
        scheduled = scheduled_lr(
            self.config.schedule, float(self.config.optimizer.lr), step,
            total_steps=self.total_steps, steps_per_epoch=self.steps_per_epoch,
        )
        return scheduled * self.context.state.lr_scale

    def images_per_second(self) -> float:
        """Training throughput over the whole run so far."""
        return self.context.state.step * self.batch_size / max(self.train_seconds, 1e-9)

    def summary(self) -> dict[str, Any]:
        """Final figures on every split, and ``predictions.npz`` for the test split."""
        result: dict[str, Any] = {
            **self.run_facts(),
            "epochs": self.context.state.step / self.steps_per_epoch,
            "steps": self.context.state.step,
            "train_seconds": self.train_seconds,
            "images_per_second": self.images_per_second(),
            "test_accuracy": None,
            "test_loss": None,
        }
        for split, prefix in (("train", "final_train"), ("val", "final_val"), ("test", "test")):
            measured = self.final_metrics(split)
            if measured is not None:
                result[f"{prefix}_loss"], result[f"{prefix}_accuracy"] = measured
        self.save_predictions("predictions.npz")
        return result

    # -- checkpoints: what the loop adds to the engine's, and the interrupt -------------------
    def resume_record(self) -> dict[str, Any]:
        """What every checkpoint records besides the engine's state: the config and data it
        was made with (:func:`trainlab.engines.resume.resume_record`) and why training stopped."""
        state = self.context.state
        return {**resume_record(self.config, self.data_fingerprint),
                "stop_reason": state.stop_reason if state.stop_training else None}

    def verify_checkpoint(self, meta: Mapping[str, Any], path: Path) -> None:
        """Refuse a checkpoint of another config or other data (engines call it when they load
        one), then take over its :meth:`resume_record` (a stop a callback asked for).

        Raises:
            ConfigError: the checkpoint was written with another config (fields named).
            DataError: it was written on other data (both fingerprints given).
        """
        check_config(meta, self.config, path)
        check_data(meta, self.data_fingerprint, path)
        if meta.get("stop_reason"):  # an early-stopped run stays stopped
            self.context.state.request_stop(str(meta["stop_reason"]))

    def _checkpoint_if_requested(self) -> None:
        state = self.context.state
        if state.checkpoint_requested:
            if self._step_log is not None:  # every row up to the checkpoint is on disk first
                self._step_log.flush()
            self.train_seconds = self.elapsed()  # a resumed clock includes this evaluation
            self.save_checkpoint()
            state.checkpoint_requested = False
            self._checkpoint_step = state.step

    def _stop_on_signal(self, name: str) -> NoReturn:
        """Stop between two steps: checkpoint the step reached, then raise KeyboardInterrupt."""
        state = self.context.state
        self.context.log(f"{name} received: stopping at step {state.step}")
        if self.config.output.save_checkpoint and self._checkpoint_step != state.step:
            state.checkpoint_requested = True
            self._checkpoint_if_requested()
        raise KeyboardInterrupt(name)

    def _open_step_log(self) -> StepLog | None:
        """``steps.csv`` started (or truncated to the resumed step), or None when it is off."""
        every = self.config.train.log_steps
        if every is None:
            return None
        log = StepLog(self.context.run_dir.steps_path, every, self.steps_per_epoch)
        log.begin(self.context.state.step, resume=self.context.resume)
        return log

    def run(self) -> dict[str, Any]:
        """Train to the end (or until a callback stops it) and return the summary.

        Raises:
            KeyboardInterrupt: SIGINT or SIGTERM stopped the run (after a checkpoint of the
                step reached), or a second one stopped it at once.
        """
        state, callbacks = self.context.state, self.context.callbacks
        with StopSignals() as signals:
            self.start()
            self._checkpoint_step = state.step if self.context.resume else None
            self._step_log = step_log = self._open_step_log()
            callbacks.call("on_train_begin", state)
            progress = ProgressReporter(self.total_steps, enabled=self.context.progress)
            progress.start(state.step)
            self._started, self._seconds_before = time.perf_counter(), self.train_seconds
            try:
                while state.step < self.total_steps and not state.stop_training:
                    if signals.requested:
                        self._stop_on_signal(signals.requested)
                    self._train_one_step(progress)
                if signals.requested:  # before on_train_end, which a resume then calls
                    self._stop_on_signal(signals.requested)
                if step_log is not None:
                    step_log.flush()
            except BaseException:
                if step_log is not None:  # the rows up to a failure show where it went wrong
                    with contextlib.suppress(Exception):
                        step_log.flush()
                raise
            finally:
                progress.close()
                self.train_seconds = self.elapsed()
            callbacks.call("on_train_end", state)
            if state.stop_reason:
                self.context.log(state.stop_reason)
            self._checkpoint_if_requested()
            if signals.requested:
                self._stop_on_signal(signals.requested)
            # The final checkpoint holds this state: a signal may now end the summary at once.
            signals.immediate = self._checkpoint_step == state.step
            return self.summary()

    def _train_one_step(self, progress: ProgressReporter) -> None:
        """One step and what follows it: steps.csv, progress, evaluation, checkpoint, epoch end."""
        state, callbacks, step_log = self.context.state, self.context.callbacks, self._step_log
        position = state.step % self.steps_per_epoch
        if position == 0 and self.config.train.shuffle:
            self.shuffle()
        lr = self.learning_rate(state.step)
        self.step(position, lr)
        state.step += 1
        state.lr = lr
        last = state.step == self.total_steps
        epoch_done = state.step % self.steps_per_epoch == 0
        if epoch_done:
            state.epoch += 1
        if step_log is not None and step_log.due(state.step):
            step_log.record(state.step, self.step_loss(), lr, self.elapsed())
        if state.step % self.progress_every == 0 or last:
            self.train_seconds = self.elapsed()
            progress.update(state.step, **self.progress_figures(), lr=lr,
                            **{"img/s": self.images_per_second()})
            if step_log is not None:  # the device was just read: the rows cost no extra wait
                step_log.flush()
        if state.step % self.eval_every == 0 or last:
            self.train_seconds = self.elapsed()
            # elapsed first: it follows the fixed columns in metrics.csv
            rows = [{"elapsed": round(self.train_seconds, 4), **row} for row in self.evaluation_rows()]
            callbacks.call("on_evaluate", state, rows)
            self._checkpoint_if_requested()
        if epoch_done:
            callbacks.call("on_epoch_end", state)


__all__ = ["TrainingLoop"]
