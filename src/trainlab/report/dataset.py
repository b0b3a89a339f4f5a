"""``trainlab data show``: a dataset's sample images per class, with the class counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainlab.data import load_dataset
from trainlab.errors import ConfigError
from trainlab.io import atomic_write_with
from trainlab.report import figures as figs
from trainlab.report import grids
from trainlab.report.images import sample_per_class

FORMATS = ("png", "svg", "pdf")


MAX_PER_CLASS = 50  # wider rows shrink each image below a few pixels


def dataset_figure(
    name: str,
    out: str | Path,
    data_dir: str | Path | None = None,
    *,
    per_class: int = 10,
    max_classes: int = 20,
    seed: int = 0,
) -> Path:
    """Draw ``per_class`` training images of each class (the first ``max_classes`` classes),
    each row labelled with the class name and its train/test counts, and write ``out``.

    Args:
        name: a dataset name or path, as for :func:`trainlab.data.load_dataset`.
        out: the image file; its suffix picks the format (png, svg or pdf).
        data_dir: the data folder. Default None ($TRAINLAB_DATA or ~/.cache/trainlab/data).
        per_class: images per class. Default 10.
        max_classes: classes shown at most. Default 20.
        seed: seed of the choice of images. Default 0.

    Raises:
        ConfigError: an unknown output format, or ``per_class`` outside 1..MAX_PER_CLASS.
        DataError: the dataset cannot be found or read.
    """
    if not 1 <= per_class <= MAX_PER_CLASS:
        raise ConfigError(f"--per-class: 1 to {MAX_PER_CLASS} images per class (got {per_class}); "
                          "more make a strip too wide to see")
    out = Path(out)
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ConfigError(f"--out {out}: unknown image format {fmt!r}; use a .png, .svg or .pdf file name")
    raw = load_dataset(name, data_dir)
    k = len(raw.class_names)
    train_counts = np.bincount(raw.y_train, minlength=k)
    test_counts = np.bincount(raw.y_test, minlength=k) if raw.y_test is not None else None
    pool = np.arange(len(raw.y_train))
    x, y = sample_per_class(raw.x_train, raw.y_train, pool, min(k, max_classes), per_class, seed)
    labels = []
    for i, class_name in enumerate(raw.class_names[:max_classes]):
        counts = f"{int(train_counts[i]):,}" + (f" / {int(test_counts[i]):,}" if test_counts is not None else "")
        labels.append(f"{class_name} ({counts})")
    h, w, c = raw.x_train.shape[1:]
    title = (f"{raw.name}: {len(raw.y_train):,} train" +
             (f" / {len(raw.x_test):,} test" if raw.x_test is not None else "") +
             f" images of {h}x{w}x{c}, {k} classes (counts: train" +
             (" / test)" if test_counts is not None else ")"))
    fig = grids.sample_grid(x, y, labels, title)
    with figs.style():
        atomic_write_with(out, lambda handle: fig.savefig(handle, format=fmt, dpi=figs.PNG_DPI))
    return out


__all__ = ["dataset_figure"]
