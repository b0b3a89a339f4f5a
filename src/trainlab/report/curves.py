"""Curves against epochs, optimizer steps or training time: the per-step training loss of
``steps.csv``, a run's learning curves against its elapsed training time, and the overlaid
curves of ``trainlab compare --x epoch|step|time``.

Time is the run's own clock (the ``elapsed`` column: seconds of training, continued across a
resume), shown in seconds, minutes or hours by its range. Runs written before that column
existed simply have no points on a time axis. Same style and palette as :mod:`.figures`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from trainlab.report.figures import PALETTE, SPLIT_STYLE, new_figure, styled

#: The x axes ``trainlab compare --x`` accepts.
X_AXES = ("epoch", "step", "time")
LINESTYLES = ("-", "--", ":", "-.")
SMOOTH_POINTS = 50  # a running mean over ~1/50 of the logged steps keeps the trend readable


@dataclass
class RunCurve:
    """One run's rows and label: ``metrics`` (metrics.csv), ``steps`` (steps.csv) and its
    steps per epoch (None when unknown: an epoch axis then falls back to steps)."""

    label: str
    metrics: Sequence[Mapping[str, Any]]
    steps: Sequence[Mapping[str, float]] = field(default_factory=list)
    steps_per_epoch: float | None = None

    def has_time(self) -> bool:
        """Whether its metrics rows have the ``elapsed`` column (runs before it do not)."""
        return any(_number(row.get("elapsed")) for row in self.metrics)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def epochs_text(summary: Mapping[str, Any]) -> str:
    """The epochs a run trained, in whole numbers: ``3``, or ``2 (+160 steps)`` for a run that
    stopped mid-epoch (pruned, or stopped early), whose summary's ``epochs`` is a fraction
    (steps / steps per epoch). Empty when the summary has no epochs."""
    epochs, steps = summary.get("epochs"), summary.get("steps")
    if not _number(epochs) or not math.isfinite(epochs):
        return ""
    if abs(epochs - round(epochs)) < 1e-6:  # whole, up to the rounding of steps / steps per epoch
        return str(round(epochs))
    whole = math.floor(epochs)
    if not _number(steps) or epochs <= 0:
        return str(whole)
    extra = round(steps - whole * steps / epochs)  # steps into the unfinished epoch
    return f"{whole} (+{extra:,} steps)"


def integer_ticks(ax: Axes) -> None:
    """Whole-number ticks on ``ax``'s x axis (epochs: a pruned run ends between two)."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def legend_columns(labels: Sequence[str], width_chars: int = 150) -> int:
    """Columns of a legend below a figure about ``width_chars`` characters wide: up to 4, fewer
    when the labels are long (runs labelled with their parameters)."""
    longest = max((len(label) for label in labels), default=1)
    return max(1, min(4, len(labels), width_chars // max(1, longest)))


def time_unit(seconds: float) -> tuple[float, str]:
    """Divisor and name of the unit that suits a time axis running to ``seconds``."""
    if seconds <= 180:
        return 1.0, "s"
    if seconds <= 3 * 3600:
        return 60.0, "min"
    return 3600.0, "h"


def metric_xy(curve: RunCurve, column: str, split: str, x: str) -> tuple[np.ndarray, np.ndarray]:
    """``column`` of ``split``'s metrics rows against ``x`` (epoch, step or time in seconds);
    rows without a value (or, for time, without ``elapsed``) are left out."""
    pairs = []
    for row in curve.metrics:
        if row.get("split") != split or not _number(row.get(column)) or not _number(row.get("step")):
            continue
        if x == "time":
            if not _number(row.get("elapsed")):
                continue
            position = float(row["elapsed"])
        elif x == "epoch" and curve.steps_per_epoch:
            position = float(row["step"]) / curve.steps_per_epoch
        else:
            position = float(row["step"])
        pairs.append((position, float(row[column])))
    if not pairs:
        return np.zeros(0), np.zeros(0)
    xs, ys = zip(*pairs, strict=True)
    return np.asarray(xs), np.asarray(ys)


def step_xy(rows: Sequence[Mapping[str, float]], x: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-step losses of ``steps.csv`` rows against ``x`` (epoch, step or time in seconds)."""
    column = {"time": "elapsed", "epoch": "epoch"}.get(x, "step")
    pairs = [(float(r[column]), float(r["loss"])) for r in rows if np.isfinite(r["loss"])]
    if not pairs:
        return np.zeros(0), np.zeros(0)
    xs, ys = zip(*pairs, strict=True)
    return np.asarray(xs), np.asarray(ys)


def running_mean(x: np.ndarray, y: np.ndarray, points: int = SMOOTH_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """The running mean of ``y`` over ``len(y) // points`` values (unchanged when that is < 2),
    each at the x of its window's last value."""
    window = len(y) // points
    if window < 2:
        return x, y
    return x[window - 1 :], np.convolve(y, np.ones(window) / window, mode="valid")


def _log_if_wide(ax: Axes, values: Sequence[np.ndarray]) -> None:
    positive = [v for array in values for v in array if np.isfinite(v) and v > 0]
    if positive and max(positive) / min(positive) > 20:  # log only when the values span decades
        ax.set_yscale("log")


@styled
def curves_against_time(metrics: Sequence[Mapping[str, Any]]) -> Figure | None:
    """Loss and accuracy of every split against training time (None without ``elapsed``)."""
    curve = RunCurve("run", metrics)
    if not curve.has_time():
        return None
    end = max(float(r["elapsed"]) for r in metrics if _number(r.get("elapsed")))
    scale, unit = time_unit(end)
    fig = new_figure(8, 3.2)
    axes = fig.subplots(1, 2)
    for ax, column in zip(axes, ("loss", "accuracy"), strict=True):
        for split, line_style in SPLIT_STYLE.items():
            x, y = metric_xy(curve, column, split, "time")
            if len(x):
                ax.plot(x / scale, y, label=split, marker="o" if len(x) <= 30 else None, markersize=3,
                        **line_style)
        ax.set_title(f"{column} against training time")
        ax.set_xlabel(f"training time ({unit})")
    axes[0].legend(loc="best")
    axes[1].set_ylim(bottom=0.0, top=1.0)
    return fig


@styled
def step_losses(rows: Sequence[Mapping[str, float]]) -> Figure | None:
    """The training loss of every logged step (faint) and its running mean, against steps,
    with epochs on the top axis. None when no row has a finite loss."""
    x, y = step_xy(rows, "step")
    if not len(x):
        return None
    fig = new_figure(8, 3.2)
    ax = fig.subplots()
    smooth_x, smooth_y = running_mean(x, y)
    smoothed = len(smooth_x) < len(x)
    ax.plot(x, y, color=PALETTE[0], linewidth=0.7, alpha=0.45 if smoothed else 1.0,
            label="loss of the step's batch")
    if smoothed:
        ax.plot(smooth_x, smooth_y, color=PALETTE[3], linewidth=1.6,
                label=f"running mean of {len(x) - len(smooth_x) + 1} logged steps")
    last = rows[-1]
    if last["epoch"] > 0:  # a top axis in epochs: steps per epoch from the rows themselves
        per_epoch = last["step"] / last["epoch"]
        top = ax.secondary_xaxis("top", functions=(lambda s: s / per_epoch, lambda e: e * per_epoch))
        top.set_xlabel("epoch")
    _log_if_wide(ax, [y])
    ax.set_xlabel("step")
    ax.set_title("training loss at each logged step")
    ax.legend(loc="best")
    return fig


def axis_label(x: str, unit: str = "s") -> str:
    """The label of an x axis: ``epoch``, ``step``, or ``training time (unit)`` for ``time``."""
    return {"time": f"training time ({unit})", "epoch": "epoch"}.get(x, "step")


def resolve_axis(x: str, curves: Sequence[RunCurve]) -> str:
    """``x`` itself, except that ``epoch`` becomes ``step`` when a run's steps per epoch is
    unknown (its curves could not be lined up with the others)."""
    if x == "epoch" and not all(curve.steps_per_epoch for curve in curves):
        return "step"
    return x


def _style(index: int) -> dict[str, Any]:
    return {"color": PALETTE[index % len(PALETTE)],
            "linestyle": LINESTYLES[(index // len(PALETTE) + index) % len(LINESTYLES)]}


def _time_scale(curves: Sequence[RunCurve], steps: bool) -> tuple[float, str]:
    ends = [float(r["elapsed"]) for c in curves for r in (c.steps if steps else c.metrics)
            if _number(r.get("elapsed"))]
    return time_unit(max(ends, default=0.0))


@styled
def overlaid_curves(curves: Sequence[RunCurve], x: str = "epoch") -> Figure | None:
    """Validation accuracy, validation loss and training loss of several runs on shared axes,
    against ``x``: ``epoch`` (``step`` when a run's steps per epoch is unknown), ``step``
    or ``time``. None when no run has a point to draw.
    """
    axis = resolve_axis(x, curves)
    scale, unit = _time_scale(curves, steps=False) if axis == "time" else (1.0, "")
    panels = (("accuracy", "val", "validation accuracy"), ("loss", "val", "validation loss"),
              ("loss", "train", "training loss"))
    drawn = [[metric_xy(curve, column, split, axis) for column, split, _ in panels] for curve in curves]
    if not any(len(x_values) for per_run in drawn for x_values, _ in per_run):
        return None
    fig = new_figure(10, 3.6)
    axes = fig.subplots(1, 3)
    legend: dict[str, Any] = {}  # one entry per run: its first line, in whichever panel it has points
    for index, (curve, per_run) in enumerate(zip(curves, drawn, strict=True)):
        for ax, (x_values, y_values) in zip(axes, per_run, strict=True):
            if len(x_values):
                (line,) = ax.plot(x_values / scale, y_values, marker="o" if len(x_values) <= 20 else None,
                                  markersize=2.5, **_style(index))
                legend.setdefault(curve.label, line)
    for ax, (_, _, title) in zip(axes, panels, strict=True):
        ax.set_title(title)
        ax.set_xlabel(axis_label(axis, unit))
        if axis == "epoch":
            integer_ticks(ax)
    fig.legend(list(legend.values()), list(legend), loc="outside lower center", ncols=legend_columns(list(legend)),
               fontsize=7)
    return fig


@styled
def overlaid_step_losses(curves: Sequence[RunCurve], x: str = "epoch") -> Figure | None:
    """The per-step training loss (``steps.csv``, as a running mean) of several runs against
    ``x`` (epoch, step or time). None when no run logged steps."""
    with_steps = [curve for curve in curves if curve.steps]
    if not with_steps:
        return None
    # No fallback from epochs to steps here: steps.csv rows carry their own epoch.
    scale, unit = _time_scale(with_steps, steps=True) if x == "time" else (1.0, "")
    fig = new_figure(8, 3.4)
    ax = fig.subplots()
    drawn = []
    for index, curve in enumerate(curves):
        x_values, y_values = step_xy(curve.steps, x)
        if not len(x_values):
            continue
        smooth_x, smooth_y = running_mean(x_values, y_values)
        ax.plot(smooth_x / scale, smooth_y, label=curve.label, linewidth=1.2, **_style(index))
        drawn.append(smooth_y)
    _log_if_wide(ax, drawn)
    ax.set_xlabel(axis_label(x, unit))
    ax.set_title("training loss at each logged step (running mean)")
    ax.legend(loc="best", fontsize=7)
    return fig


__all__ = [
    "X_AXES",
    "RunCurve",
    "axis_label",
    "curves_against_time",
    "epochs_text",
    "integer_ticks",
    "legend_columns",
    "metric_xy",
    "overlaid_curves",
    "overlaid_step_losses",
    "resolve_axis",
    "running_mean",
    "step_losses",
    "step_xy",
    "time_unit",
]
