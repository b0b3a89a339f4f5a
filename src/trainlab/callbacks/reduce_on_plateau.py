"""ReduceLROnPlateau: lower the learning rate when a monitored quantity stalls."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from trainlab.callbacks.base import Callback, TrainState, monitored_value
from trainlab.config import ReduceOnPlateauConfig, resolve_mode

# The defaults are the config's (train.reduce_on_plateau), so Python and YAML agree.
_DEFAULT = {name: field.default for name, field in ReduceOnPlateauConfig.model_fields.items()}


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` after ``patience`` evaluations without improvement.

    The engine multiplies its scheduled learning rate by ``state.lr_scale``; this callback
    lowers that scale, never letting the learning rate fall below ``min_lr``. Every default
    is that of :class:`~trainlab.config.ReduceOnPlateauConfig`.

    Args:
        monitor: the quantity watched. Default ``"val_loss"``.
        mode: ``"min"``, ``"max"`` or ``"auto"``. Default ``"auto"``.
        factor: multiplier applied on a plateau, in (0, 1). Default 0.1.
        patience: evaluations without improvement before reducing. Default 10.
        min_delta: smallest change that counts as an improvement. Default 1e-4.
        threshold_mode: ``"abs"``: better by more than ``min_delta``; ``"rel"``: better by
            more than ``min_delta`` times the best value, as PyTorch's default
            (``value < best * (1 - min_delta)`` in min mode, ``> best * (1 + min_delta)``
            in max mode). Default ``"abs"`` (Keras's rule).
        cooldown: after a reduction, the next ``cooldown - 1`` evaluations do not count
            toward ``patience`` (an improvement in them still becomes the best): the counter
            is decremented before it is checked, as in Keras, so 1 acts as 0. PyTorch's
            ``cooldown`` skips ``cooldown`` evaluations: its ``n`` is trainlab's ``n + 1``.
            Default 0.
        min_lr: the learning rate never goes below this. Default 0.

    Example:
        >>> plateau = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2)
    """

    def __init__(
        self,
        monitor: str = _DEFAULT["monitor"],
        mode: str = _DEFAULT["mode"],
        factor: float = _DEFAULT["factor"],
        patience: int = _DEFAULT["patience"],
        min_delta: float = _DEFAULT["min_delta"],
        cooldown: int = _DEFAULT["cooldown"],
        min_lr: float = _DEFAULT["min_lr"],
        threshold_mode: str = _DEFAULT["threshold_mode"],
    ) -> None:
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        if threshold_mode not in ("abs", "rel"):
            raise ValueError(f"threshold_mode must be 'abs' or 'rel', got {threshold_mode!r}")
        self.threshold_mode = threshold_mode
        self.monitor = monitor
        self.mode = resolve_mode(monitor, mode)
        self.factor = factor
        self.patience = patience
        self.min_delta = abs(min_delta)
        self.cooldown = cooldown
        self.min_lr = min_lr
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0
        self.cooldown_left = 0
        self.reductions = 0

    def on_evaluate(self, state: TrainState, rows: list[dict[str, Any]]) -> None:
        value = monitored_value(state, self.monitor, "reduce_on_plateau")
        if math.isnan(value):
            return
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if self._improved(value):
            self.best, self.wait = value, 0
            return
        if self.cooldown_left > 0:
            return
        self.wait += 1
        if self.wait >= self.patience and state.lr > self.min_lr:
            new_lr = max(state.lr * self.factor, self.min_lr)
            state.lr_scale *= new_lr / state.lr
            self.cooldown_left, self.wait = self.cooldown, 0
            self.reductions += 1

    def _improved(self, value: float) -> bool:
        if self.threshold_mode == "rel":
            if self.mode == "min":
                return value < self.best * (1.0 - self.min_delta)
            return value > self.best * (1.0 + self.min_delta)
        gain = self.best - value if self.mode == "min" else value - self.best
        return gain > self.min_delta

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "wait": self.wait,
            "cooldown_left": self.cooldown_left,
            "reductions": self.reductions,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = float(state["best"])
        self.wait = int(state["wait"])
        self.cooldown_left = int(state["cooldown_left"])
        self.reductions = int(state["reductions"])
