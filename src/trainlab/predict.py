"""Use a trained run: evaluate it on its test split, or predict new images.

Both rebuild the run's model from its ``config.yaml`` and load its checkpoint (the final
weights: the checkpoint is written after restore-best) with its engine's loader
(``trainlab.engines.<engine>.inference.TrainedModel``). Predicting needs nothing else from
the run directory than its ``model.json`` and ``normalizer.npz`` (:class:`ModelSpec`: input
shape, class names, the normaliser of training), so a run directory copied to another
machine predicts without its training data. A run written before trainlab wrote those
files gets them from its dataset, prepared again with the same seed, as a line on stderr says.

:func:`evaluate_run` prepares the run's dataset again with the same seed, so its test split
is exactly the one of training and it reproduces the run's ``test_accuracy``; a dataset
without a labelled test split (an image folder with an unlabelled or no ``test/``) is
evaluated on the run's validation split instead, which is as exactly reproduced.

Predicting goes from pixels (:func:`predict_arrays`) to files (:func:`predict_paths`: decoded
as training decoded its images, optionally resized, unreadable ones optionally skipped) to a
folder (:func:`predict_folder`), which writes a Kaggle-style submission: ``id,label`` with one
row per image of the folder and its subfolders (such as the 4,999 unlabelled Cats vs Dogs
test images), the id being the file's path relative to the folder without its extension and
the label the predicted class index (class names in natural folder order, 2 before 10, as
training numbered them), optionally followed by one probability column per class. Finding, decoding
and writing files is :mod:`trainlab.predict_files`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from trainlab.config import RunConfig
from trainlab.data import PreparedData
from trainlab.data.imagefolder import target_size
from trainlab.data.normalize import apply_normalizer
from trainlab.errors import ConfigError, DataError
from trainlab.predict_files import (
    image_id,
    list_images,
    read_image_files,
    read_images,
    write_skipped,
    write_submission,
)
from trainlab.run_files import MODEL_FILE, ModelSpec, RunDir
from trainlab.runs import open_run_dir


@dataclass
class TrainedRun:
    """A finished run, ready to predict.

    Attributes:
        path: the run directory.
        config: its resolved config.
        spec: what its model takes and gives: input shape, class names, normaliser.
        loader: the engine's loader (``TrainedModel`` of :mod:`trainlab.engines.torch.inference`
            or :mod:`trainlab.engines.numpy.inference`); ``loader.model`` is the network.
        summary: its ``summary.json`` (empty while unfinished).
        provenance: what the run recorded about its data and versions.
    """

    path: Path
    config: RunConfig
    spec: ModelSpec
    loader: Any
    summary: dict[str, Any]
    provenance: dict[str, Any]

    def logits(self, x: np.ndarray, tta: bool | str) -> np.ndarray:
        """Logits (N, K) float32 of normalised images x (N, C, H, W); ``tta``: a ``train.tta`` value."""
        out = self.loader.logits(x, tta)
        return out.numpy() if hasattr(out, "numpy") else out

    def probabilities(self, x: np.ndarray, tta: bool) -> np.ndarray:
        """Softmax probabilities (N, K) of normalised images x (N, C, H, W)."""
        z = self.logits(x, tta).astype(np.float64)  # (N, K)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def open_trained_run(run_dir: str | Path, *, data_dir: str | Path | None = None,
                     device: str | None = None) -> TrainedRun:
    """Open ``run_dir`` and load its trained model, from the run directory alone.

    Args:
        run_dir: a run directory (holding ``config.yaml``, ``model.json`` and a checkpoint).
        data_dir: a run without ``model.json`` (written before trainlab wrote one) only:
            where its dataset is read from. Default None (the config's, then ``$TRAINLAB_DATA``).
        device: torch runs only: where to compute. Default the run's ``train.device``.

    Raises:
        RunDirError: not a run directory, no checkpoint, an unreadable ``model.json``, or a
            checkpoint that does not fit the config's model.
        DataError: a run without ``model.json`` whose dataset cannot be read.
    """
    directory = open_run_dir(run_dir)
    config, provenance = directory.read_run_config()
    spec = directory.read_model()
    directory.trained_checkpoint(config.engine)  # before the dataset is prepared again below
    if spec is None:
        print(f"{directory.path}: no {MODEL_FILE} (a run from an older trainlab): preparing its dataset "
              "again for the normaliser, input shape and class names", file=sys.stderr, flush=True)
        spec = ModelSpec.of(config.engine, prepare_run_data(config, data_dir))
    return _trained_run(directory, config, provenance, spec, device)


def prepare_run_data(config: RunConfig, data_dir: str | Path | None = None) -> PreparedData:
    """The run's dataset, prepared as training prepared it (same seed, splits, normaliser),
    read from ``data_dir``, else the config's, else ``$TRAINLAB_DATA``."""
    from trainlab.data import prepare_data

    d = config.data
    return prepare_data(d.dataset, data_dir=data_dir or d.data_dir, seed=config.seed, **d.prepare_kwargs())


def _trained_run(directory: RunDir, config: RunConfig, provenance: dict[str, Any], spec: ModelSpec,
                 device: str | None) -> TrainedRun:
    """Load the run's model with its engine's loader."""
    loader: Any
    if config.engine == "torch":
        from trainlab.engines.torch.inference import TrainedModel as TorchModel

        loader = TorchModel(config, directory.checkpoint_path(".pt"), spec.input_shape, spec.num_classes, device)
    else:
        from trainlab.engines.numpy.inference import TrainedModel as NumpyModel

        loader = NumpyModel(config, directory.checkpoint_path(".npz"), spec.input_shape, spec.num_classes)
    return TrainedRun(directory.path, config, spec, loader, directory.read_summary(), provenance)


def _accuracy(config: RunConfig, logits: np.ndarray, y: np.ndarray) -> float:
    """Fraction correct, computed as the run's engine computes it (torch: a float32 mean)."""
    correct = logits.argmax(1) == y
    return float(correct.astype(np.float32).mean(dtype=np.float32)) if config.engine == "torch" \
        else int(correct.sum()) / len(y)


def _mean_loss(config: RunConfig, logits: np.ndarray, y: np.ndarray) -> float:
    """The run's data loss per example (the training loss without penalties), computed by
    its engine's own loss code, as the run's summary was."""
    if config.engine == "torch":
        import torch

        from trainlab.engines.torch.runtime import data_loss

        loss = float(data_loss(config, torch.from_numpy(logits), torch.from_numpy(y), None))
    else:
        from trainlab.engines.numpy.engine import make_loss

        loss, _ = make_loss(config)(logits, y)
    return loss / len(y) if config.loss.reduction == "sum" else loss


def _labelled_split(data: PreparedData, dataset: str) -> tuple[str, np.ndarray, np.ndarray]:
    """The split to evaluate on: the test split when it is labelled and not empty, else the
    validation split (an image folder whose test/ is unlabelled or absent).

    Raises:
        DataError: neither has labelled rows.
    """
    if data.x_test is not None and data.y_test is not None and len(data.y_test):
        return "test", data.x_test, data.y_test
    if len(data.y_val):
        return "val", data.x_val, data.y_val
    raise DataError(f"{dataset} has no labelled test split and the run has no validation split "
                    "(data.val_fraction 0, no data.val_size) to evaluate on; use `trainlab predict RUN --images DIR --out FILE` "
                    "for unlabelled images")


def evaluate_run(run_dir: str | Path, *, tta: bool | None = None, data_dir: str | Path | None = None,
                 device: str | None = None) -> dict[str, Any]:
    """Accuracy and loss of a trained run on its test split, or on its validation split when
    the dataset has no labelled test split (``split`` says which).

    Args:
        run_dir: the run directory.
        tta: average with the mirror images; default the run's ``train.tta``.
        data_dir: where the run's dataset is read from. Default None (the config's, then
            ``$TRAINLAB_DATA``).
        device: torch runs only: where to compute. Default the run's ``train.device``.

    Returns:
        ``run``, ``engine``, ``split`` (``"test"`` or ``"val"``), ``examples``, ``tta``,
        ``accuracy`` and ``loss`` on that split, the same as ``<split>_accuracy`` and
        ``<split>_loss``; the run's own figure ``summary_accuracy`` (its summary's
        ``test_accuracy`` or ``final_val_accuracy``; None while unfinished), the same as
        ``summary_<split>_accuracy``; ``matches_summary`` (None when there is nothing to
        compare), ``data_fingerprint_matches``.

    Raises:
        DataError: the run's dataset has neither a labelled test split nor a validation split.
    """
    directory = open_run_dir(run_dir)
    config, provenance = directory.read_run_config()
    data = prepare_run_data(config, data_dir)
    split, x, y = _labelled_split(data, config.data.dataset)
    # The run's own spec when it has one: its model is built for the shape it was trained on.
    spec = directory.read_model() or ModelSpec.of(config.engine, data)
    run = _trained_run(directory, config, provenance, spec, device)
    use_tta = run.config.train.tta if tta is None else tta
    logits = run.logits(x, use_tta)  # (N, K)
    accuracy = _accuracy(run.config, logits, y)
    loss = _mean_loss(run.config, logits, y)
    # The summary's figure on the same split, with the final weights (val: "final_val_accuracy").
    summary_accuracy = run.summary.get("test_accuracy" if split == "test" else "final_val_accuracy")
    same_tta = bool(run.summary.get("tta", False)) == use_tta
    recorded = (run.provenance.get("data") or {}).get("fingerprint")
    return {
        "run": str(run.path),
        "engine": run.config.engine,
        "split": split,
        "examples": len(y),
        "tta": use_tta,
        "accuracy": accuracy,
        "loss": loss,
        f"{split}_accuracy": accuracy,
        f"{split}_loss": loss,
        "summary_accuracy": summary_accuracy,
        f"summary_{split}_accuracy": summary_accuracy,
        "matches_summary": (abs(accuracy - summary_accuracy) < 1e-9) if summary_accuracy is not None and same_tta
        else None,
        "data_fingerprint_matches": None if recorded is None else recorded == data.fingerprint,
    }


def predict_arrays(trained: TrainedRun, images: np.ndarray, tta: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Predict images given as pixels.

    Args:
        trained: the run (:func:`open_trained_run`).
        images: (N, H, W, C) pixels on the 0..255 scale, uint8 or float, in the run's input
            size and channels (``trained.spec.input_shape`` is (C, H, W)): the layout that
            :func:`~trainlab.predict_files.read_images` gives. The run's normaliser is applied here.
        tta: average with the mirror images; default the run's ``train.tta``.

    Returns:
        ``(labels, probabilities)``: class indices int64 (N,) and softmax float32 (N, K).

    Raises:
        DataError: ``images`` is not (N, H, W, C) of the run's input shape.
    """
    channels, height, width = trained.spec.input_shape
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[1:] != (height, width, channels):
        hint = "; transpose (N, C, H, W) with images.transpose(0, 2, 3, 1)" \
            if x.ndim == 4 and x.shape[1:] == (channels, height, width) and channels not in (height, width) else ""
        raise DataError(f"images of shape {x.shape}: the run takes (N, {height}, {width}, {channels}) "
                        f"(N, H, W, C) pixels on the 0..255 scale{hint}")
    k = trained.spec.num_classes
    if len(x) == 0:  # nothing to run the model on
        return np.zeros(0, dtype=np.int64), np.zeros((0, k), dtype=np.float32)
    probs = trained.probabilities(apply_normalizer(x, trained.spec.normalizer),
                                  trained.config.train.tta if tta is None else tta)  # (N, K)
    return probs.argmax(1).astype(np.int64), probs


class PathPredictions(NamedTuple):
    """What :func:`predict_paths` gives: predictions of the files it could read, and the others."""

    labels: np.ndarray  # (N,) int64 class indices
    probabilities: np.ndarray  # (N, K) float32
    kept: list[Path]  # the N files predicted, in the order given
    skipped: list[tuple[Path, str]]  # (file, reason) of the files left out


def predict_paths(trained: TrainedRun, paths: Sequence[str | Path], resize: bool = False,
                  skip_corrupt: bool = False, tta: bool | None = None) -> PathPredictions:
    """Predict image files.

    Args:
        trained: the run (:func:`open_trained_run`).
        paths: image files (any format Pillow reads), decoded as training decoded its images.
        resize: resize images of another size to the run's input size (bilinear, as the
            image-folder reader resizes for ``data.resize``); a run trained with
            ``data.resize`` always resizes. Default False: such an image is refused.
        skip_corrupt: leave out unreadable files and files over the run's
            ``data.max_image_pixels`` and list them in ``skipped``. Default False: the first
            one raises.
        tta: average with the mirror images; default the run's ``train.tta``.

    Raises:
        CorruptDataError, ImageTooLargeError: an unreadable or too large file, without ``skip_corrupt``.
        DataError: an image of another size, without ``resize``.
    """
    _, height, width = trained.spec.input_shape
    size = target_size(trained.config.data.resize) or ((height, width) if resize else None)
    read = read_image_files([Path(p) for p in paths], trained.spec.input_shape, size,
                            trained.config.data.max_image_pixels, skip_corrupt=skip_corrupt)
    labels, probs = predict_arrays(trained, read.images, tta)
    return PathPredictions(labels, probs, read.kept, read.skipped)


def predict_folder(
    run_dir: str | Path,
    images: str | Path,
    out: str | Path,
    *,
    probabilities: bool = False,
    label_names: bool = False,
    tta: bool | None = None,
    resize: bool = False,
    skip_corrupt: bool = False,
    data_dir: str | Path | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Predict every image of a folder and its subfolders and write a Kaggle-style CSV.

    Args:
        run_dir: the trained run.
        images: a folder of image files; the ids are their paths relative to it without the
            extension (the file name's stem for a file directly in it), see :func:`list_images`.
        out: the CSV to write (atomically).
        probabilities: add one ``prob_<class>`` column per class. Default False.
        label_names: write class names instead of class indices in ``label``. Default False.
        tta: average with the mirror images; default the run's ``train.tta``.
        resize: resize images of another size to the run's input size (see :func:`predict_paths`).
        skip_corrupt: leave unreadable and too large files out of the CSV and list them, one
            ``path<TAB>reason`` a line, in ``<out>.skipped.txt`` (see :func:`predict_paths`).
        data_dir: a run without ``model.json`` only: where its dataset is read from (for its
            normaliser, input shape and class names). Default None.
        device: torch runs only: where to compute. Default the run's ``train.device``.

    Returns:
        ``out``, ``rows``, ``columns``, ``class_names``, ``counts`` (predictions per class),
        ``skipped`` (``(path, reason)`` pairs) and ``skipped_file`` (None when nothing was skipped).

    Raises:
        DataError: no images, no readable image, an unreadable image (without ``skip_corrupt``),
            or an image of another size (without ``resize``).
        RunDirError: no checkpoint, or one from an incompatible config.
        ConfigError: ``out`` is a folder.
    """
    out_path = Path(out)
    if out_path.is_dir():
        raise ConfigError(f"--out {out_path} is a folder; give a file name such as submission.csv")
    root = Path(images)
    files = list_images(root)  # before the (slower) model and data loading: fail fast
    run = open_trained_run(run_dir, data_dir=data_dir, device=device)
    result = predict_paths(run, files, resize=resize, skip_corrupt=skip_corrupt, tta=tta)
    if not result.kept:
        raise DataError(f"{root}: none of its {len(files)} image files could be read (first: "
                        f"{result.skipped[0][0]}: {result.skipped[0][1]})")
    names = run.spec.class_names
    columns = write_submission(out_path, [image_id(p, root) for p in result.kept], result.labels,
                               result.probabilities if probabilities else None, names, label_names)
    listed = write_skipped(out_path, result.skipped)
    counts = np.bincount(result.labels, minlength=len(names))
    return {"out": str(out_path), "rows": len(result.kept), "columns": columns, "class_names": names,
            "counts": {name: int(c) for name, c in zip(names, counts, strict=True)},
            "skipped": [(str(p), reason) for p, reason in result.skipped],
            "skipped_file": None if listed is None else str(listed)}


__all__ = ["PathPredictions", "TrainedRun", "evaluate_run", "list_images", "open_trained_run", "predict_arrays",
           "predict_folder", "predict_paths", "prepare_run_data", "read_images"]
