"""Image grids of a run report: samples per class, top losses, weight templates and the
augmentation preview. Images are uint8 (n, H, W, C) or floats in [0, 1]; one channel is
drawn in grey.

Grids without per-image titles are drawn as one mosaic (one ``imshow``), which is much
faster than an axes per image and keeps the SVG small.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from trainlab.diagnostics import TopLoss
from trainlab.report.figures import PALETTE, new_figure, styled


def _as_display(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(H, W, C) -> what imshow takes, and the colour map for one channel."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        return image[..., 0], "gray"
    return image, None


def mosaic(rows: Sequence[np.ndarray], pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tile R rows of images (each (n, H, W, C), same C and dtype) into one
    (R*(H+pad)-pad, N*(W+pad)-pad, C) image, N the longest row: ``pad`` only between cells.

    H and W are the largest of any row; a smaller image (a row of low-resolution training
    crops beside full-size ones) sits centred in its cell. The rest is filled with ``fill``
    for uint8 images, with 1.0 (white) for float ones.
    """
    n_cols = max(len(r) for r in rows)
    filled = [r for r in rows if len(r)]
    h = max(r.shape[1] for r in filled)
    w = max(r.shape[2] for r in filled)
    c, dtype = filled[0].shape[3], filled[0].dtype
    out = np.full((len(rows) * (h + pad) - pad, n_cols * (w + pad) - pad, c), fill if dtype == np.uint8 else 1.0, dtype=dtype)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            top = i * (h + pad) + (h - image.shape[0]) // 2
            left = j * (w + pad) + (w - image.shape[1]) // 2
            out[top : top + image.shape[0], left : left + image.shape[1]] = image
    return out


def _mosaic_figure(rows: Sequence[np.ndarray], row_labels: Sequence[str], title: str, cell: float = 0.55) -> Figure:
    grid = mosaic(rows)
    h = max(r.shape[1] for r in rows if len(r))
    n_cols = max(len(r) for r in rows)
    fig = new_figure(min(12.0, 1.6 + cell * n_cols), min(14.0, 0.6 + cell * len(rows)))
    ax = fig.subplots()
    image, cmap = _as_display(grid)
    ax.imshow(image, cmap=cmap, vmin=0, vmax=255 if grid.dtype == np.uint8 else 1, interpolation="nearest")
    ax.grid(False)
    ax.set_xticks([])
    ax.set_yticks([(h + 2) * i + h / 2 for i in range(len(rows))], list(row_labels))
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title)
    return fig


@styled
def sample_grid(images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], title: str) -> Figure:
    """One row of sample images per class, labelled with the class name."""
    rows, names = [], []
    for k, name in enumerate(class_names):
        chosen = images[labels == k]
        if len(chosen):
            rows.append(chosen)
            names.append(str(name))
    return _mosaic_figure(rows, names, title)


@styled
def augmentation_grid(previews: Sequence[tuple[str, np.ndarray]]) -> Figure:
    """One row per augmentation (the first row the originals), the same images in every row."""
    return _mosaic_figure([images for _, images in previews], [name for name, _ in previews],
                          "the same training images through each augmentation")


@styled
def top_losses_grid(
    images: Sequence[np.ndarray], items: Sequence[TopLoss], class_names: Sequence[str], columns: int = 6,
    split: str = "test split",
) -> Figure:
    """The most confidently misclassified images of ``split``: true class, prediction and its
    probability."""
    n = len(items)
    cols = min(columns, n)
    rows = (n + cols - 1) // cols
    fig = new_figure(1.75 * cols, 2.0 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, image, item in zip(axes, images, items, strict=False):
        shown, cmap = _as_display(image)
        ax.imshow(shown, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(
            f"true {class_names[item.label]}\npred {class_names[item.predicted]} ({item.confidence:.0%})\n"
            f"p(true) {item.true_probability:.1%}",
            fontsize=7, color=PALETTE[3] if item.confidence > 0.9 else "black",
        )
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"most confident mistakes on the {split} (highest loss first)", fontsize=10)
    return fig


@styled
def weight_templates_grid(templates: np.ndarray, titles: Sequence[str], title: str, columns: int = 10) -> Figure:
    """Weight templates (M, H, W, C) in [0, 1], one small image each with its title."""
    n = len(templates)
    cols = min(columns, n)
    rows = (n + cols - 1) // cols
    fig = new_figure(1.2 * cols, 1.35 * rows + 0.3)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, template, name in zip(axes, templates, titles, strict=False):
        shown, cmap = _as_display(template)
        ax.imshow(shown, cmap=cmap or None, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(str(name), fontsize=7)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return fig


__all__ = ["augmentation_grid", "mosaic", "sample_grid", "top_losses_grid", "weight_templates_grid"]
