"""The training loop both engines share: it owns the run and everything the engines have in
common, so an engine supplies only its step, its evaluation, its state arrays and a loader.

:class:`TrainingLoop` plans the run length (:func:`plan_length`), builds each evaluation's
metrics rows, measures the final figures, writes the predictions (of the test split, else of
the validation split: :meth:`TrainingLoop.predictions_split`), words the error
of a NaN/inf loss, holds the part of a checkpoint both engines share (:meth:`loop_state`) and
verifies a resume (:func:`trainlab.engines.resume.verify_resume`). ``NumpyTraining`` and
``TorchTraining`` fill in the abstract hooks. The order of events is fixed here:

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

import numpy as np

from trainlab.engines.interrupts import StopSignals
from trainlab.engines.resume import resume_record, verify_resume
from trainlab.engines.run_length import plan_length
from trainlab.engines.step_log import StepLog
from trainlab.errors import TrainingError
from trainlab.io import atomic_save_npz
from trainlab.monitoring import MonitorWarnings
from trainlab.progress import ProgressReporter
from trainlab.schedules import scheduled_lr

if TYPE_CHECKING:
    from trainlab.config import RunConfig
    from trainlab.data import PreparedData
    from trainlab.engines.base import FitContext

SPLITS = ("train", "val", "test")


class TrainingLoop(ABC):
    """Drives one run; a subclass calls ``super().__init__`` before it uses the run's length or
    state, and supplies the hooks.

    Attributes:
        config: the run config.
        context: the run directory, callbacks, state and log of this run.
        state: ``context.state``, the training state the callbacks share.
        batch_size, steps_per_epoch, total_steps, eval_every: the run length
            (:class:`~trainlab.engines.run_length.RunLength`).
        labelled: whether each split (train, val, test) has labelled rows to measure (never
            the test split with ``train.final_test_eval: false``).
        test_labels: the test split's labels (None when it has none), for predictions.
        val_labels: the validation split's labels, for predictions without a labelled test split.
        train_seconds: training time so far (carried over a resume by the checkpoint).
        data_fingerprint: the prepared data's fingerprint (recorded in checkpoints).
        warnings: the layer-monitor warnings of this run (each logged once).
        progress_every: steps between progress updates. Default 10.
    """

    progress_every: int = 10
    # The clock of this session: train_seconds = seconds_before + (perf_counter() - started).
    _started: float = 0.0
    _seconds_before: float = 0.0
    _step_log: StepLog | None = None
    # The step of the checkpoint on disk that this session wrote or resumed from (None: none).
    _checkpoint_step: int | None = None

    def __init__(self, config: RunConfig, data: PreparedData, context: FitContext) -> None:
        """The part of a run both engines set up alike: its length, what the loop reads of the
        data, and the weight functions the callbacks call.

        Raises:
            ConfigError: the training split is empty.
        """
        self.config, self.context, self.state = config, context, context.state
        length = plan_length(config.train, len(data.y_train))
        self.batch_size, self.steps_per_epoch = length.batch_size, length.steps_per_epoch
        self.total_steps, self.eval_every = length.total_steps, length.eval_every
        self.test_labels = np.asarray(data.y_test) if data.y_test is not None else None
        self.val_labels = np.asarray(data.y_val)
        # train.final_test_eval: false holds the test split out of the run entirely: nothing
        # below (final figures, predictions, evaluations) may see it, as if the data had none.
        self.has_test_images = data.x_test is not None and config.train.final_test_eval
        labelled_test = self.has_test_images and self.test_labels is not None and len(self.test_labels) > 0
        self.labelled = {"train": True, "val": len(data.y_val) > 0, "test": labelled_test}
        self.train_seconds = 0.0
        self.data_fingerprint = data.fingerprint
        self.warnings = MonitorWarnings(context.log)
        self.state.total_steps, self.state.steps_per_epoch = self.total_steps, self.steps_per_epoch
        self.state.snapshot_weights = self.snapshot_weights
        self.state.restore_weights = self.restore_weights

    # -- what an engine provides ----------------------------------------------------------
    @abstractmethod
    def describe(self) -> None:
        """Log the model (and write what describes it) when a run starts afresh."""

    @abstractmethod
    def load_checkpoint(self) -> None:
        """Restore the checkpoint: :meth:`verify_checkpoint` first, the engine's own state,
        then :meth:`restore_loop_state`."""

    @abstractmethod
    def save_checkpoint(self) -> None:
        """Write :meth:`loop_state` and everything else an exact resume needs, atomically."""

    @abstractmethod
    def snapshot_weights(self) -> Any:
        """A copy of the weights evaluations use (early stopping's restore-best)."""

    @abstractmethod
    def restore_weights(self, weights: Any) -> None:
        """Put a :meth:`snapshot_weights` copy back."""

    @abstractmethod
    def shuffle(self) -> None:
        """Draw the data order of the epoch that starts now."""

    @abstractmethod
    def step(self, position: int, lr: float) -> None:
        """One update on the batch at ``position`` (0-based) of the current epoch's order."""

    @abstractmethod
    def progress_figures(self) -> dict[str, float]:
        """The progress line's ``running loss`` and ``running acc``: the means over the steps
        since the last evaluation (may raise on a NaN loss)."""

    @abstractmethod
    def interval_figures(self) -> tuple[float, float]:
        """Mean training loss and accuracy of the steps since the last evaluation; starts the
        next interval (may raise on a NaN loss)."""

    @abstractmethod
    def monitors(self) -> dict[str, float]:
        """The layer monitors (:mod:`trainlab.monitoring`) of a fixed training batch."""

    @abstractmethod
    def evaluate_split(self, split: str, final: bool = False) -> tuple[float, float]:
        """Mean data loss and accuracy of ``split`` (train, val or test, with labelled rows) in
        eval mode; ``final``: the end-of-run figures of the summary."""

    @abstractmethod
    def penalty_value(self) -> float:
        """The l1/l2 penalty of the weights evaluations use (0.0 without one)."""

    @abstractmethod
    def probabilities(self, split: str, views: bool = True) -> np.ndarray:
        """Class probabilities (N, K) float32 of ``split`` (val or test), with the weights
        evaluations use (the final evaluation's, once it has run), and the test-time views of
        ``train.tta`` unless ``views`` is False."""

    @abstractmethod
    def run_facts(self) -> dict[str, Any]:
        """What the summary says about the engine and model (engine, params, device...)."""

    @abstractmethod
    def step_loss(self) -> Any:
        """The training loss of the step just taken, for ``steps.csv`` (``train.log_steps``):
        a float, or a 0-d tensor that may stay on its device until the row is written (so
        recording a row costs no host sync)."""

    # -- shared ---------------------------------------------------------------------------
    def start(self) -> None:
        """Before the first step: restore the checkpoint when resuming (metrics rows logged
        after it are dropped), else describe the model and save the predictions before training."""
        if self.context.resume:
            self.load_checkpoint()
            self.context.run_dir.truncate_metrics(self.state.step)
            self.context.log(f"resumed at step {self.state.step} of {self.total_steps}")
        else:
            self.describe()
            self.save_predictions(initial=True)  # the confusion matrix before training

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

    def loss_error(self, loss: str, step: int) -> TrainingError:
        """The error that stops a run whose loss became ``loss`` (nan, inf...) at ``step``."""
        return TrainingError(
            f"the loss became {loss} at step {step}; training stopped. "
            f"The last good checkpoint is kept in {self.context.run_dir.path}. "
            "Try a lower optimizer.lr, train.grad_clip_norm, or batch_norm"
        )

    def evaluation_rows(self) -> list[dict[str, Any]]:
        """One metrics row per split for this evaluation: train (the interval's figures and
        the monitors), val when it has rows, test with ``train.eval_on_test``."""
        train_loss, train_accuracy = self.interval_figures()
        monitors = self.monitors()
        self.warnings.check(self.state.step, monitors)
        rows: list[dict[str, Any]] = [
            {"split": "train", "loss": train_loss, "accuracy": train_accuracy, **monitors}
        ]
        evaluated = [split for split in ("val", "test")
                     if self.labelled[split] and (split == "val" or self.config.train.eval_on_test)]
        extra = self.eval_loss_penalty() if evaluated else 0.0  # the same weights for both splits
        for split in evaluated:
            loss, accuracy = self.evaluate_split(split)
            rows.append({"split": split, "loss": loss + extra, "accuracy": accuracy})
        return rows

    def eval_loss_penalty(self) -> float:
        """What an evaluated loss (val, test, the final train pass) adds to the data loss: the
        penalty with ``regularization.in_eval_loss`` (as Keras' val_loss), else 0.0."""
        return self.penalty_value() if self.config.regularization.in_eval_loss else 0.0

    def final_metrics(self, split: str) -> tuple[float, float] | None:
        """Loss and accuracy of ``split`` (train, val or test) at the end; None when it has
        no labelled rows. The loss adds the penalty with ``regularization.in_eval_loss``."""
        if not self.labelled[split]:
            return None
        loss, accuracy = self.evaluate_split(split, final=True)
        return loss + self.eval_loss_penalty(), accuracy

    def predictions_split(self) -> str | None:
        """The split whose predictions the run saves: test when it is labelled, else val when
        it has rows (so the report can still show a confusion matrix, issue 27), else the
        unlabelled test images; None when there is none of these."""
        if self.labelled["test"]:
            return "test"
        if self.labelled["val"]:
            return "val"
        return "test" if self.has_test_images else None

    def save_predictions(self, initial: bool = False) -> None:
        """The probabilities (and labels) of :meth:`predictions_split` into the run directory's
        predictions file (``initial``: the one before training), when asked for; ``split`` (a
        0-d string array) records which split they are of."""
        split = self.predictions_split()
        if not self.config.output.save_predictions or split is None:
            return
        # Before training the net is at its initial weights: its predictions only fill the
        # "before training" confusion matrix, and train.tta's views would cost a pass each.
        arrays = {"probabilities": self.probabilities(split, views=not initial)}
        labels = self.test_labels if split == "test" else self.val_labels
        if labels is not None:
            arrays["labels"] = labels
        arrays["split"] = np.asarray(split)
        atomic_save_npz(self.context.run_dir.predictions_path(initial), arrays)

    def summary(self) -> dict[str, Any]:
        """Final figures on every split (train only with ``train.final_train_eval``), and
        ``predictions.npz`` (:meth:`save_predictions`)."""
        result: dict[str, Any] = {
            **self.run_facts(),
            "epochs": self.context.state.step / self.steps_per_epoch,
            "steps": self.context.state.step,
            "train_seconds": self.train_seconds,
            "images_per_second": self.images_per_second(),
            "test_accuracy": None,
            "test_loss": None,
        }
        for split, prefix in zip(SPLITS, ("final_train", "final_val", "test"), strict=True):
            if split == "train" and not self.config.train.final_train_eval:
                continue  # a whole pass over the training split, skipped when not asked for
            measured = self.final_metrics(split)
            if measured is not None:
                result[f"{prefix}_loss"], result[f"{prefix}_accuracy"] = measured
        self.save_predictions()
        return result

    # -- checkpoints: the part both engines hold, and the interrupt ------------------------
    def loop_state(self) -> dict[str, Any]:
        """What every checkpoint's metadata holds besides the engine's state (JSON): step,
        epoch, lr scale, training time, the callbacks' state, the config and data the run was
        made with (:func:`trainlab.engines.resume.resume_record`) and why training stopped."""
        state = self.context.state
        return {
            "step": state.step,
            "epoch": state.epoch,
            "lr_scale": state.lr_scale,
            "train_seconds": self.train_seconds,
            "callbacks": self.context.callbacks.state_dict(),
            **resume_record(self.config, self.data_fingerprint),
            "stop_reason": state.stop_reason if state.stop_training else None,
        }

    def best_weights(self) -> dict[int, Any]:
        """The best weights callbacks keep (early stopping's restore-best), by callback index."""
        return {i: callback.best_weights for i, callback in enumerate(self.context.callbacks.callbacks)
                if isinstance(getattr(callback, "best_weights", None), dict)}

    def verify_checkpoint(self, meta: Mapping[str, Any], path: Path) -> None:
        """Refuse a checkpoint of another config or other data (the one check of a resume,
        :func:`~trainlab.engines.resume.verify_resume`), then take over a stop a callback
        asked for (an early-stopped run stays stopped).

        Raises:
            ConfigError: the checkpoint was written with another config (fields named).
            DataError: it was written on other data (both fingerprints given).
        """
        verify_resume(self.context.run_dir, self.config, self.data_fingerprint, (path, meta))
        if meta.get("stop_reason"):
            self.context.state.request_stop(str(meta["stop_reason"]))

    def restore_loop_state(self, meta: Mapping[str, Any], best_weights: Mapping[int, Any]) -> None:
        """Take over a checkpoint's :meth:`loop_state` and :meth:`best_weights`.

        Raises:
            KeyError, IndexError, TypeError, ValueError: an entry is missing or malformed
                (loaders call it within :func:`trainlab.engines.resume.checkpoint_fits`).
        """
        state, callbacks = self.context.state, self.context.callbacks
        callbacks.load_state_dict(meta["callbacks"])
        for i, weights in best_weights.items():
            if not 0 <= i < len(callbacks.callbacks):
                raise IndexError(f"best weights of callback {i}, of {len(callbacks.callbacks)}")
            callback = callbacks.callbacks[i]
            if hasattr(callback, "best_weights"):
                callback.best_weights = weights
        state.step, state.epoch = int(meta["step"]), int(meta["epoch"])
        state.lr_scale = float(meta["lr_scale"])
        self.train_seconds = float(meta["train_seconds"])

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
            progress = ProgressReporter(self.total_steps, enabled=self.context.progress,
                                        steps_per_epoch=self.steps_per_epoch)
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
            progress.evaluation(state.step, rows)  # val loss and accuracy, and the best so far
            self._checkpoint_if_requested()
        if epoch_done:
            callbacks.call("on_epoch_end", state)


__all__ = ["TrainingLoop"]
