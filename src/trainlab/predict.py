"""Use a trained run: evaluate it on its test split, or predict a folder of new images.

Both rebuild the run's model from its ``config.yaml`` and load its checkpoint (the final
weights: the checkpoint is written after restore-best) with its engine's loader
(``trainlab.engines.<engine>.inference.TrainedModel``). Predicting needs nothing else from
the run directory than its ``model.json`` and ``normalizer.npz`` (:class:`ModelSpec`: input
shape, class names, the normaliser of training), so a run directory copied to another
machine predicts without its training data. A run written before trainlab wrote those
files gets them from its dataset, prepared again with the same seed, as a line on stderr says.

:func:`evaluate_run` prepares the run's dataset again with the same seed, so its test split
is exactly the one of training and it reproduces the run's ``test_accuracy``.

:func:`predict_folder` writes a Kaggle-style submission: ``id,label`` with one row per
image of a flat folder (such as the 4,999 unlabelled Cats vs Dogs test images), the id
being the file name without its extension and the label the predicted class index
(class names in sorted folder order, as training numbered them), optionally followed by
one probability column per class.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from trainlab.config import RunConfig
from trainlab.data import PreparedData
from trainlab.data.imagefolder import (
    DEFAULT_MAX_IMAGE_PIXELS,
    IMAGE_EXTENSIONS,
    decode_image,
    natural_key,
    open_image,
    target_size,
)
from trainlab.data.normalize import apply_normalizer
from trainlab.errors import ConfigError, CorruptDataError, DataError
from trainlab.io import atomic_write_text
from trainlab.run_files import MODEL_FILE, ModelSpec, RunDir
from trainlab.runs import open_run_dir

PROVENANCE_KEY = "provenance"  # as trainlab.api.PROVENANCE_KEY (not imported: api imports every engine)

Logits = Callable[[np.ndarray, bool], np.ndarray]


@dataclass
class TrainedRun:
    """A finished run, ready to predict.

    Attributes:
        path: the run directory.
        config: its resolved config.
        spec: what its model takes and gives: input shape, class names, normaliser.
        logits: ``logits(x, tta) -> (N, K)`` float32 for normalised images x (N, C, H, W).
        summary: its ``summary.json`` (empty while unfinished).
        provenance: what the run recorded about its data and versions.
    """

    path: Path
    config: RunConfig
    spec: ModelSpec
    logits: Logits
    summary: dict[str, Any]
    provenance: dict[str, Any]

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
    config, provenance = _read_config(directory)
    spec = directory.read_model()
    if spec is None:
        print(f"{directory.path}: no {MODEL_FILE} (a run from an older trainlab): preparing its dataset "
              "again for the normaliser, input shape and class names", file=sys.stderr, flush=True)
        spec = ModelSpec.of(config.engine, _prepare(config, data_dir))
    return _trained_run(directory, config, provenance, spec, device)


def _read_config(directory: RunDir) -> tuple[RunConfig, dict[str, Any]]:
    """The run's config and its provenance section."""
    saved = directory.read_config()
    provenance = saved.pop(PROVENANCE_KEY, None) or {}
    return RunConfig.from_dict(saved, source=str(directory.config_path)), provenance


def _prepare(config: RunConfig, data_dir: str | Path | None) -> PreparedData:
    """The run's dataset, prepared as training prepared it (same seed, splits, normaliser)."""
    from trainlab.data import prepare_data

    d = config.data
    return prepare_data(d.dataset, data_dir=data_dir or d.data_dir, seed=config.seed, **d.prepare_kwargs())


def _trained_run(directory: RunDir, config: RunConfig, provenance: dict[str, Any], spec: ModelSpec,
                 device: str | None) -> TrainedRun:
    """Load the run's model with its engine's loader."""
    if config.engine == "torch":
        logits = _torch_logits(config, directory.checkpoint_path(".pt"), spec, device)
    else:
        logits = _numpy_logits(config, directory.checkpoint_path(".npz"), spec)
    return TrainedRun(directory.path, config, spec, logits, directory.read_summary(), provenance)


def _torch_logits(config: RunConfig, checkpoint: Path, spec: ModelSpec, device: str | None) -> Logits:
    from trainlab.engines.torch.inference import TrainedModel

    model = TrainedModel(config, checkpoint, spec.input_shape, spec.num_classes, device)
    return lambda x, tta: model.logits(x, tta).numpy()


def _numpy_logits(config: RunConfig, checkpoint: Path, spec: ModelSpec) -> Logits:
    from trainlab.engines.numpy.inference import TrainedModel

    return TrainedModel(config, checkpoint, spec.input_shape, spec.num_classes).logits


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


def evaluate_run(run_dir: str | Path, *, tta: bool | None = None, data_dir: str | Path | None = None,
                 device: str | None = None) -> dict[str, Any]:
    """Accuracy and loss of a trained run on its test split.

    Args:
        run_dir: the run directory.
        tta: average with the mirror images; default the run's ``train.tta``.
        data_dir: where the run's dataset is read from. Default None (the config's, then
            ``$TRAINLAB_DATA``).
        device: torch runs only: where to compute. Default the run's ``train.device``.

    Returns:
        ``run``, ``engine``, ``split``, ``examples``, ``tta``, ``test_accuracy``,
        ``test_loss``, the run's own ``summary_test_accuracy`` (None while unfinished),
        ``matches_summary`` (None when there is nothing to compare), ``data_fingerprint_matches``.

    Raises:
        DataError: the run's dataset has no labelled test split.
    """
    directory = open_run_dir(run_dir)
    config, provenance = _read_config(directory)
    data = _prepare(config, data_dir)
    if data.x_test is None or data.y_test is None:
        raise DataError(f"{config.data.dataset} has no labelled test split to evaluate on; "
                        f"use `trainlab predict {directory.path} --images DIR --out FILE` for unlabelled images")
    # The run's own spec when it has one: its model is built for the shape it was trained on.
    spec = directory.read_model() or ModelSpec.of(config.engine, data)
    run = _trained_run(directory, config, provenance, spec, device)
    use_tta = run.config.train.tta if tta is None else tta
    logits = run.logits(data.x_test, use_tta)  # (N, K)
    accuracy = _accuracy(run.config, logits, data.y_test)
    summary_accuracy = run.summary.get("test_accuracy")
    same_tta = bool(run.summary.get("tta", False)) == use_tta
    recorded = (run.provenance.get("data") or {}).get("fingerprint")
    return {
        "run": str(run.path),
        "engine": run.config.engine,
        "split": "test",
        "examples": len(data.y_test),
        "tta": use_tta,
        "test_accuracy": accuracy,
        "test_loss": _mean_loss(run.config, logits, data.y_test),
        "summary_test_accuracy": summary_accuracy,
        "matches_summary": (abs(accuracy - summary_accuracy) < 1e-9) if summary_accuracy is not None and same_tta
        else None,
        "data_fingerprint_matches": None if recorded is None else recorded == data.fingerprint,
    }


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, in natural order (``2.jpg`` before ``10.jpg``).

    Raises:
        DataError: the folder does not exist, holds no images, or two files share an id.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; --images takes a folder of image files")
    files = sorted((p for p in root.iterdir()
                    if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")),
                   key=lambda p: natural_key(p.name))
    if not files:
        raise DataError(f"{root}: no image files ({'/'.join(sorted(IMAGE_EXTENSIONS))}) directly in this folder")
    seen: dict[str, Path] = {}
    for path in files:
        if path.stem in seen:
            raise DataError(f"{path} and {seen[path.stem]} have the same id {path.stem!r}; rename one of them")
        seen[path.stem] = path
    return files


def read_images(files: list[Path], input_shape: tuple[int, int, int],
                resize: int | tuple[int, int] | None,
                max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode ``files`` to uint8 (N, H, W, C) as training decoded its images.

    Raises:
        ImageTooLargeError: a file over ``max_pixels`` pixels (the run's data.max_image_pixels).
        CorruptDataError: a file that cannot be decoded (named).
        DataError: an image whose size differs from training's and the run does not resize.
    """
    channels, height, width = input_shape
    size = target_size(resize)
    images = np.empty((len(files), height, width, channels), dtype=np.uint8)  # (N, H, W, C)
    for i, path in enumerate(files):
        try:
            if channels == 3:
                arr = decode_image(path, size, max_pixels)  # (H, W, 3), exactly the training reader
            else:
                with open_image(path, max_pixels) as im:
                    im.load()
                    gray = im.convert("L")
                if size is not None and gray.size != (size[1], size[0]):
                    gray = gray.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                arr = np.asarray(gray, dtype=np.uint8)[..., None]  # (H, W, 1)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
            raise CorruptDataError(f"{path}: corrupt or unreadable image ({type(exc).__name__}: {exc}); "
                                   "fix or remove it, then predict again") from None
        if arr.shape[:2] != (height, width):
            raise DataError(
                f"{path}: image is {arr.shape[1]}x{arr.shape[0]} (WxH) but the run was trained on "
                f"{width}x{height} images and its config does not resize (data.resize is null); resize the "
                f"images to {width}x{height}, or train a run with data.resize"
            )
        images[i] = arr
    return images


def predict_folder(
    run_dir: str | Path,
    images: str | Path,
    out: str | Path,
    *,
    probabilities: bool = False,
    label_names: bool = False,
    tta: bool | None = None,
    data_dir: str | Path | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Predict every image of a flat folder and write a Kaggle-style CSV.

    Args:
        run_dir: the trained run.
        images: a folder of image files (ids are the file names without extension).
        out: the CSV to write (atomically).
        probabilities: add one ``prob_<class>`` column per class. Default False.
        label_names: write class names instead of class indices in ``label``. Default False.
        tta: average with the mirror images; default the run's ``train.tta``.
        data_dir: a run without ``model.json`` only: where its dataset is read from (for its
            normaliser, input shape and class names). Default None.
        device: torch runs only: where to compute. Default the run's ``train.device``.

    Returns:
        ``out``, ``rows``, ``columns``, ``class_names``, ``counts`` (predictions per class).

    Raises:
        DataError: no images, an unreadable image, or an image of another size.
        RunDirError: no checkpoint, or one from an incompatible config.
    """
    out_path = Path(out)
    if out_path.is_dir():
        raise ConfigError(f"--out {out_path} is a folder; give a file name such as submission.csv")
    files = list_images(images)  # before the (slower) model and data loading: fail fast
    run = open_trained_run(run_dir, data_dir=data_dir, device=device)
    spec = run.spec
    x = apply_normalizer(read_images(files, spec.input_shape, run.config.data.resize,
                                     run.config.data.max_image_pixels), spec.normalizer)
    probs = run.probabilities(x, run.config.train.tta if tta is None else tta)  # (N, K)
    predicted = probs.argmax(1)
    names = spec.class_names
    columns = ["id", "label"] + ([f"prob_{name}" for name in names] if probabilities else [])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for path, k, row in zip(files, predicted, probs, strict=True):
        label = names[int(k)] if label_names else int(k)
        writer.writerow([path.stem, label, *(f"{p:.6f}" for p in row)] if probabilities else [path.stem, label])
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_path, buffer.getvalue())
    counts = np.bincount(predicted, minlength=len(names))
    return {"out": str(out_path), "rows": len(files), "columns": columns, "class_names": names,
            "counts": {name: int(c) for name, c in zip(names, counts, strict=True)}}


__all__ = ["TrainedRun", "evaluate_run", "list_images", "open_trained_run", "predict_folder", "read_images"]
