"""Figures of study reports: overlaid learning curves, the objective against each parameter
(bars with error bars for categorical ones, a scatter for numeric ones) and parameter
importances.

Same style and palette as :mod:`.figures`; every function returns a matplotlib Figure built
without ``pyplot``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from trainlab.report.curves import integer_ticks, legend_columns
from trainlab.report.figures import PALETTE, new_figure, styled

LINESTYLES = ("-", "--", ":", "-.")
#: How a bar is drawn for each verdict against the best setting (colour, hatch, legend text).
VERDICT_STYLE: dict[str, tuple[str, str, str]] = {
    "best": (PALETTE[2], "", "best mean"),
    "tie": (PALETTE[0], "//", "not distinguishable from the best"),
    "worse": ("#9a9a9a", "", "worse than the best"),
    "n/a": (PALETTE[5], "..", "no test (fewer than 2 repeats)"),
}


@dataclass
class Curve:
    """One run's metrics rows and how to label it; ``steps_per_epoch`` turns steps into epochs."""

    label: str
    metrics: Sequence[Mapping[str, Any]]
    steps_per_epoch: float | None = None


def _xy(curve: Curve, column: str, split: str, epochs: bool) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(float(r["step"]), float(r[column])) for r in curve.metrics
             if r.get("split") == split and isinstance(r.get(column), int | float) and "step" in r]
    if not pairs:
        return np.zeros(0), np.zeros(0)
    x, y = (np.asarray(v) for v in zip(*pairs, strict=True))
    if epochs and curve.steps_per_epoch:
        x = x / curve.steps_per_epoch
    return x, y


@styled
def overlaid_curves(curves: Sequence[Curve]) -> Figure | None:
    """Validation accuracy, validation loss and training loss of several runs on shared axes.

    The x axis is epochs (whole-number ticks) when every run knows its steps per epoch (runs
    with different batch sizes line up), else steps. None when no run has a metrics row.
    """
    if not any(curve.metrics for curve in curves):
        return None
    epochs = all(curve.steps_per_epoch for curve in curves)
    fig = new_figure(10, 3.6)
    axes = fig.subplots(1, 3)
    panels = (("accuracy", "val", "validation accuracy"), ("loss", "val", "validation loss"),
              ("loss", "train", "training loss"))
    legend: dict[str, Any] = {}  # one entry per run: its first line, in whichever panel it has points
    for ax, (column, split, title) in zip(axes, panels, strict=True):
        for index, curve in enumerate(curves):
            x, y = _xy(curve, column, split, epochs)
            if len(x):
                (line,) = ax.plot(x, y, color=PALETTE[index % len(PALETTE)],
                                  linestyle=LINESTYLES[(index // len(PALETTE) + index) % len(LINESTYLES)],
                                  marker="o" if len(x) <= 20 else None, markersize=2.5)
                legend.setdefault(curve.label, line)
        ax.set_title(title)
        ax.set_xlabel("epoch" if epochs else "step")
        if epochs:
            integer_ticks(ax)
    if legend:
        fig.legend(list(legend.values()), list(legend), loc="outside lower center",
                   ncols=legend_columns(list(legend)), fontsize=7)
    return fig


@dataclass
class Bar:
    """One value of a categorical parameter: the mean objective of its setting and its interval."""

    label: str
    mean: float | None
    low: float | None = None
    high: float | None = None
    n: int = 0
    verdict: str = "n/a"


@styled
def categorical_effect(param: str, bars: Sequence[Bar], metric: str, note: str = "") -> Figure:
    """The objective of each value of a categorical parameter, as bars with their 95 % interval.

    Bars are coloured (and hatched) by the verdict against the best setting, so the values
    that seed noise cannot tell apart from the best stand out.
    """
    fig = new_figure(min(10.0, max(4.2, 0.8 * len(bars) + 2.4)), 3.4)
    ax = fig.subplots()
    x = np.arange(len(bars))
    seen: dict[str, Patch] = {}
    for i, bar in enumerate(bars):
        if bar.mean is None or not np.isfinite(bar.mean):
            ax.text(i, 0.02, "no finished\ntrial", ha="center", va="bottom", fontsize=7, color="#555555",
                    transform=ax.get_xaxis_transform())
            continue
        color, hatch, text = VERDICT_STYLE.get(bar.verdict, VERDICT_STYLE["n/a"])
        ax.bar(i, bar.mean, width=0.65, color=color, hatch=hatch, edgecolor="white", linewidth=0.4)
        if bar.low is not None and bar.high is not None and np.isfinite(bar.low) and np.isfinite(bar.high):
            ax.errorbar(i, bar.mean, yerr=[[bar.mean - bar.low], [bar.high - bar.mean]], color="black",
                        capsize=4, linewidth=1)
        ax.annotate(f"{bar.mean:.3f}\nn={bar.n}", (i, bar.high if bar.high is not None and np.isfinite(bar.high)
                                                     else bar.mean),
                    textcoords="offset points", xytext=(0, 3), ha="center", va="bottom", fontsize=7)
        seen.setdefault(bar.verdict, Patch(facecolor=color, hatch=hatch, edgecolor="white", label=text))
    labels = [b.label for b in bars]
    slanted = len(labels) > 6 or max((len(s) for s in labels), default=0) * len(labels) > 24
    ax.set_xticks(x, labels, **({"rotation": 30, "ha": "right"} if slanted else {}))
    finite = [v for b in bars for v in (b.mean, b.low, b.high) if v is not None and np.isfinite(v)]
    if finite:
        low, high = min(finite), max(finite)
        bottom = 0.0 if low >= 0 else low - 0.1 * (high - low)  # bars start at zero when they can
        ax.set_ylim(bottom, high + 0.15 * max(high - bottom, 1e-3))
    ax.set_xlabel(param)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by {param}" + (f" ({note})" if note else ""))
    if seen:
        ax.legend(handles=list(seen.values()), loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


@dataclass
class Point:
    """One trial of a numeric parameter: its value, its objective and its state."""

    value: float
    objective: float | None
    state: str = "COMPLETE"


@styled
def numeric_effect(param: str, points: Sequence[Point], metric: str, log: bool,
                   best: float | None = None) -> Figure | None:
    """The objective of every trial against a numeric parameter (log x axis when ``log``).

    Completed trials are dots, pruned trials (at their last reported value) crosses, and the
    best setting a star; failed trials (state FAIL) are ticks along the bottom. Other trials
    without a value (running, waiting, pruned before reporting one) are left out. None when
    nothing is drawn.
    """
    groups = {"COMPLETE": ([], []), "PRUNED": ([], [])}
    failed: list[float] = []
    for point in points:
        if point.objective is not None and np.isfinite(point.objective) and point.state in groups:
            groups[point.state][0].append(point.value)
            groups[point.state][1].append(point.objective)
        elif point.state == "FAIL":
            failed.append(point.value)
    if not (failed or groups["COMPLETE"][0] or groups["PRUNED"][0]):
        return None
    fig = new_figure(5.6, 3.4)
    ax = fig.subplots()
    xs, ys = groups["COMPLETE"]
    ax.scatter(xs, ys, s=18, color=PALETTE[0], alpha=0.8, label=f"complete ({len(xs)})", zorder=3)
    if groups["PRUNED"][0]:
        ax.scatter(*groups["PRUNED"], s=22, marker="x", color=PALETTE[3], label=f"pruned ({len(groups['PRUNED'][0])}, "
                   "last reported value)", zorder=3)
    if failed:
        ax.plot(failed, [0.0] * len(failed), linestyle="none", marker="|", markersize=12, color=PALETTE[1],
                transform=ax.get_xaxis_transform(), label=f"failed ({len(failed)})")
    if best is not None:
        best_y = [y for x, y in zip(xs, ys, strict=True) if x == best]
        if best_y:
            ax.scatter([best], [max(best_y)], s=120, marker="*", color=PALETTE[2], edgecolor="black",
                       linewidth=0.5, label="best setting", zorder=4)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(param + (" (log scale)" if log else ""))
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} against {param}")
    ax.legend(loc="best")
    return fig


@styled
def importance_bars(importances: Mapping[str, float], caption: str = "fANOVA") -> Figure:
    """Parameter importances as horizontal bars, most important on top."""
    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig = new_figure(5.6, max(1.8, 0.45 * len(items) + 1.0))
    ax = fig.subplots()
    y = np.arange(len(items))
    ax.barh(y, [v for _, v in items], color=PALETTE[0], height=0.6)
    for i, (_, value) in enumerate(items):
        ax.text(value, i, f" {value:.2f}", va="center", fontsize=8)
    ax.set_yticks(y, [k for k, _ in items])
    ax.set_xlim(0, max(1.0, max((v for _, v in items), default=0) * 1.15))
    ax.set_xlabel("importance (normalised)")
    ax.set_title(f"parameter importance ({caption})")
    return fig


__all__ = [
    "VERDICT_STYLE",
    "Bar",
    "Curve",
    "Point",
    "categorical_effect",
    "importance_bars",
    "numeric_effect",
    "overlaid_curves",
]
