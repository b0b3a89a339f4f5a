"""The callback interface both engines drive, and the training state callbacks may change.

No engine has a loop of its own: the shared training loop (:mod:`trainlab.engines.loop`)
calls :class:`CallbackList` hooks by name at fixed points, the same for both engines, and
saves and restores the callbacks' state in every checkpoint. A callback never imports an
engine: it reads :class:`TrainState` and changes it through flags (``stop_training``,
``lr_scale``, ``checkpoint_requested``) and the two weight functions the engine provides
(``snapshot_weights`` / ``restore_weights``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from trainlab.errors import ConfigError

HOOKS = ("on_train_begin", "on_evaluate", "on_epoch_end", "on_train_end")


@dataclass
class TrainState:
    """What the engine tells callbacks about training, and the flags callbacks set.

    Attributes:
        step: optimizer steps done so far.
        epoch: epochs completed so far (a float during an epoch is not used: whole epochs).
        total_steps: planned number of steps.
        steps_per_epoch: batches in one epoch.
        lr: the learning rate of the last step (after ``lr_scale``).
        lr_scale: multiplier on the scheduled learning rate; reduce-on-plateau lowers it.
        stop_training: set by a callback to end training after the current evaluation.
        stop_reason: a short sentence saying why training stopped.
        checkpoint_requested: set by the checkpoint trigger; the engine saves and clears it.
        logs: the latest evaluation flattened to ``{"val_loss": ..., "val_accuracy": ...}``.
        snapshot_weights: returns a copy of the model's weights (provided by the engine).
        restore_weights: puts such a copy back (provided by the engine).
    """

    total_steps: int = 0
    steps_per_epoch: int = 1
    step: int = 0
    epoch: int = 0
    lr: float = 0.0
    lr_scale: float = 1.0
    stop_training: bool = False
    stop_reason: str | None = None
    checkpoint_requested: bool = False
    logs: dict[str, float] = field(default_factory=dict)
    snapshot_weights: Callable[[], Any] | None = None
    restore_weights: Callable[[Any], None] | None = None

    def request_stop(self, reason: str) -> None:
        """Ask the engine to stop after this evaluation (the first reason given is kept)."""
        if not self.stop_training:
            self.stop_training = True
            self.stop_reason = reason


class Callback:
    """Base class: override the hooks you need. Each hook is called with the state.

    ``on_evaluate`` also gets the metric rows of that evaluation (one dict per split with
    ``split``, ``loss``, ``accuracy`` and any engine columns).
    """

    def on_train_begin(self, state: TrainState) -> None:
        """Called once before the first step (also when resuming)."""

    def on_evaluate(self, state: TrainState, rows: list[dict[str, Any]]) -> None:
        """Called after each evaluation, with that evaluation's metric rows."""

    def on_epoch_end(self, state: TrainState) -> None:
        """Called when an epoch's last batch is done."""

    def on_train_end(self, state: TrainState) -> None:
        """Called once after the last step, also when a callback stopped training."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state saved in checkpoints so a resumed run behaves identically."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


def flatten_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """``[{"split": "val", "loss": 1.2}]`` -> ``{"val_loss": 1.2}`` (numbers only)."""
    flat: dict[str, float] = {}
    for row in rows:
        split = row.get("split", "")
        for key, value in row.items():
            if key in ("split", "step", "epoch") or not isinstance(value, int | float):
                continue
            flat[f"{split}_{key}" if split else key] = float(value)
    return flat


class CallbackList:
    """Calls every callback's hook by name, in order, from one place."""

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks: list[Callback] = list(callbacks)

    def call(self, hook: str, state: TrainState, *args: Any) -> None:
        """Call ``hook`` on each callback; ``on_evaluate`` first refreshes ``state.logs``."""
        if hook not in HOOKS:
            raise ValueError(f"unknown callback hook {hook!r}; hooks are {', '.join(HOOKS)}")
        if hook == "on_evaluate":
            state.logs = flatten_rows(args[0])
        for callback in self.callbacks:
            getattr(callback, hook)(state, *args)

    def state_dict(self) -> dict[str, Any]:
        """Each callback's state, keyed by position and class name."""
        return {f"{i}:{type(cb).__name__}": cb.state_dict() for i, cb in enumerate(self.callbacks)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the states saved by :meth:`state_dict` (same callbacks, same order)."""
        for i, callback in enumerate(self.callbacks):
            key = f"{i}:{type(callback).__name__}"
            if key in state:
                callback.load_state_dict(state[key])


def monitored_value(state: TrainState, monitor: str, who: str) -> float:
    """The monitored quantity of the latest evaluation.

    Raises:
        ConfigError: the quantity is not measured (e.g. ``val_loss`` with no validation split).
    """
    if monitor not in state.logs:
        measured = ", ".join(sorted(state.logs)) or "nothing"
        raise ConfigError(
            f"{who}: monitor {monitor!r} is not measured in this run (measured: {measured}); "
            "choose one of those, or add the split it needs (data.val_fraction, train.eval_on_test)"
        )
    return state.logs[monitor]
