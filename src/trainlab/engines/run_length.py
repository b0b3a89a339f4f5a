"""How long a run is and how often it evaluates, in steps, from its ``train`` settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from trainlab.errors import ConfigError

if TYPE_CHECKING:
    from trainlab.config import TrainConfig


@dataclass(frozen=True)
class RunLength:
    """How long a run is and how often it evaluates, in steps.

    Attributes:
        batch_size: examples per step (``train.batch_size``, at most the training split).
        steps_per_epoch: full batches in one pass over the training split.
        total_steps: the planned run length (``train.steps``, else ``train.epochs`` passes).
        eval_every: steps between evaluations (``train.eval_every``, else one epoch).
    """

    batch_size: int
    steps_per_epoch: int
    total_steps: int
    eval_every: int


def plan_length(train: TrainConfig, n: int) -> RunLength:
    """The run length of ``train`` settings on ``n`` training examples.

    Raises:
        ConfigError: the training split is empty.
    """
    if n == 0:
        raise ConfigError("data: the training split is empty")
    batch_size = n if train.batch_size == "full" else min(int(train.batch_size), n)
    steps_per_epoch = max(1, n // batch_size)
    return RunLength(
        batch_size=batch_size,
        steps_per_epoch=steps_per_epoch,
        total_steps=train.steps or (train.epochs or 10) * steps_per_epoch,
        eval_every=train.eval_every or steps_per_epoch,
    )


__all__ = ["RunLength", "plan_length"]
