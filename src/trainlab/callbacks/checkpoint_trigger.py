"""CheckpointTrigger: ask the engine for a checkpoint every N evaluations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trainlab.callbacks.base import Callback, TrainState


class CheckpointTrigger(Callback):
    """Set ``state.checkpoint_requested`` every ``every`` evaluations and at the end.

    The engine saves when it sees the flag (it knows what its checkpoint holds) and
    clears it. A checkpoint at every evaluation (the default) means a killed run loses
    at most the steps since the last evaluation.

    Args:
        every: evaluations between checkpoints. Default 1.

    Example:
        >>> trigger = CheckpointTrigger(every=5)
    """

    def __init__(self, every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.every = every
        self.evaluations = 0

    def on_evaluate(self, state: TrainState, rows: list[dict[str, Any]]) -> None:
        self.evaluations += 1
        if self.evaluations % self.every == 0 or state.stop_training:
            state.checkpoint_requested = True

    def on_train_end(self, state: TrainState) -> None:
        state.checkpoint_requested = True

    def state_dict(self) -> dict[str, Any]:
        return {"evaluations": self.evaluations}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.evaluations = int(state["evaluations"])
