"""The first conv layer's filters when they are too small to be read as images.

A weight template (one image per filter, min-max scaled on its own) shows structure only
when the filter sees enough of the image: the rows of a dense first layer (the whole image)
or conv kernels of at least ``MIN_TEMPLATE_KERNEL`` pixels a side (AlexNet's 11x11, a ResNet
stem's 7x7). A 3x3 kernel as an RGB image is nine coloured pixels, each rescaled on its own:
noise to the eye. Those filters are drawn instead as their signed weights, one small heatmap
per input channel, on one colour scale shared by every filter and sorted by norm, so that
sign patterns (edges, centre-surround), colour selectivity (channels that disagree) and
dead filters (near white) can be read off.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from trainlab.report.figures import new_figure, styled

#: Smallest kernel side that is drawn as an image template (see the module docstring).
MIN_TEMPLATE_KERNEL = 5
MAX_FILTERS_SHOWN = 32
FILTERS_PER_ROW = 16
DIVERGING = "RdBu_r"  # red positive, blue negative, white zero: a sign reads without hue alone
CHANNEL_NAMES = {1: ("grey",), 3: ("R", "G", "B")}


def small_first_conv(weights: Mapping[str, np.ndarray]) -> tuple[str, np.ndarray] | None:
    """The first weight layer's name and array (O, C, kh, kw) when it is a conv on 1 or 3
    channels with a kernel side under ``MIN_TEMPLATE_KERNEL``; None otherwise (a dense first
    layer, a large kernel, or a first layer on other channels).

    The first weight layer is found as :func:`trainlab.diagnostics.first_layer_templates`
    finds it: the first ``*.W`` or ``*.weight`` array of two or more dimensions.
    """
    for name, array in weights.items():
        if not (name.endswith(".W") or name.endswith(".weight")) or np.ndim(array) < 2:
            continue
        array = np.asarray(array)
        if array.ndim == 4 and array.shape[1] in CHANNEL_NAMES and min(array.shape[2:]) < MIN_TEMPLATE_KERNEL:
            return name, array
        return None
    return None


def kernel_caption(name: str, kernels: np.ndarray) -> str:
    """The caption of :func:`kernel_grid` for the conv weights ``name`` (O, C, kh, kw)."""
    count, channels, kh, kw = kernels.shape
    shown = min(count, MAX_FILTERS_SHOWN)
    which = f"the {shown} of {count} with the largest norm" if shown < count else f"all {count}"
    rows = ", ".join(CHANNEL_NAMES[channels])
    return (f"The filters of the first conv layer ({name}): {kh}x{kw} kernels are too small to read as image "
            f"templates (each would be {kh * kw} pixels rescaled on its own), so each filter is shown as its signed "
            f"weights per input channel (rows: {rows}), red positive and blue negative on one scale shared by "
            f"every filter (ending at the 99th percentile of |weight|); {which}, strongest first, with its L2 "
            "norm. A pale filter has learnt little; the per-layer norms are under Training monitors.")


@styled
def kernel_grid(name: str, kernels: np.ndarray) -> Figure:
    """Conv filters (O, C, kh, kw) as signed heatmaps: one panel per filter (the largest L2
    norms first, at most ``MAX_FILTERS_SHOWN``), its channels stacked top to bottom, and one
    symmetric colour scale for all of them, to the 99th percentile of |weight|."""
    kernels = np.asarray(kernels, dtype=np.float64)
    count, channels, kh, kw = kernels.shape
    norms = np.sqrt((kernels**2).sum(axis=(1, 2, 3)))  # (O,)
    order = np.argsort(-norms, kind="stable")[:MAX_FILTERS_SHOWN]
    magnitudes = np.abs(kernels[order])
    # The 99th percentile, not the max: one outlying weight must not wash out every other filter.
    scale = float(np.quantile(magnitudes, 0.99)) or float(magnitudes.max()) or 1.0
    clipped = bool(magnitudes.max() > scale)
    columns = min(FILTERS_PER_ROW, len(order))
    rows = -(-len(order) // columns)
    fig = new_figure(0.62 * columns + 1.4, (0.3 * kh * channels / kw + 0.5) * rows + 0.7)
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    image = None
    for ax, index in zip(axes, order, strict=False):
        # Channels one under another, a NaN row between them (drawn as the background).
        stacked = np.full((channels * (kh + 1) - 1, kw), np.nan)
        for c in range(channels):
            stacked[c * (kh + 1): c * (kh + 1) + kh] = kernels[index, c]
        image = ax.imshow(stacked, cmap=DIVERGING, vmin=-scale, vmax=scale, interpolation="nearest")
        ax.set_title(f"{index}\n{norms[index]:.2f}", fontsize=6)
        ax.set_xticks([])
        ax.set_yticks([c * (kh + 1) + (kh - 1) / 2 for c in range(channels)] if ax is axes[0] else [],
                      CHANNEL_NAMES[channels] if ax is axes[0] else [], fontsize=6)
        ax.grid(False)
        for spine in ax.spines.values():
            spine.set_visible(False)
    for ax in axes[len(order):]:
        ax.set_visible(False)
    if image is not None:
        fig.colorbar(image, ax=list(axes[: len(order)]), shrink=0.8, label="weight",
                     extend="both" if clipped else "neither")
    fig.suptitle(f"first conv layer {name}: {count} filters of {kh}x{kw} over {channels} channel"
                 f"{'s' if channels > 1 else ''} (title: filter, L2 norm)", fontsize=9)
    return fig


__all__ = ["MIN_TEMPLATE_KERNEL", "kernel_caption", "kernel_grid", "small_first_conv"]
