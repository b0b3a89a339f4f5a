"""A trained run in your hands: :func:`load` a run directory, then predict, evaluate, plot and
export with the :class:`Model` it gives, from the run directory alone (no training data).

    import trainlab.api as tl
    model = tl.load("runs/mnist-mlp/20261206-101500-s0-3f2a")
    model.predict(images).labels        # images: (N, H, W, C) pixels, image files or a folder
    model.metrics                       # metrics.csv as a pandas DataFrame (a list without pandas)
    model.plot_curves()                 # the report's learning curves, a matplotlib Figure
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainlab.errors import DataError
from trainlab.predict import (
    TrainedRun,
    evaluate_run,
    open_trained_run,
    predict_arrays,
    predict_paths,
)
from trainlab.predict_files import list_images
from trainlab.runs import open_run_dir

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from trainlab.config import RunConfig


@dataclass
class Predictions:
    """What :meth:`Model.predict` gives.

    Attributes:
        labels: predicted class indices, int64 (N,).
        probabilities: softmax probabilities, float32 (N, K).
        class_names: the run's class names (K).
        ids: one per prediction: the file for images read from files, else the row index.
        skipped: ``(file, reason)`` of files left out (``skip_corrupt``).
    """

    labels: np.ndarray
    probabilities: np.ndarray
    class_names: list[str]
    ids: list[Any]
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        """The predicted class names."""
        return [self.class_names[int(i)] for i in self.labels]

    def to_frame(self) -> Any:
        """A pandas DataFrame: ``id``, ``label``, ``name`` and one ``prob_<class>`` column per class.

        Raises:
            ImportError: pandas is not installed (``pip install 'trainlab[notebook]'``).
        """
        import pandas as pd

        frame = pd.DataFrame({"id": [str(i) for i in self.ids], "label": self.labels, "name": self.names})
        for k, name in enumerate(self.class_names):
            frame[f"prob_{name}"] = self.probabilities[:, k]
        return frame


class Model:
    """A trained run, loaded with its engine's loader (see :func:`load`).

    Attributes:
        path: the run directory.
        config: its resolved config.
        class_names: the class names, in label order.
        input_shape: (C, H, W) of one image.
        summary: its ``summary.json``.
    """

    def __init__(self, trained: TrainedRun) -> None:
        self._trained = trained
        self.path: Path = trained.path
        self.config: RunConfig = trained.config
        self.class_names: list[str] = list(trained.spec.class_names)
        self.input_shape: tuple[int, int, int] = tuple(trained.spec.input_shape)  # type: ignore[assignment]
        self.summary: dict[str, Any] = trained.summary

    def __repr__(self) -> str:
        accuracy = self.summary.get("test_accuracy")
        shown = f", test accuracy {accuracy:.4f}" if isinstance(accuracy, float) else ""
        return (f"Model({str(self.path)!r}: {self.config.engine} {self.config.model.type}, "
                f"{len(self.class_names)} classes{shown})")

    @property
    def module(self) -> Any:
        """The trained network in evaluation mode: a ``torch.nn.Module`` (torch engine) or the
        NumPy engine's ``Sequential``. Its inputs are normalised images; :meth:`predict`
        normalises for you."""
        return self._trained.loader.model

    @property
    def metrics(self) -> Any:
        """``metrics.csv``: a pandas DataFrame when pandas is installed, else a list of dicts."""
        rows = open_run_dir(self.path).metrics
        try:
            import pandas as pd
        except ImportError:
            return rows
        return pd.DataFrame(rows)

    def predict(self, images: np.ndarray | str | Path | Sequence[str | Path], *, tta: bool | None = None,
                resize: bool = False, skip_corrupt: bool = False) -> Predictions:
        """Predict images: pixels, image files, or a folder of them (subfolders included).

        Args:
            images: an array of (N, H, W, C) or one (H, W, C) image, pixels on the 0..255
                scale (uint8 or float); or a folder; or image files.
            tta: average with the mirror images; default the run's ``train.tta``.
            resize: files only: resize images of another size to the run's input size.
            skip_corrupt: files only: leave out unreadable files and files over the run's
                ``data.max_image_pixels`` (listed in ``skipped``).

        Raises:
            DataError: pixels of the wrong shape, an image of another size without ``resize``,
                an empty folder.
            CorruptDataError, ImageTooLargeError: an unreadable or too large file without
                ``skip_corrupt``.
        """
        if isinstance(images, np.ndarray):
            batch = images[None] if images.ndim == 3 else images
            labels, probabilities = predict_arrays(self._trained, batch, tta)
            return Predictions(labels, probabilities, self.class_names, list(range(len(labels))))
        if isinstance(images, str | Path):
            folder = Path(images)
            files = list_images(folder) if folder.is_dir() else [folder]
            if not files:
                raise DataError(f"{folder}: no image files in it (or its subfolders)")
        else:
            files = [Path(p) for p in images]
        read = predict_paths(self._trained, files, resize=resize, skip_corrupt=skip_corrupt, tta=tta)
        return Predictions(read.labels, read.probabilities, self.class_names, list(read.kept), read.skipped)

    def evaluate(self, *, tta: bool | None = None, data_dir: str | Path | None = None) -> dict[str, Any]:
        """Accuracy and loss on the run's test split (its validation split when the dataset has
        no labelled test split); this one reads the run's dataset (see
        :func:`trainlab.predict.evaluate_run`), on the device the model was loaded to."""
        device = getattr(self._trained.loader, "device", None)  # torch runs only
        return evaluate_run(self.path, tta=tta, data_dir=data_dir, device=None if device is None else str(device))

    def plot_curves(self) -> Figure:
        """The report's learning curves (loss, accuracy, the lr when it changes) of every split."""
        from trainlab.report.figures import learning_curves

        rows = open_run_dir(self.path).metrics
        return learning_curves(rows, steps_per_epoch=None)

    def plot_confusion(self) -> Figure:
        """The report's confusion matrices (counts and rates) of the run's final predictions.

        Raises:
            DataError: the run saved no labelled predictions (``output.save_predictions``).
        """
        from trainlab.report.artifacts import read_predictions_file
        from trainlab.report.figures import confusion_matrices
        from trainlab.run_files import PREDICTIONS_FILE

        path = self.path / PREDICTIONS_FILE
        if not path.exists():
            raise DataError(f"{self.path}: no {PREDICTIONS_FILE} (output.save_predictions was off, or the run "
                            "has not finished)")
        saved = read_predictions_file(path)
        if saved.labels is None:
            raise DataError(f"{path}: its split has no labels, so there is no confusion matrix")
        k = len(self.class_names)
        counts = np.bincount(saved.labels * k + saved.probabilities.argmax(1), minlength=k * k).reshape(k, k)
        return confusion_matrices(counts, self.class_names, f"{saved.split} split")

    def export(self, format: str = "torchscript", out: str | Path | None = None) -> Path:
        """Write the model as TorchScript or ONNX with its normalisation folded in
        (see :func:`trainlab.export.export_run`); returns the file."""
        from trainlab.export import export_run

        return export_run(self.path, format, out)


def load(run_dir: str | Path, *, device: str | None = None) -> Model:
    """Load a trained run directory, from the directory alone (no training data needed).

    Args:
        run_dir: a run directory with a checkpoint.
        device: torch runs only: where to compute. Default the run's ``train.device``.

    Raises:
        RunDirError: not a run directory, or no checkpoint to load.
    """
    return Model(open_trained_run(run_dir, device=device))


__all__ = ["Model", "Predictions", "load"]
