"""The images a run's report shows, saved into the run directory when training ends, so that
the report is written from the run directory alone (the data folder gone, on another machine).

``REPORT_IMAGES_FILE`` (an ``.npz``, every image uint8 (N, H, W, C)) holds:

- ``class_names`` (K,), ``image_shape`` (C, H, W), ``counts_train``/``counts_val``
  (and ``counts_test`` when the test split is labelled): examples per class of each split;
- ``samples_x``/``samples_y``: up to ``SAMPLES_PER_CLASS`` training images of each of the
  first ``MAX_CLASSES_SHOWN`` classes, drawn with the run's seed;
- ``preview_names`` (R,) and ``preview_images_{i}`` (n, H, W, C), one array per row ``i``
  (rows differ in size under ``augment.low_res``), only when the run augments: the same
  training images through each configured augmentation (:func:`.images.augmentation_preview`).
  Older files hold the rows stacked in one ``preview_images`` (R, n, H, W, C), still read;
- ``test_index``/``test_labels``/``test_images``, when the run has labelled predictions:
  the images of its ``TOP_LOSSES`` largest losses, by their row in ``predictions.npz``, and
  ``predictions_split``: the split they are of (test, or val for a run without a labelled test
  split; a file without it holds test images). The names say test for the files saved before.

Each of the three image parts keeps to ``PART_BYTES`` (at least one image each), so the file
stays small whatever the image size: under 1 MB for CIFAR-10.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainlab import diagnostics as dg
from trainlab.config import AugmentConfig
from trainlab.data.normalize import fit_normalizer, normalizer_affine
from trainlab.io import atomic_write_with
from trainlab.report.artifacts import Predictions, read_predictions_file
from trainlab.report.images import RunData, augmentation_preview, load_run_data, sample_per_class
from trainlab.run_files import PREDICTIONS_FILE, REPORT_IMAGES_FILE

if TYPE_CHECKING:
    from trainlab.data import PreparedData

TOP_LOSSES = 18  # images the top-losses figure shows
SAMPLES_PER_CLASS = 10
MAX_CLASSES_SHOWN = 20
PREVIEW_IMAGES = 10  # training images in the augmentation preview
PART_BYTES = 2 << 20  # the most bytes of images in each part (samples, preview, test images)
NORMALIZER_ROWS = 5000  # a report without saved images fits its preview normaliser on these


@dataclass
class ImageSplits:
    """A run's splits as the report needs them: labels, and uint8 images fetched by row."""

    class_names: list[str]
    image_shape: tuple[int, int, int]  # (C, H, W)
    y_train: np.ndarray  # (N,)
    y_val: np.ndarray  # (V,)
    y_test: np.ndarray | None  # (M,), None when the test split is unlabelled or missing
    train_images: Callable[[np.ndarray], np.ndarray]  # rows of the training split -> (n, H, W, C) uint8
    test_images: Callable[[np.ndarray], np.ndarray] | None  # rows of the test split, likewise
    normalizer: Callable[[], dict[str, Any]]  # the run's normaliser, for the augmentation preview
    val_images: Callable[[np.ndarray], np.ndarray] | None = None  # rows of the validation split, likewise


@dataclass
class ReportImages:
    """What a run report shows of the data (the contents of ``REPORT_IMAGES_FILE``)."""

    class_names: list[str]
    image_shape: tuple[int, int, int]  # (C, H, W)
    split_counts: dict[str, np.ndarray | None]  # examples per class (K,) of train, val and test
    samples_x: np.ndarray  # (n, H, W, C) uint8
    samples_y: np.ndarray  # (n,)
    preview: list[tuple[str, np.ndarray]] = field(default_factory=list)  # empty: the run does not augment
    preview_note: str = ""  # why there is no preview although the run augments
    # The top-loss images of predictions.npz's split (test, or val without a labelled test split).
    test_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # rows of predictions.npz
    test_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    test_images: np.ndarray | None = None  # (m, H, W, C) uint8
    test_note: str = ""  # why no top-loss images were kept
    predictions_split: str = "test"  # the split of test_index/test_images

    def counts(self) -> dict[str, np.ndarray | None]:
        """Examples per class (K,) of each split (None for an unlabelled or missing test split)."""
        return dict(self.split_counts)

    def test_images_for(self, rows: Sequence[int], labels: np.ndarray, split: str = "test") -> list[np.ndarray]:
        """The kept images of the rows ``rows`` of predictions of ``split`` whose labels are
        ``labels``, in order, up to the first row that was not kept (or whose label differs:
        other predictions); none when the kept images are of another split."""
        where = {int(r): i for i, r in enumerate(self.test_index)}
        found: list[np.ndarray] = []
        if split != self.predictions_split:
            return found
        for row in rows:
            i = where.get(int(row))
            if i is None or self.test_images is None or int(self.test_labels[i]) != int(labels[row]):
                break
            found.append(self.test_images[i])
        return found


def _fits(image_shape: tuple[int, int, int], rows: int, most: int) -> int:
    """How many images (1..``most``) of ``rows`` rows each fit in ``PART_BYTES``."""
    c, h, w = image_shape
    return int(min(most, max(1, PART_BYTES // max(1, rows * c * h * w))))


def collect_report_images(
    splits: ImageSplits, config: Mapping[str, Any], predictions: Predictions | None
) -> ReportImages:
    """Pick the images a run's report shows.

    Args:
        splits: the run's splits (:func:`splits_from_prepared` or :func:`splits_from_dataset`).
        config: the run's resolved config, as a dict (``seed`` and ``augment`` are read).
        predictions: the run's ``predictions.npz`` (:func:`read_predictions`), or None.
    """
    k = len(splits.class_names)
    seed = int(config.get("seed", 0))
    test_counts = None if splits.y_test is None else np.bincount(splits.y_test, minlength=k)
    counts = {"train": np.bincount(splits.y_train, minlength=k), "val": np.bincount(splits.y_val, minlength=k),
              "test": test_counts}
    every = np.arange(len(splits.y_train))
    per_class = _fits(splits.image_shape, min(k, MAX_CLASSES_SHOWN), SAMPLES_PER_CLASS)
    # Rows in, rows out: sample_per_class indexes its first argument with the rows it draws.
    rows, labels = sample_per_class(every, splits.y_train, every, min(k, MAX_CLASSES_SHOWN), per_class, seed)
    images = ReportImages(list(splits.class_names), splits.image_shape, counts, splits.train_images(rows), labels)
    _add_preview(images, splits, config.get("augment") or {}, seed)
    _add_test_images(images, splits, predictions)
    return images


def _add_preview(images: ReportImages, splits: ImageSplits, augment: Mapping[str, Any], seed: int) -> None:
    active = AugmentConfig.model_validate(dict(augment)).active()
    if not active:
        return  # a run that does not augment has no preview (issue 27)
    k = len(splits.class_names)
    every = np.arange(len(splits.y_train))
    rows, labels = sample_per_class(every, splits.y_train, every, k, 1, seed)
    n = _fits(splits.image_shape, len(active) + 2, PREVIEW_IMAGES)  # original, each one, all
    try:
        images.preview = augmentation_preview(splits.train_images(rows[:n]), labels[:n], augment,
                                              splits.normalizer(), k)
    except Exception as exc:  # a preview that cannot be drawn is said, never fatal to the rest
        images.preview_note = f"{type(exc).__name__}: {exc}"


def _add_test_images(images: ReportImages, splits: ImageSplits, predictions: Predictions | None) -> None:
    """The top-loss images of the predictions' split: test, or val (rows of the training data)."""
    if predictions is None or predictions.labels is None:
        return
    probabilities, labels, split = predictions.probabilities, predictions.labels, predictions.split
    y, fetch = (splits.y_val, splits.val_images) if split == "val" else (splits.y_test, splits.test_images)
    images.predictions_split = split
    if fetch is None:
        return
    if y is None or not np.array_equal(y, labels):
        name = "validation" if split == "val" else "test"
        images.test_note = (f"the {name} images of this machine's dataset do not match the run's predictions "
                            "(another dataset version or limit), so they are not shown")
        return
    if not np.isfinite(probabilities).all():
        return  # the report shows no top losses of diverged predictions
    count = _fits(splits.image_shape, 1, TOP_LOSSES)
    rows = np.array([item.index for item in dg.top_losses(probabilities, labels, TOP_LOSSES)[:count]],
                    dtype=np.int64)
    images.test_index, images.test_labels = rows, np.asarray(labels)[rows]
    images.test_images = fetch(rows)


def _to_pixels(x: np.ndarray, normalizer: dict[str, Any]) -> np.ndarray:
    """Normalised (n, C, H, W) floats back to the (n, H, W, C) uint8 pixels they were made from."""
    affine = normalizer_affine(normalizer, int(x.shape[1]))
    pixels = np.asarray(x, dtype=np.float64) * affine.spread
    if affine.shift is not None:
        pixels = pixels + affine.shift
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def splits_from_prepared(data: PreparedData) -> ImageSplits:
    """The splits of a run's prepared data (as training saw them), its pixels recovered from the
    normalised floats: every normaliser is affine, and float32 keeps them well within 0.5."""
    x_test = data.x_test
    return ImageSplits(
        list(data.class_names), tuple(data.input_shape), data.y_train, data.y_val, data.y_test,
        lambda rows: _to_pixels(data.x_train[rows], data.normalizer),
        None if x_test is None else (lambda rows: _to_pixels(x_test[rows], data.normalizer)),
        lambda: data.normalizer,
        lambda rows: _to_pixels(data.x_val[rows], data.normalizer),
    )


def splits_from_dataset(data: RunData, config: Mapping[str, Any]) -> ImageSplits:
    """The splits of a run's dataset read again (runs saved before ``REPORT_IMAGES_FILE``); the
    preview's normaliser is fitted on at most ``NORMALIZER_ROWS`` training images."""
    raw = data.raw
    test_idx = data.test_idx

    def normalizer() -> dict[str, Any]:
        cfg = config.get("data") or {}
        pool = np.sort(data.train_idx[:NORMALIZER_ROWS])  # a subset's statistics are close enough for a preview
        return fit_normalizer(np.asarray(raw.x_train[pool]), str(cfg.get("normalize", "channel")),
                              float(cfg.get("scale", 1.0)), str(cfg.get("center_by", "channel")),
                              cfg.get("mean"), cfg.get("std"))

    x_test = raw.x_test
    return ImageSplits(
        data.class_names, data.image_shape, np.asarray(raw.y_train[data.train_idx]),
        np.asarray(raw.y_train[data.val_idx]), data.test_labels(),
        lambda rows: np.asarray(raw.x_train[data.train_idx[rows]]),
        None if x_test is None or test_idx is None else (lambda rows: np.asarray(x_test[test_idx[rows]])),
        normalizer,
        lambda rows: np.asarray(raw.x_train[data.val_idx[rows]]),  # validation rows come from the training data
    )


def read_predictions(run_path: Path) -> Predictions | None:
    """The probabilities, labels and split of ``run_path/predictions.npz`` (None without one).

    Raises:
        OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, ValueError: the file
            cannot be read (:func:`read_predictions_file`).
    """
    path = run_path / PREDICTIONS_FILE
    return read_predictions_file(path) if path.exists() else None


def save_report_images(data: PreparedData, config: Mapping[str, Any], run_path: str | Path) -> Path:
    """Write ``REPORT_IMAGES_FILE`` into a run directory from the run's prepared data and its
    ``predictions.npz`` (when written); returns its path. Called when training ends.

    Args:
        data: the data the run trained on.
        config: the run's resolved config, as a dict.
        run_path: the run directory.
    """
    path = Path(run_path) / REPORT_IMAGES_FILE
    images = collect_report_images(splits_from_prepared(data), config, read_predictions(Path(run_path)))
    arrays: dict[str, np.ndarray] = {
        "class_names": np.asarray(images.class_names, dtype=str),
        "image_shape": np.asarray(images.image_shape, dtype=np.int64),
        "samples_x": images.samples_x, "samples_y": np.asarray(images.samples_y, dtype=np.int64),
        "test_index": images.test_index, "test_labels": np.asarray(images.test_labels, dtype=np.int64),
        "predictions_split": np.asarray(images.predictions_split),
    }
    arrays.update({f"counts_{split}": c for split, c in images.split_counts.items() if c is not None})
    if images.test_images is not None:
        arrays["test_images"] = images.test_images
    if images.preview:
        arrays["preview_names"] = np.asarray([name for name, _ in images.preview], dtype=str)
        # One array per row: rows differ in size when augment.low_res shrinks the training images.
        arrays.update({f"preview_images_{i}": x for i, (_, x) in enumerate(images.preview)})  # (n, H, W, C)
    elif images.preview_note:
        arrays["preview_note"] = np.asarray(images.preview_note)
    atomic_write_with(path, lambda handle: np.savez_compressed(handle, **arrays))
    return path


def load_report_images(run_path: str | Path) -> ReportImages | None:
    """The saved ``REPORT_IMAGES_FILE`` of a run directory; None when the run has none.

    Raises:
        OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, ValueError: the file
            cannot be read (EOFError: it is empty; BadZipFile: it is truncated; zlib.error: a
            compressed member is damaged).
    """
    path = Path(run_path) / REPORT_IMAGES_FILE
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as saved:
        a = {name: np.asarray(saved[name]) for name in saved.files}
    counts = {split: a.get(f"counts_{split}") for split in ("train", "val", "test")}
    names = [str(n) for n in a.get("preview_names", [])]
    # Older files stacked the rows into one (R, n, H, W, C) array.
    rows = list(a["preview_images"]) if "preview_images" in a else [a[f"preview_images_{i}"] for i in range(len(names))]
    preview = list(zip(names, rows, strict=True))
    c, h, w = (int(v) for v in a["image_shape"])
    return ReportImages(
        [str(n) for n in a["class_names"]], (c, h, w), counts, a["samples_x"], a["samples_y"],
        preview=preview, preview_note=str(a.get("preview_note", "")),
        test_index=a["test_index"], test_labels=a["test_labels"], test_images=a.get("test_images"),
        predictions_split=str(a.get("predictions_split", "test")),  # older files hold test images
    )


def report_images_from_dataset(config: Mapping[str, Any], predictions: Predictions | None) -> ReportImages:
    """The report's images of a run without ``REPORT_IMAGES_FILE``, read from its dataset.

    Args:
        config: the run's resolved config, as a dict.
        predictions: the run's ``predictions.npz`` (:func:`read_predictions`), or None.

    Raises:
        DataError: the dataset cannot be found or read.
    """
    data = load_run_data(config)
    return collect_report_images(splits_from_dataset(data, config), config, predictions)


__all__ = [
    "MAX_CLASSES_SHOWN",
    "REPORT_IMAGES_FILE",
    "SAMPLES_PER_CLASS",
    "TOP_LOSSES",
    "ImageSplits",
    "ReportImages",
    "collect_report_images",
    "load_report_images",
    "read_predictions",
    "report_images_from_dataset",
    "save_report_images",
    "splits_from_dataset",
    "splits_from_prepared",
]
