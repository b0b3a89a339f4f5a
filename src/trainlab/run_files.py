"""The files of one run directory, each named once, and :class:`RunDir`, which reads and writes them.

A run directory holds everything needed to use its model without the training data: the
model (``config.yaml``), its trained weights (the checkpoint) and, in :data:`MODEL_FILE` and
:data:`NORMALIZER_FILE`, what the data contributed (:class:`ModelSpec`: input shape, classes,
normaliser), written when the run starts.

Where run directories come from (creation, resume, overwrite, clean-up): :mod:`trainlab.runs`.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from trainlab.errors import RunDirError
from trainlab.io import atomic_save_npz, atomic_write_json, atomic_write_text, require_checkpoint

if TYPE_CHECKING:
    from trainlab.config import RunConfig
    from trainlab.data import PreparedData

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"
STEPS_FILE = "steps.csv"
SUMMARY_FILE = "summary.json"
LOG_FILE = "run.log"
#: Written when trainlab creates a run directory: ``overwrite`` removes only folders holding it.
MARKER_FILE = ".trainlab-run"
#: What the model needs from the data to predict new images (:class:`ModelSpec`), as JSON.
MODEL_FILE = "model.json"
#: The normaliser's arrays (per-channel or per-position statistics) that MODEL_FILE names.
NORMALIZER_FILE = "normalizer.npz"
#: The images a run's report shows, saved when training ends (:mod:`trainlab.report.samples`).
REPORT_IMAGES_FILE = "report_images.npz"
#: The test split's (else the validation split's) probabilities and labels, after and before training.
PREDICTIONS_FILE = "predictions.npz"
INITIAL_PREDICTIONS_FILE = "predictions_initial.npz"
#: The torch engine's layer table of the model; a gradient check's result (``trainlab gradcheck --save``).
MODEL_SUMMARY_FILE = "model_summary.txt"
GRADCHECK_FILE = "gradcheck.json"
#: The report (of a run, or of a study in its directory) and its figures' folder.
REPORT_FILE = "report.html"
FIGURES_DIR = "figures"
#: The checkpoint of each engine: ``checkpoint.npz`` (numpy) or ``checkpoint.pt`` (torch).
CHECKPOINT_STEM = "checkpoint"
#: Files a run may have written before its first training step: what a refused start leaves.
START_FILES = frozenset({MARKER_FILE, CONFIG_FILE, LOG_FILE, SUMMARY_FILE, METRICS_FILE, STEPS_FILE,
                         MODEL_FILE, NORMALIZER_FILE, f"{CHECKPOINT_STEM}.npz", f"{CHECKPOINT_STEM}.pt",
                         INITIAL_PREDICTIONS_FILE, MODEL_SUMMARY_FILE})
# Bumped when MODEL_FILE changes in a way an older reader would misread.
MODEL_FORMAT = 1
# What np.load raises on a missing, damaged or pickle-holding archive.
_UNREADABLE = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error)

# Leading metrics columns in a fixed order; engines may add any others after these.
METRICS_COLUMNS = ("epoch", "step", "split", "loss", "accuracy", "lr")

SUMMARY_KEYS = (
    "test_accuracy",
    "test_loss",
    "best_val_accuracy",
    "epochs",
    "steps",
    "train_seconds",
    "images_per_second",
    "params",
    "status",
)


@dataclass(frozen=True)
class ModelSpec:
    """What a trained model needs from its dataset to predict new images.

    Attributes:
        engine: the engine that trained it (numpy or torch).
        input_shape: (C, H, W) of the images it takes.
        num_classes: units of its output layer.
        class_names: the name of each class index, in training's order.
        normalizer: the :func:`trainlab.data.normalize.fit_normalizer` dict that turned the
            training images into its inputs (statistics as lists, so it equals the original).
    """

    engine: str
    input_shape: tuple[int, int, int]
    num_classes: int
    class_names: list[str]
    normalizer: dict[str, Any]

    @classmethod
    def of(cls, engine: str, data: PreparedData) -> ModelSpec:
        """The spec of a model trained by ``engine`` on the prepared ``data``."""
        channels, height, width = data.input_shape
        return cls(engine, (int(channels), int(height), int(width)), int(data.num_classes),
                   [str(name) for name in data.class_names], dict(data.normalizer))


@dataclass
class RunDir:
    """One run's directory and its files. Get one from :func:`trainlab.runs.create_run_dir`,
    :func:`~trainlab.runs.resume_run_dir` or :func:`~trainlab.runs.open_run_dir`.

    Attributes:
        path: the directory.
        fresh: this process created it, so :func:`~trainlab.runs.discard_run_dir` may remove
            it again after a refused start. Default False.
    """

    path: Path
    _rows: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _columns: list[str] = field(default_factory=lambda: list(METRICS_COLUMNS), repr=False)
    fresh: bool = False

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def steps_path(self) -> Path:
        return self.path / STEPS_FILE

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY_FILE

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def model_summary_path(self) -> Path:
        return self.path / MODEL_SUMMARY_FILE

    @property
    def report_path(self) -> Path:
        return self.path / REPORT_FILE

    def predictions_path(self, initial: bool = False) -> Path:
        """``predictions.npz``, or with ``initial`` the predictions before training."""
        return self.path / (INITIAL_PREDICTIONS_FILE if initial else PREDICTIONS_FILE)

    def checkpoint_path(self, suffix: str = ".npz") -> Path:
        """Path of the checkpoint file; the engine picks the suffix (``.npz`` or ``.pt``)."""
        return self.path / f"{CHECKPOINT_STEM}{suffix}"

    def trained_checkpoint(self, engine: str) -> Path:
        """The checkpoint of ``engine``'s trained model (``.pt`` for torch, else ``.npz``), which
        must exist: see :func:`trainlab.io.require_checkpoint`."""
        return require_checkpoint(self.checkpoint_path(".pt" if engine == "torch" else ".npz"))

    # -- model spec -----------------------------------------------------------------------
    def write_model(self, spec: ModelSpec) -> None:
        """Write :data:`MODEL_FILE` and :data:`NORMALIZER_FILE` atomically.

        The normaliser's list-valued statistics go to the ``.npz`` (float64, exact), the rest
        to the JSON. The arrays are written first: a ``model.json`` on disk always has its
        arrays beside it, so a kill between the two writes leaves no spec, never half of one.
        """
        arrays = {key: np.asarray(value, dtype=np.float64)
                  for key, value in spec.normalizer.items() if isinstance(value, list)}
        atomic_save_npz(self.path / NORMALIZER_FILE, arrays)
        atomic_write_json(self.model_path, {
            "format": MODEL_FORMAT,
            "engine": spec.engine,
            "input_shape": list(spec.input_shape),
            "num_classes": spec.num_classes,
            "class_names": list(spec.class_names),
            "normalizer": {k: v for k, v in spec.normalizer.items() if k not in arrays},
            "normalizer_arrays": sorted(arrays),
        })

    def read_model(self) -> ModelSpec | None:
        """The spec :meth:`write_model` wrote; None for a run from before model specs existed.

        Raises:
            RunDirError: ``model.json`` is unreadable or malformed, or its ``normalizer.npz`` is
                missing or unreadable (named).
        """
        if not self.model_path.exists():
            return None
        try:
            saved = json.loads(self.model_path.read_text(encoding="utf-8"))
            shape = tuple(int(n) for n in saved["input_shape"])
            if saved.get("format") != MODEL_FORMAT or len(shape) != 3:
                raise ValueError(f"format {saved.get('format')!r}, input_shape {shape}")
            normalizer = dict(saved["normalizer"])
            normalizer.update(self._normalizer_arrays(list(saved["normalizer_arrays"])))
            return ModelSpec(str(saved["engine"]), (shape[0], shape[1], shape[2]), int(saved["num_classes"]),
                             [str(name) for name in saved["class_names"]], normalizer)
        except (KeyError, TypeError, ValueError) as exc:
            raise RunDirError(f"{self.model_path} is not a model spec this trainlab can read "
                              f"({type(exc).__name__}: {exc})") from None

    def _normalizer_arrays(self, keys: list[str]) -> dict[str, Any]:
        """The named arrays of :data:`NORMALIZER_FILE`, as the nested lists the normaliser had."""
        path = self.path / NORMALIZER_FILE
        try:
            with np.load(path, allow_pickle=False) as saved:
                missing = sorted(set(keys) - set(saved.files))
                if missing:
                    raise RunDirError(f"{path} lacks {', '.join(missing)}, which {self.model_path} names")
                return {key: saved[key].tolist() for key in keys}
        except _UNREADABLE as exc:  # missing, truncated, not an npz, pickled objects: all unusable
            raise RunDirError(f"cannot read {path} ({type(exc).__name__}: {exc}); the run's model spec "
                              f"({self.model_path}) needs it") from None

    # -- config ---------------------------------------------------------------------------
    def write_config(self, resolved: Mapping[str, Any]) -> None:
        """Write the resolved config (a plain dict) as YAML."""
        text = yaml.safe_dump(dict(resolved), sort_keys=False, default_flow_style=None)
        atomic_write_text(self.config_path, text)

    def read_config(self) -> dict[str, Any]:
        """The resolved config as written by :meth:`write_config`.

        Raises:
            RunDirError: no ``config.yaml``, or not a YAML mapping.
        """
        if not self.config_path.exists():
            raise RunDirError(f"{self.path}: no {CONFIG_FILE}; is this a trainlab run directory?")
        try:
            loaded = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as error:  # edited or damaged by hand
            raise RunDirError(f"{self.config_path}: not readable YAML ({type(error).__name__}: {error})") from None
        if not isinstance(loaded, dict):
            raise RunDirError(f"{self.config_path}: not a mapping")
        return loaded

    def read_run_config(self) -> tuple[RunConfig, dict[str, Any]]:
        """``config.yaml`` as a validated config, and its provenance section (empty without one).

        Raises:
            RunDirError: no readable ``config.yaml``.
            ConfigError: it no longer validates.
        """
        from trainlab.config import (  # config sits below; imported when used
            PROVENANCE_KEY,
            RunConfig,
        )

        saved = self.read_config()
        provenance = saved.pop(PROVENANCE_KEY, None) or {}
        return RunConfig.from_dict(saved, source=str(self.config_path)), provenance

    # -- metrics --------------------------------------------------------------------------
    @property
    def metrics(self) -> list[dict[str, Any]]:
        """The metrics rows written so far (a copy)."""
        return [dict(row) for row in self._rows]

    def append_metrics(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Add rows and rewrite ``metrics.csv`` atomically (metrics files are small)."""
        for row in rows:
            for key in row:
                if key not in self._columns:
                    self._columns.append(key)
            self._rows.append(dict(row))
        self._flush_metrics()

    def truncate_metrics(self, last_step: int) -> None:
        """Drop rows after ``last_step``: on resume, rows logged after the checkpoint are redone."""
        self._rows = [row for row in self._rows if int(row.get("step", 0)) <= last_step]
        self._flush_metrics()

    def _flush_metrics(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self._columns, lineterminator="\n")
        writer.writeheader()
        for row in self._rows:
            writer.writerow({key: _csv_value(row.get(key)) for key in self._columns})
        atomic_write_text(self.metrics_path, buffer.getvalue())

    def load_metrics(self) -> None:
        """Read ``metrics.csv`` back into memory (numbers parsed, empty cells dropped)."""
        self._rows, self._columns = read_metrics_csv(self.metrics_path)

    # -- summary and log ------------------------------------------------------------------
    def write_summary(self, summary: Mapping[str, Any]) -> None:
        """Write ``summary.json`` atomically."""
        atomic_write_json(self.summary_path, dict(summary))

    def read_summary(self) -> dict[str, Any]:
        """The summary, or an empty dict when the run has not written one yet.

        Raises:
            RunDirError: ``summary.json`` is not a JSON object (edited or damaged by hand: the
                run writes it atomically).
        """
        if not self.summary_path.exists():
            return {}
        try:
            loaded = json.loads(self.summary_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RunDirError(f"{self.summary_path}: not readable JSON ({error})") from None
        if not isinstance(loaded, dict):
            raise RunDirError(f"{self.summary_path}: not a JSON object")
        return loaded

    def log(self, message: str) -> None:
        """Append a time-stamped line to ``run.log``. Append-only: a kill can tear only the last
        line, which a resume cuts off (:func:`drop_torn_line`) before it appends its own."""
        stamp = dt.datetime.now().isoformat(timespec="seconds")
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(f"{stamp} {message}\n")


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if hasattr(value, "item"):  # NumPy scalars
        return _csv_value(value.item())
    return value


def _parse_cell(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def drop_torn_line(path: Path) -> bool:
    """Cut an appended file (``run.log``) back to its last line end.

    A kill in the middle of an append leaves a last line without its end; the next append
    would run on from it, merging two lines into one. Returns whether a torn line was cut.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return False
    if not data or data.endswith(b"\n"):
        return False
    os.truncate(path, data.rfind(b"\n") + 1)
    return True


def read_metrics_csv(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows (numbers parsed, empty cells left out) and column names of a ``metrics.csv``."""
    if not path.exists():
        return [], list(METRICS_COLUMNS)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or METRICS_COLUMNS)
        rows = [{k: _parse_cell(v) for k, v in row.items() if v not in ("", None)} for row in reader]
    return rows, columns


__all__ = [
    "CHECKPOINT_STEM",
    "CONFIG_FILE",
    "FIGURES_DIR",
    "GRADCHECK_FILE",
    "INITIAL_PREDICTIONS_FILE",
    "LOG_FILE",
    "MARKER_FILE",
    "METRICS_COLUMNS",
    "METRICS_FILE",
    "MODEL_FILE",
    "MODEL_SUMMARY_FILE",
    "NORMALIZER_FILE",
    "PREDICTIONS_FILE",
    "REPORT_FILE",
    "REPORT_IMAGES_FILE",
    "START_FILES",
    "STEPS_FILE",
    "SUMMARY_FILE",
    "SUMMARY_KEYS",
    "ModelSpec",
    "RunDir",
    "drop_torn_line",
    "read_metrics_csv",
]
