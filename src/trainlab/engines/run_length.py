"""How long a run is and how often it evaluates, in steps, from its ``train`` settings."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trainlab.errors import ConfigError

if TYPE_CHECKING:
    from trainlab.config import ModelConfig, RunConfig, TrainConfig

# The share of BatchNorm's starting running statistics (mean 0, variance 1) left at the end of
# a run above which the warm-up warning is given: about three time constants of the average.
BN_STALE_SHARE = 0.05


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


def has_batch_norm(model: ModelConfig) -> bool:
    """Whether the built-in model has BatchNorm layers, by the builders' rule: resnet and
    fast_cifar always do; an mlp (it has hidden layers) or a cnn (it has convs) with
    ``batch_norm``; a cnn's fc layers, when it has some, with :meth:`ModelConfig.fc_norm`.
    A custom module is not inspected (False)."""
    if model.type in ("resnet", "fast_cifar"):
        return True
    if model.type == "mlp":
        return model.batch_norm
    if model.type == "cnn":
        return model.batch_norm or (model.fc_norm() and bool(model.fc))
    return False


def batch_norm_warmup_warning(config: RunConfig, n_train: int) -> str | None:
    """A warning when the run is too short for BatchNorm's running statistics to forget their
    starting values; None otherwise.

    Evaluation normalises with the running averages, which after ``s`` steps still hold
    ``(1 - bn_momentum) ** s`` of their start. With Keras' momentum (bn_momentum 0.01) a run of
    45 steps keeps 64 % of them, and its evaluation can sit at chance while training accuracy
    climbs: seed C's batch-size study did this on 4,000 images at batch 256.

    Args:
        config: the run's config.
        n_train: examples in the training split (the run length depends on it).
    """
    model = config.model
    if not has_batch_norm(model) or model.bn_momentum >= 1.0:
        return None
    steps = plan_length(config.train, n_train).total_steps
    keep = 1.0 - model.bn_momentum
    stale = keep**steps
    if stale <= BN_STALE_SHARE:
        return None
    enough = math.ceil(math.log(BN_STALE_SHARE) / math.log(keep))
    return (f"BatchNorm's running statistics, which evaluation normalises with, will still hold "
            f"{stale * 100:.0f} % of their starting values after this run's {steps} training steps "
            f"((1 - model.bn_momentum {model.bn_momentum:g}) ** {steps}): evaluation can fall far below "
            f"training accuracy, even to chance. Train at least {enough} steps (to leave "
            f"{BN_STALE_SHARE * 100:g} %) or raise model.bn_momentum")


__all__ = ["BN_STALE_SHARE", "RunLength", "batch_norm_warmup_warning", "has_batch_norm", "plan_length"]
