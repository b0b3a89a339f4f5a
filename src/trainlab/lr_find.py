"""The learning-rate range test (Smith 2017; fastai's ``lr_find``), for either engine.

The run's config is trained for a few hundred steps while the learning rate grows
exponentially from ``min_lr`` towards ``max_lr``: step ``s`` (from 0) uses
``min_lr * gamma**s`` with ``gamma = (max_lr / min_lr) ** (1 / steps)``, so the last step
uses ``max_lr / gamma``, one step short of ``max_lr``. The training loss of every step is
recorded, smoothed with a bias-corrected moving average, and the test stops once the
smoothed loss passes ``diverge`` times its minimum (not before its 11th step) or the loss
is not finite. The suggestion is the learning rate
where the smoothed loss falls fastest (steepest negative slope against log lr) before its
minimum.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainlab.callbacks import Callback, TrainState
from trainlab.config import RunConfig, config_to_yaml, load_config, resolve_config, with_overrides
from trainlab.errors import ConfigError, TrainingError
from trainlab.io import atomic_write_json, atomic_write_text


@dataclass
class LRFindResult:
    """The range test's curve and suggestion.

    Attributes:
        lrs: learning rate of each recorded step.
        losses: raw training loss of each step.
        smoothed: the bias-corrected moving average of ``losses``.
        suggestion: the suggested learning rate (steepest descent before the minimum).
        min_loss_lr: the learning rate at the smoothed minimum.
        run_dir: the run directory of the test (curve, plot, log).
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float
    min_loss_lr: float
    run_dir: Path

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable view."""
        return {"lrs": self.lrs, "losses": self.losses, "smoothed": self.smoothed,
                "suggestion": self.suggestion, "min_loss_lr": self.min_loss_lr,
                "run_dir": str(self.run_dir)}


class _StopOnDivergence(Callback):
    """Ends the test when the smoothed training loss exceeds ``factor`` times its minimum
    (after the first 10 evaluations), or at once when the loss is not finite."""

    def __init__(self, factor: float, beta: float) -> None:
        self.factor, self.beta = factor, beta
        self.average, self.best, self.count = 0.0, math.inf, 0

    def on_evaluate(self, state: TrainState, rows: list[dict[str, Any]]) -> None:
        loss = state.logs.get("train_loss", math.nan)
        if not math.isfinite(loss):
            state.request_stop("lr-find: the loss is not finite")
            return
        self.count += 1
        self.average = self.beta * self.average + (1 - self.beta) * loss
        smoothed = self.average / (1 - self.beta**self.count)
        self.best = min(self.best, smoothed)
        if self.count > 10 and smoothed > self.factor * self.best:
            state.request_stop("lr-find: the loss diverged")

    def state_dict(self) -> dict[str, Any]:
        return {"average": self.average, "best": self.best, "count": self.count}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.average, self.best, self.count = state["average"], state["best"], state["count"]


def smooth(values: Sequence[float], beta: float = 0.98) -> list[float]:
    """Bias-corrected exponential moving average (the first values are not pulled to 0)."""
    average, out = 0.0, []
    for i, value in enumerate(values, start=1):
        average = beta * average + (1 - beta) * value
        out.append(average / (1 - beta**i))
    return out


def suggest(lrs: Sequence[float], smoothed: Sequence[float], skip_start: int = 10) -> tuple[float, float]:
    """``(steepest-descent lr, lr at the minimum)`` of a smoothed loss curve.

    The slope is taken against log10(lr) with central differences, over the points from
    index ``min(skip_start, lowest - 2)`` (the start is noisy; never below 0) to the minimum
    at index ``lowest``. When fewer than three points are left, both values are the lr at
    the minimum.
    """
    if len(lrs) < 3:
        raise TrainingError("lr-find: fewer than 3 steps were recorded; give more --steps")
    loss = np.asarray(smoothed, dtype=np.float64)
    log_lr = np.log10(np.asarray(lrs, dtype=np.float64))
    lowest = int(np.argmin(loss))
    start = min(skip_start, max(0, lowest - 2))
    if lowest - start < 2:
        return float(lrs[lowest]), float(lrs[lowest])
    slope = np.gradient(loss[start : lowest + 1], log_lr[start : lowest + 1])
    steepest = start + int(np.argmin(slope))
    return float(lrs[steepest]), float(lrs[lowest])


def lr_find(
    config: RunConfig | str | Path,
    *,
    overrides: Sequence[str] | None = None,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    steps: int = 200,
    diverge: float = 4.0,
    beta: float = 0.98,
    data_dir: str | Path | None = None,
) -> LRFindResult:
    """Run the range test on a config and return the curve and the suggestion.

    Args:
        config: a config or its path.
        overrides: ``"a.b=value"`` strings applied to ``config`` first. Default None.
        min_lr: the first learning rate. Default 1e-7.
        max_lr: the sweep's end: the last step uses ``max_lr / gamma``, one step short of
            it (see the module docstring). Default 10.
        steps: steps from ``min_lr`` towards ``max_lr``. Default 200.
        diverge: stop once the smoothed loss exceeds this multiple of its minimum (checked
            from the 11th step on). Default 4.
        beta: smoothing of the loss curve. Default 0.98.
        data_dir: where datasets are read from. Default None.
    """
    from trainlab import api

    if not (0 < min_lr < max_lr and math.isfinite(max_lr)):
        raise ConfigError(f"lr-find: need 0 < min_lr < max_lr, both finite, got {min_lr} and {max_lr}")
    if steps < 3:
        raise ConfigError(f"lr-find: --steps must be at least 3, got {steps}")
    base = resolve_config(config, overrides)
    # Every step is an evaluation so that each step's loss is logged; the rest is switched off.
    test_config = with_overrides(base, {
        "name": f"{base.name}-lr-find",
        "train.epochs": None, "train.steps": steps, "train.eval_every": 1,
        "train.eval_on_test": False, "train.early_stopping": None, "train.reduce_on_plateau": None,
        "data.val_fraction": 0.0, "data.val_size": None,
        "optimizer.lr": min_lr,
        "schedule": {"type": "exponential", "per": "step", "gamma": (max_lr / min_lr) ** (1 / steps)},
        "output.save_checkpoint": False, "output.save_predictions": False, "output.report": False,
    }, source="lr-find")
    try:
        run = api.run(test_config, overwrite=True, run_id="lr-find", data_dir=data_dir,
                      progress=False, echo=False, callbacks=[_StopOnDivergence(diverge, beta)])
    except TrainingError:  # a NaN at high lr ends the test; the rows logged before it count
        run = api.open_run(Path(test_config.output.dir) / test_config.name / "lr-find")
    rows = [r for r in run.metrics if r.get("split") == "train" and math.isfinite(float(r["loss"]))]
    lrs = [float(r["lr"]) for r in rows]
    losses = [float(r["loss"]) for r in rows]
    smoothed = smooth(losses, beta)
    suggestion, at_min = suggest(lrs, smoothed)
    result = LRFindResult(lrs, losses, smoothed, suggestion, at_min, run.path)
    atomic_write_json(run.path / "lr_find.json", result.as_dict())
    _plot(result)
    return result


def _plot(result: LRFindResult) -> None:
    """``lr_find.png`` in the test's run directory: loss against lr (log axis)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=120)
    axes = figure.add_subplot()
    axes.plot(result.lrs, result.losses, color="#bbbbbb", linewidth=1, label="loss")
    axes.plot(result.lrs, result.smoothed, color="#0072B2", linewidth=2, label="smoothed")
    axes.axvline(result.suggestion, color="#D55E00", linestyle="--",
                 label=f"suggestion {result.suggestion:.2g}")
    axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("training loss")
    top = min(max(result.smoothed), 4 * min(result.smoothed))
    axes.set_ylim(min(result.losses) * 0.9, top * 1.1)
    axes.legend()
    figure.tight_layout()
    figure.savefig(result.run_dir / "lr_find.png")


def apply_suggestion(config_path: str | Path, suggestion: float, out: str | Path | None = None,
                     overrides: Sequence[str] | None = None) -> Path:
    """Write a copy of the config with the suggested learning rate.

    One-cycle schedules take it as their peak (``schedule.max_lr``); every other schedule
    as ``optimizer.lr``. The copy is ``<name>.lr-found.yaml`` beside the original unless
    ``out`` is given. ``overrides`` (the ``--set`` strings the test ran with) go into the
    copy too: the learning rate was found for that setup, not for the file alone.
    """
    path = Path(config_path)
    config = load_config(path, list(overrides or []))
    key = "schedule.max_lr" if config.schedule.type == "one_cycle" else "optimizer.lr"
    updated = with_overrides(config, {key: float(f"{suggestion:.3g}")}, source="lr-find --apply")
    target = Path(out) if out is not None else path.with_name(f"{path.stem}.lr-found.yaml")
    also = f" and {', '.join(overrides)}" if overrides else ""
    atomic_write_text(target, f"# {path.name}{also} with {key} from `trainlab lr-find`\n" + config_to_yaml(updated))
    return target


__all__ = ["LRFindResult", "apply_suggestion", "lr_find", "smooth", "suggest"]
