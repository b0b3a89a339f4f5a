"""Figures of a run report, drawn with matplotlib in one consistent, colour-blind-safe style.

Every function returns a :class:`matplotlib.figure.Figure` built without ``pyplot`` (no
global state, no GUI backend: the Agg canvas renders it), and :func:`save_figure` writes
it as PNG and SVG. Colours are the Okabe-Ito palette; each split also has its own line
style, so curves stay apart in grey print too. Image grids are in :mod:`.grids`.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from trainlab.diagnostics import Calibration
from trainlab.io import atomic_write_with

# Okabe & Ito (2008), distinguishable with every common colour-vision deficiency.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
SPLIT_STYLE = {
    "train": {"color": PALETTE[0], "linestyle": "-"},
    "val": {"color": PALETTE[1], "linestyle": "--"},
    "test": {"color": PALETTE[2], "linestyle": ":"},
}
SEQUENTIAL = "Blues"  # a luminance ramp: readable without hue
MARK_COLOR = PALETTE[3]
P = ParamSpec("P")
R = TypeVar("R")
PNG_DPI = 110

STYLE: dict[str, Any] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.prop_cycle": matplotlib.cycler(color=list(PALETTE)),
    "legend.frameon": False,
    "legend.fontsize": 8,
    "lines.linewidth": 1.6,
    "svg.fonttype": "none",  # text stays text in SVG (editable in a paper)
    "svg.hashsalt": "trainlab",  # fixed ids of clip paths and markers, else random on every save
    "savefig.bbox": "tight",
    "figure.dpi": PNG_DPI,
}


@contextmanager
def style() -> Iterator[None]:
    """Apply the report style while figures are drawn and saved."""
    with matplotlib.rc_context(STYLE):
        yield


def styled(draw: Callable[P, R]) -> Callable[P, R]:
    """Decorator: draw the figure inside :func:`style` (rc parameters are read as artists are made)."""

    @functools.wraps(draw)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with style():
            return draw(*args, **kwargs)

    return wrapper


def new_figure(width: float, height: float) -> Figure:
    """A figure in the report style (call inside :func:`style`)."""
    return Figure(figsize=(width, height), layout="constrained")


@dataclass(frozen=True)
class SavedFigure:
    """A figure written to disk: its name, caption, PNG and SVG paths, and the PNG bytes."""

    name: str
    caption: str
    png: Path
    svg: Path
    png_bytes: bytes


def save_figure(fig: Figure, directory: Path, name: str, caption: str = "") -> SavedFigure:
    """Write ``directory/name.png`` and ``directory/name.svg``, each atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    with style():
        for ext in ("png", "svg"):
            path = directory / f"{name}.{ext}"
            atomic_write_with(path, lambda handle, ext=ext: fig.savefig(
                handle, format=ext, dpi=PNG_DPI, metadata=_metadata(ext)))
            paths[ext] = path
    return SavedFigure(name, caption, paths["png"], paths["svg"], paths["png"].read_bytes())


def _metadata(ext: str) -> dict[str, Any]:
    # No creation date (and STYLE's fixed svg.hashsalt): the same run gives byte-identical figures.
    return {"Software": None} if ext == "png" else {"Date": None, "Creator": None}


def _series(metrics: Sequence[Mapping[str, Any]], column: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(float(r["step"]), float(r[column])) for r in metrics
             if r.get("split") == split and isinstance(r.get(column), int | float) and "step" in r]
    if not pairs:
        return np.zeros(0), np.zeros(0)
    steps, values = zip(*pairs, strict=True)
    return np.asarray(steps), np.asarray(values)


def _rotate(names: Sequence[str]) -> dict[str, Any]:
    """Tick label options: slanted when the class names are long or many."""
    slanted = len(names) > 12 or max((len(str(n)) for n in names), default=0) > 3
    return {"rotation": 45, "ha": "right"} if slanted else {}


def constant_lr(metrics: Sequence[Mapping[str, Any]]) -> float | None:
    """The learning rate when every logged value of it is the same, else None (it changes, or
    no row logs it). Train rows are read, or any row when no train row has an ``lr``."""
    values = [float(r["lr"]) for r in metrics if r.get("split") == "train" and _is_number(r.get("lr"))]
    if not values:
        values = [float(r["lr"]) for r in metrics if _is_number(r.get("lr"))]
    if not values or not all(np.isfinite(values)):
        return None
    low, high = min(values), max(values)
    # A relative tolerance: a CSV round trip must not turn a constant into a schedule.
    return values[0] if high - low <= 1e-9 * max(abs(high), abs(low)) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@styled
def learning_curves(
    metrics: Sequence[Mapping[str, Any]], early_stop_step: int | None = None, steps_per_epoch: int | None = None
) -> Figure:
    """Loss and accuracy of every split over steps, and the learning rate when it changes (a
    constant one is stated in the figure's title instead); the best step of early stopping
    marked with a vertical line."""
    fixed_lr = constant_lr(metrics)
    has_lr = fixed_lr is None and any(_is_number(r.get("lr")) for r in metrics)
    panels = [("loss", "loss"), ("accuracy", "accuracy"), *([("lr", "learning rate")] if has_lr else [])]
    fig = new_figure(10 if has_lr else 7, 3.2)
    axes = fig.subplots(1, len(panels))
    for ax, (column, title) in zip(axes, panels, strict=True):
        for split, line_style in SPLIT_STYLE.items():
            if column == "lr" and split != "train":
                continue
            steps, values = _series(metrics, column, split)
            if len(steps):
                marker = "o" if len(steps) <= 30 else None
                ax.plot(steps, values, label=split if column != "lr" else None, marker=marker,
                        markersize=3, **line_style)
        ax.set_title(title)
        ax.set_xlabel("step" + (f" ({steps_per_epoch} per epoch)" if steps_per_epoch else ""))
        if early_stop_step is not None:
            ax.axvline(early_stop_step, color=MARK_COLOR, linewidth=1, linestyle="-.",
                       label="best (early stopping)" if column == "loss" else None)
        finite = [v for s in SPLIT_STYLE for v in _series(metrics, column, s)[1] if np.isfinite(v) and v > 0]
        if column == "lr" and finite and max(finite) / min(finite) > 20:
            ax.set_yscale("log")
    if fixed_lr is not None:
        fig.suptitle(f"learning rate {fixed_lr:g} (constant)", fontsize=9)
    axes[0].legend(loc="best")
    axes[1].set_ylim(bottom=0.0, top=1.0)
    return fig


@styled
def confusion_matrices(cm: np.ndarray, class_names: Sequence[str], title: str) -> Figure:
    """Counts and row-normalised rates side by side (rows: true class, columns: predicted)."""
    from trainlab.diagnostics import normalize_rows

    k = len(class_names)
    size = min(12.0, max(3.2, 0.42 * k + 1.6))
    fig = new_figure(2 * size + 0.6, size)
    axes = fig.subplots(1, 2)
    rates = normalize_rows(cm)
    for ax, values, label, fmt in ((axes[0], cm, "count", "d"), (axes[1], rates, "fraction of the row", ".2f")):
        image = ax.imshow(values, cmap=SEQUENTIAL, vmin=0, vmax=values.max() if values.max() > 0 else 1)
        ax.grid(False)
        ticks = np.arange(k)
        ax.set_xticks(ticks, [str(n) for n in class_names], **_rotate(class_names))
        ax.set_yticks(ticks, [str(n) for n in class_names])
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{title}: {'counts' if fmt == 'd' else 'row-normalised'}")
        if k <= 20:
            high = values.max() * 0.6
            for i in range(k):
                for j in range(k):
                    ax.text(j, i, format(values[i, j], fmt), ha="center", va="center", fontsize=7 if k > 10 else 8,
                            color="white" if values[i, j] > high else "black")
        fig.colorbar(image, ax=ax, shrink=0.8, label=label)
    return fig


@styled
def class_scores(scores: Sequence[Any], split: str = "test split") -> Figure:
    """Precision, recall and F1 per class of ``split`` as grouped bars (``ClassScores`` rows)."""
    k = len(scores)
    fig = new_figure(min(12.0, max(5.0, 0.6 * k + 2)), 3.0)
    ax = fig.subplots()
    x = np.arange(k)
    for offset, (field, color) in enumerate(zip(("precision", "recall", "f1"), PALETTE, strict=False)):
        ax.bar(x + (offset - 1) * 0.27, [getattr(s, field) for s in scores], width=0.27,
               label=field if field != "f1" else "F1", color=color, hatch=("", "//", "..")[offset],
               edgecolor="white", linewidth=0.3)
    ax.set_xticks(x, [s.name for s in scores], **_rotate([s.name for s in scores]))
    ax.set_ylim(0, 1.05)
    ax.set_title(f"per-class precision, recall and F1 ({split})")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: bars reach 1.0
    return fig


#: A bin's gap counts towards the max gap only with this many examples, or this share of
#: them when that is more: the gap of a bin of three images is mostly chance.
MIN_BIN_EXAMPLES = 10
MIN_BIN_SHARE = 0.01
#: Opaque fills (no alpha), so a gap looks the same over a bar, over white and in its legend entry.
OVER_GAP = {"color": "#F2C6AC", "hatch": "//", "hatchcolor": PALETTE[3]}  # a tint of PALETTE[3]
UNDER_GAP = {"color": PALETTE[0], "hatch": "\\\\", "hatchcolor": "white"}  # inside the accuracy bar
SPARSE_BAR = "#BBBBBB"


def min_bin_count(total: int) -> int:
    """The fewest examples a reliability bin needs for its gap to count towards the max gap:
    ``MIN_BIN_EXAMPLES``, or ``MIN_BIN_SHARE`` of ``total`` when that is more."""
    return max(MIN_BIN_EXAMPLES, math.ceil(MIN_BIN_SHARE * total))


def supported_max_gap(cal: Calibration) -> float | None:
    """The largest |accuracy - mean confidence| over the bins with at least
    :func:`min_bin_count` examples (None when no bin has that many)."""
    supported = cal.counts >= min_bin_count(int(cal.counts.sum()))
    if not supported.any():
        return None
    return float(np.max(np.abs(cal.accuracy[supported] - cal.confidence[supported])))


def max_gap_rule(cal: Calibration) -> str:
    """The sentences a caption of :func:`reliability_diagram` needs: which bins the max gap in
    its title is taken over, and how the ECE weights them."""
    least = min_bin_count(int(cal.counts.sum()))
    return (f"The max gap in the title is over the bins with at least {least} examples ({MIN_BIN_EXAMPLES}, "
            f"or {MIN_BIN_SHARE:.0%} of the examples when that is more); smaller bins are grey and their gap is "
            "not shaded. The ECE weights every bin by its share of the examples.")


@styled
def reliability_diagram(cal: Calibration) -> Figure:
    """Accuracy against confidence per bin, the diagonal of perfect calibration, the gap of
    each bin (hatched: over-confident above the bar, under-confident inside it) and the
    share of examples in each bin; the ECE and the max gap (see :func:`supported_max_gap`)
    in the title. Bins under :func:`min_bin_count` examples are grey and have no gap."""
    fig = new_figure(4.8, 4.8)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    centres = (cal.edges[:-1] + cal.edges[1:]) / 2
    width = (cal.edges[1] - cal.edges[0]) * 0.95
    least = min_bin_count(int(cal.counts.sum()))
    supported = cal.counts >= least
    sparse = (cal.counts > 0) & ~supported
    handles = [top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1,
                        label="perfectly calibrated")[0]]
    bar = {"width": width, "edgecolor": "white", "linewidth": 0.3}
    for chosen, color, label in ((supported, PALETTE[0], "accuracy"), (sparse, SPARSE_BAR,
                                                                      f"bin of < {least} examples")):
        if chosen.any():
            handles.append(top.bar(centres[chosen], cal.accuracy[chosen], color=color, label=label, **bar))
    acc, conf = cal.accuracy, cal.confidence
    for chosen, style, label in ((supported & (conf > acc), OVER_GAP, "gap: over-confident"),
                                 (supported & (acc > conf), UNDER_GAP, "gap: under-confident")):
        if chosen.any():  # drawn over the bars; the legend shows these very artists
            low = np.minimum(acc[chosen], conf[chosen])
            handles.append(top.bar(centres[chosen], np.abs(acc[chosen] - conf[chosen]), bottom=low,
                                   label=label, zorder=3, **bar, **style))
    top.set_ylim(0, 1)
    top.set_xlim(0, 1)
    top.set_ylabel("accuracy")
    gap = supported_max_gap(cal)
    shown = f"{gap:.3f}" if gap is not None else "–"
    top.set_title(f"reliability: ECE {cal.ece:.3f}\nmax gap {shown} (bins of ≥ {least} examples)")
    top.legend(handles=handles, loc="upper left", fontsize=7)
    share = cal.counts / max(1, cal.counts.sum())
    bottom.bar(centres, share, width=width, color=PALETTE[5], edgecolor="white", linewidth=0.3)
    bottom.set_xlabel("confidence (top-class probability)")
    bottom.set_ylabel("share")
    return fig


MONITOR_KINDS = (
    ("weight_norm", "weight norm", True),
    ("grad_norm", "gradient norm", True),
    ("delta_norm", "delta norm (per example)", True),
    ("act_norm", "activation norm (per example)", True),
    ("dead_relu", "dead ReLU fraction", False),
    ("logit_norm", "logit norm (per example)", True),
)


def monitor_columns(metrics: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Monitor columns present in the train rows, grouped by kind (layers in order)."""
    present = {key for row in metrics if row.get("split") == "train" for key in row}
    groups: dict[str, list[str]] = {}
    for kind, _, _ in MONITOR_KINDS:
        if kind == "logit_norm":
            columns = [kind] if kind in present else []
        else:
            pattern = re.compile(rf"^{kind}_(\d+)$")
            columns = sorted((c for c in present if pattern.match(c)), key=lambda c: int(c.rsplit("_", 1)[1]))
        if columns:
            groups[kind] = columns
    return groups


@styled
def layer_norms(metrics: Sequence[Mapping[str, Any]]) -> Figure | None:
    """One panel per monitor kind, one line per layer, over training steps (None if no monitors)."""
    groups = monitor_columns(metrics)
    if not groups:
        return None
    n = len(groups)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig = new_figure(3.5 * cols, 2.8 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    titles = {kind: (title, log) for kind, title, log in MONITOR_KINDS}
    for ax, (kind, columns) in zip(axes, groups.items(), strict=False):
        title, log = titles[kind]
        for index, column in enumerate(columns):
            steps, values = _series(metrics, column, "train")
            label = "logits" if column == "logit_norm" else f"layer {column.rsplit('_', 1)[1]}"
            ax.plot(steps, values, label=label, color=PALETTE[index % len(PALETTE)],
                    linestyle=("-", "--", ":", "-.")[index // len(PALETTE) % 4],
                    marker="o" if len(steps) <= 30 else None, markersize=3)
        positive = [v for c in columns for v in _series(metrics, c, "train")[1] if np.isfinite(v) and v > 0]
        if log and positive and max(positive) / min(positive) > 20:  # log only when values span decades
            ax.set_yscale("log")
        if kind == "dead_relu":
            ax.set_ylim(-0.02, 1.02)
        ax.set_title(title)
        ax.set_xlabel("step")
        if len(columns) > 1:
            ax.legend(fontsize=7)
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig


@styled
def class_counts(counts: Mapping[str, np.ndarray | None], class_names: Sequence[str]) -> Figure:
    """Examples per class in each split, grouped bars."""
    present = {split: c for split, c in counts.items() if c is not None and c.sum() > 0}
    k = len(class_names)
    fig = new_figure(min(12.0, max(5.0, 0.55 * k + 2)), 3.0)
    ax = fig.subplots()
    x = np.arange(k)
    width = 0.8 / max(1, len(present))
    for offset, (split, values) in enumerate(present.items()):
        ax.bar(x + (offset - (len(present) - 1) / 2) * width, values, width=width, label=f"{split} ({int(values.sum()):,})",
               color=SPLIT_STYLE.get(split, {"color": PALETTE[4]})["color"], hatch=("", "//", "..")[offset % 3],
               edgecolor="white", linewidth=0.3)
    ax.set_xticks(x, [str(n) for n in class_names], **_rotate(class_names))
    ax.set_ylabel("examples")
    top = max((int(v.max()) for v in present.values()), default=1)
    ax.set_ylim(0, top * 1.25)  # room for the legend above the bars
    ax.set_title("examples per class")
    ax.legend(ncols=max(1, len(present)))
    return fig


__all__ = [
    "PALETTE",
    "SavedFigure",
    "class_counts",
    "class_scores",
    "confusion_matrices",
    "constant_lr",
    "layer_norms",
    "learning_curves",
    "max_gap_rule",
    "min_bin_count",
    "monitor_columns",
    "new_figure",
    "reliability_diagram",
    "save_figure",
    "style",
    "styled",
    "supported_max_gap",
]
