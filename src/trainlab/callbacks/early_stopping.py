"""EarlyStopping: stop when a monitored quantity stops improving."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from trainlab.callbacks.base import Callback, TrainState, monitored_value
from trainlab.config import EarlyStoppingConfig, resolve_mode
from trainlab.config.train import DEFAULT_PATIENCE

# The defaults are the config's (train.early_stopping), so Python and YAML agree.
_DEFAULT = {name: field.default for name, field in EarlyStoppingConfig.model_fields.items()}


class EarlyStopping(Callback):
    """Stop training when ``monitor`` has not improved for ``patience`` evaluations.

    Two rules, either of which stops the run:

    - patience: no improvement larger than ``min_delta`` over the best value for
      ``patience`` evaluations in a row (Keras' rule);
    - moving window (when ``window`` is set): the latest value improves on the mean of the
      previous ``window`` values by less than ``threshold`` (seed study A: "test accuracy
      minus the moving mean of the last 10 < 1e-4").

    ``patience`` None means 5 (:data:`~trainlab.config.train.DEFAULT_PATIENCE`) without a
    window and off with one: a window alone uses only the moving-window rule. Neither rule
    fires before ``start_after`` steps. Every default is that of
    :class:`~trainlab.config.EarlyStoppingConfig`.

    Args:
        monitor: the quantity, e.g. ``"val_loss"`` or ``"val_accuracy"``. Default ``"val_loss"``.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (:func:`~trainlab.config.resolve_mode`: min
            for losses and times, max otherwise). Default ``"auto"``.
        patience: evaluations without improvement before stopping. Default None (see above).
        min_delta: smallest change that counts as an improvement. Default 0.
        restore_best: put back the weights of the best evaluation when training ends.
            Default True.
        window: length of the moving window rule; None disables it. Default None.
        threshold: the moving-window rule's minimum improvement. Default 0.
        start_after: steps before either rule may stop training. Default 0.

    Example:
        >>> stopper = EarlyStopping(monitor="val_accuracy", patience=3, restore_best=False)
    """

    def __init__(
        self,
        monitor: str = _DEFAULT["monitor"],
        mode: str = _DEFAULT["mode"],
        patience: int | None = _DEFAULT["patience"],
        min_delta: float = _DEFAULT["min_delta"],
        restore_best: bool = _DEFAULT["restore_best"],
        window: int | None = _DEFAULT["window"],
        threshold: float = _DEFAULT["threshold"],
        start_after: int = _DEFAULT["start_after"],
    ) -> None:
        if patience is None and window is None:
            patience = DEFAULT_PATIENCE
        if patience is not None and patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.monitor = monitor
        self.mode = resolve_mode(monitor, mode)
        self.patience = patience
        self.min_delta = abs(min_delta)
        self.restore_best = restore_best
        self.window = window
        self.threshold = threshold
        self.start_after = start_after
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_step: int | None = None
        self.wait = 0
        self.recent: list[float] = []
        self.best_weights: Any = None

    def _gain(self, value: float, reference: float) -> float:
        """How much ``value`` improves on ``reference`` (positive is better)."""
        return reference - value if self.mode == "min" else value - reference

    def on_evaluate(self, state: TrainState, rows: list[dict[str, Any]]) -> None:
        value = monitored_value(state, self.monitor, "early_stopping")
        if math.isnan(value):
            return
        if self._gain(value, self.best) > self.min_delta or self.best_step is None:
            self.best, self.best_step, self.wait = value, state.step, 0
            if self.restore_best and state.snapshot_weights is not None:
                self.best_weights = state.snapshot_weights()
        else:
            self.wait += 1
        previous = self.recent[-self.window :] if self.window else []
        self.recent = ([*self.recent, value])[-(self.window or 1) :]
        if state.step < self.start_after:
            return
        if self.patience is not None and self.wait >= self.patience and self.wait > 0:
            state.request_stop(
                f"early stopping: {self.monitor} did not improve for {self.wait} evaluations "
                f"(best {self.best:.6g} at step {self.best_step})"
            )
        elif self.window and len(previous) == self.window:
            moving_mean = sum(previous) / len(previous)
            gain = self._gain(value, moving_mean)
            if gain < self.threshold:
                state.request_stop(
                    f"early stopping: {self.monitor} {value:.6g} improves on the mean of the last "
                    f"{self.window} evaluations ({moving_mean:.6g}) by {gain:.3g} < {self.threshold:g}"
                )

    def on_train_end(self, state: TrainState) -> None:
        if self.restore_best and self.best_weights is not None and state.restore_weights is not None:
            state.restore_weights(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_step": self.best_step,
            "wait": self.wait,
            "recent": list(self.recent),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = float(state["best"])
        self.best_step = state["best_step"]
        self.wait = int(state["wait"])
        self.recent = [float(v) for v in state["recent"]]
