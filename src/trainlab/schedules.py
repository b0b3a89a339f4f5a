"""Learning-rate schedules shared by both engines: pure functions of the step.

``lr_at(step, ...)`` gives the learning rate to use at optimizer step ``step`` (0-based).
Schedules count in *units*: ``u = step`` when ``per="step"``, ``u = step // steps_per_epoch``
(completed epochs) when ``per="epoch"``; ``T`` is the run length in the same units
(``total_steps`` or ``total_steps / steps_per_epoch``). ``step_size`` and ``warmup_steps``
are in units too.

Types and formulas:
- ``constant``: ``base_lr``, after an optional linear warm-up over ``w = warmup_steps``:
  ``start_lr + (base_lr - start_lr) * u / w`` for ``u < w`` (``start_lr`` default 0).
  cosine and warmup_linear warm up the same way.
- ``step``: ``base_lr * gamma ** (u // step_size)``.
- ``exponential``: ``base_lr * gamma ** u`` (gamma 0.95 per epoch = 5 % decay per epoch).
- ``inverse_time``: ``base_lr / (1 + decay * u)``: Keras' legacy time-based decay,
  ``SGD(lr, decay=d)``, which divides by ``1 + d * iterations`` with ``iterations`` the
  updates done before this one (so ``per="step"``; the first step uses ``base_lr``).
- ``cyclical``: Smith's (2017) triangular policy between ``min_lr`` (default ``base_lr``)
  and ``max_lr``, half-cycle ``step_size``: ``c = floor(1 + u / (2 s))``,
  ``x = |u / s - 2 c + 1|``, ``lr = min_lr + (max_lr - min_lr) * max(0, 1 - x)``. With
  ``cycles`` given and no ``step_size``, ``s = T / (2 * cycles)``.
- ``one_cycle``: linear warm-up from ``max_lr / 25`` to ``max_lr`` (default ``base_lr``)
  over ``pct_start * T`` (default 0.3), then cosine annealing to ``min_lr`` (default
  ``max_lr / 1e4``) at ``T``.
- ``cosine``: after an optional linear warm-up over ``w = warmup_steps``,
  ``min_lr + (base_lr - min_lr) * (1 + cos(pi * f)) / 2`` with ``f = min(1, (u - w) / (T - w))``
  (``min_lr`` default 0).
- ``warmup_linear``: the warm-up above for ``u < w = warmup_steps`` (from ``start_lr``,
  default 0), then linearly down from ``base_lr`` to ``min_lr`` (default 0) at ``T``.
"""

from __future__ import annotations

import math
from typing import Protocol, get_args

from trainlab.config.optim import ScheduleType


class ScheduleLike(Protocol):
    """What :func:`scheduled_lr` reads: the fields of the config's ``schedule`` section."""

    type: str
    per: str | None
    step_size: float | None
    gamma: float | None
    min_lr: float | None
    max_lr: float | None
    cycles: float | None
    warmup_steps: float | None
    pct_start: float | None
    start_lr: float | None
    decay: float | None

# The schedule types the config accepts (config.optim.ScheduleType), in one place.
SCHEDULES: tuple[str, ...] = get_args(ScheduleType)


def _need(name: str, value: float | None, schedule: str) -> float:
    if value is None:
        raise ValueError(f"lr schedule {schedule!r} needs {name!r}")
    return float(value)


def lr_at(
    step: int,
    *,
    base_lr: float,
    type: str,
    total_steps: int,
    steps_per_epoch: int,
    per: str = "step",
    step_size: float | None = None,
    gamma: float | None = None,
    min_lr: float | None = None,
    max_lr: float | None = None,
    cycles: float | None = None,
    warmup_steps: float | None = None,
    pct_start: float | None = None,
    start_lr: float | None = None,
    decay: float | None = None,
) -> float:
    """Learning rate at optimizer step ``step`` (0-based); see the module docstring.

    Raises ``ValueError`` naming an unknown type or ``per``, or a missing argument.
    """
    if type not in SCHEDULES:
        raise ValueError(f"unknown lr schedule {type!r}; choose one of {', '.join(SCHEDULES)}")
    u, total = _units(step, per, total_steps, steps_per_epoch)
    warm = float(warmup_steps or 0)
    start = float(start_lr or 0.0)
    if type in ("constant", "cosine") and u < warm:
        return start + (float(base_lr) - start) * u / warm
    if type == "constant":
        return float(base_lr)
    if type == "step":
        size = _need("step_size", step_size, type)
        return base_lr * _need("gamma", gamma, type) ** (u // size)
    if type == "exponential":
        return base_lr * _need("gamma", gamma, type) ** u
    if type == "inverse_time":
        return base_lr / (1.0 + _need("decay", decay, type) * u)
    if type == "cyclical":
        return _cyclical(u, total, base_lr, min_lr, _need("max_lr", max_lr, type), step_size, cycles)
    if type == "one_cycle":
        return _one_cycle(u, total, base_lr, min_lr, max_lr, pct_start)
    if type == "cosine":
        low = 0.0 if min_lr is None else float(min_lr)
        if total <= 0:
            raise ValueError("lr schedule 'cosine' needs a positive 'total_steps'")
        frac = min(1.0, (u - warm) / max(total - warm, 1e-12))
        return low + (base_lr - low) * (1 + math.cos(math.pi * frac)) / 2
    # warmup_linear: up from start_lr to base_lr over warmup_steps, then straight down to min_lr at T
    w = _need("warmup_steps", warmup_steps, type)
    if u < w:
        return start + (float(base_lr) - start) * u / w
    low = 0.0 if min_lr is None else float(min_lr)
    frac = min(1.0, (u - w) / max(total - w, 1e-12))
    return float(base_lr) + (low - float(base_lr)) * frac


def _units(step: int, per: str, total_steps: int, steps_per_epoch: int) -> tuple[float, float]:
    """``(u, T)``: the step and the run length in the schedule's units (steps, or whole epochs)."""
    if per == "step":
        return step, float(total_steps)
    if per == "epoch":
        if not steps_per_epoch or steps_per_epoch <= 0:
            raise ValueError("per='epoch' needs a positive 'steps_per_epoch'")
        return step // steps_per_epoch, total_steps / steps_per_epoch
    raise ValueError(f"unknown per {per!r}; choose 'step' or 'epoch'")


def _cyclical(u: float, total: float, base_lr: float, min_lr: float | None, max_lr: float,
              step_size: float | None, cycles: float | None) -> float:
    """Smith's triangular policy between ``min_lr`` (default ``base_lr``) and ``max_lr``."""
    hi = max_lr
    lo = float(base_lr if min_lr is None else min_lr)
    if step_size is not None:
        s = float(step_size)
    elif cycles is not None:
        s = total / (2 * float(cycles))
    else:
        raise ValueError("lr schedule 'cyclical' needs 'step_size' (or 'cycles')")
    c = math.floor(1 + u / (2 * s))
    x = abs(u / s - 2 * c + 1)
    return lo + (hi - lo) * max(0.0, 1 - x)


def _one_cycle(u: float, total: float, base_lr: float, min_lr: float | None, max_lr: float | None,
               pct_start: float | None) -> float:
    """Linear warm-up from ``max_lr / 25`` to ``max_lr``, then cosine annealing to ``min_lr`` at ``T``."""
    peak = float(base_lr if max_lr is None else max_lr)
    low = peak / 1e4 if min_lr is None else float(min_lr)
    start = peak / 25
    warm = (0.3 if pct_start is None else float(pct_start)) * total
    if u < warm:
        return start + (peak - start) * u / warm
    frac = min(1.0, (u - warm) / max(total - warm, 1e-12))
    return low + (peak - low) * (1 + math.cos(math.pi * frac)) / 2


def scheduled_lr(
    schedule: ScheduleLike, base_lr: float, step: int, *, total_steps: int, steps_per_epoch: int
) -> float:
    """:func:`lr_at` with the fields of a config's ``schedule`` section (both engines use it)."""
    return lr_at(
        step,
        base_lr=base_lr,
        type=schedule.type,
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        per=schedule.per or "step",
        step_size=schedule.step_size,
        gamma=schedule.gamma,
        min_lr=schedule.min_lr,
        max_lr=schedule.max_lr,
        cycles=schedule.cycles,
        warmup_steps=schedule.warmup_steps,
        pct_start=schedule.pct_start,
        start_lr=getattr(schedule, "start_lr", None),
        decay=getattr(schedule, "decay", None),
    )


__all__ = ["SCHEDULES", "ScheduleLike", "lr_at", "scheduled_lr"]
