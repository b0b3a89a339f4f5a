"""Everything a run report reads from a run directory, loaded without ever failing on a
missing or partial file: what is absent becomes a note that the report shows.

Optional inputs (read when present):

- ``predictions_initial.npz``: probabilities of the initial model (before any update), for
  the confusion matrix before training;
- ``gradcheck.json``: the result of :func:`trainlab.api.gradcheck` for the run's model
  (``trainlab gradcheck CONFIG --save RUN_DIR`` writes it).

Both prediction files (``predictions.npz`` and ``predictions_initial.npz``) hold the test
split, or the validation split when the run has no labelled test split; their ``split``
entry says which (a file without it is of the test split).
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainlab.config import RunConfig
from trainlab.diagnostics import early_stopping_step, log_warnings
from trainlab.errors import RunDirError
from trainlab.run_files import (
    CONFIG_FILE,
    GRADCHECK_FILE,
    INITIAL_PREDICTIONS_FILE,
    LOG_FILE,
    MODEL_SUMMARY_FILE,
    PREDICTIONS_FILE,
    SUMMARY_FILE,
    RunDir,
)
from trainlab.runs import open_run_dir

# What each status means to a reader of the report.
STATUS_TEXT = {
    "completed": "The run completed.",
    "stopped_early": "The run stopped early.",
    "failed": "The run failed.",
    "interrupted": "The run was interrupted (Ctrl-C or SIGTERM); it can be resumed.",
    "running": "The run is still running, or was killed before it could finish.",
    "unknown": "The run has no summary.json: it is still running, or was killed before it finished.",
}


PREDICTION_SPLITS = ("test", "val")
#: What reading a damaged or unexpected ``.npz`` raises: OSError (unreadable), ValueError (not
#: an array file, or unexpected contents), KeyError (an array missing), EOFError (an empty
#: file), zipfile.BadZipFile (a truncated one, or a bad checksum), zlib.error (a compressed
#: member whose deflate stream is damaged).
NPZ_ERRORS: tuple[type[Exception], ...] = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error)


@dataclass
class Predictions:
    """Probabilities (N, K) and labels (N,) (None when unlabelled) of one split: ``split`` is
    test, or val for a run without a labelled test split."""

    probabilities: np.ndarray
    labels: np.ndarray | None
    split: str = "test"


@dataclass
class RunArtifacts:
    """A run directory's files, parsed; ``notes`` says what could not be read and why."""

    path: Path
    config: dict[str, Any]
    metrics: list[dict[str, Any]]
    summary: dict[str, Any]
    log_text: str = ""
    predictions: Predictions | None = None
    initial_predictions: Predictions | None = None
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    model_summary: str | None = None
    gradcheck: dict[str, Any] | None = None
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """completed, stopped_early, failed, interrupted, running, or unknown (no summary)."""
        return str(self.summary.get("status") or "unknown")

    @property
    def finished(self) -> bool:
        """Whether the run ended normally (completed or stopped early)."""
        return self.status in ("completed", "stopped_early")

    @property
    def engine(self) -> str:
        """The engine that trained the run (numpy or torch; a config without the key gets
        the run config's default, torch)."""
        return str(self.config.get("engine", RunConfig.model_fields["engine"].default))

    @property
    def name(self) -> str:
        """``<run name>/<run id>``."""
        return f"{self.config.get('name', self.path.parent.name)}/{self.path.name}"

    @property
    def warnings(self) -> list[str]:
        """The warnings the run logged (monitors: vanishing/exploding gradients, dead ReLUs)."""
        return log_warnings(self.log_text)

    @property
    def early_stop_step(self) -> int | None:
        """Step of the best evaluation when early stopping ended the run."""
        return early_stopping_step(self.summary)

    @property
    def num_classes(self) -> int | None:
        """K, from the (initial) predictions; None without them."""
        for preds in (self.predictions, self.initial_predictions):
            if preds is not None:
                return int(preds.probabilities.shape[1])
        return None

    def status_message(self) -> str:
        """One sentence on how the run ended, with its stop reason or error."""
        text = STATUS_TEXT.get(self.status, f"Status: {self.status}.")
        detail = str(self.summary.get("error") or self.summary.get("stop_reason") or "")
        return f"{text} {detail[:1].upper()}{detail[1:]}" if detail else text

    def has_nan(self) -> bool:
        """Whether a logged loss is NaN or infinite."""
        return any(
            isinstance(row.get("loss"), float) and not math.isfinite(row["loss"]) for row in self.metrics
        )


def read_predictions_file(path: Path) -> Predictions:
    """The predictions saved in ``path`` (``predictions.npz`` or ``predictions_initial.npz``).

    Raises:
        OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError: the file cannot be read
            (EOFError: it is empty; BadZipFile: it is truncated; zlib.error: a compressed
            member is damaged), or holds no probabilities.
        ValueError: the arrays have unexpected shapes, or ``split`` is neither test nor val.
    """
    with np.load(path, allow_pickle=False) as saved:
        probabilities = np.asarray(saved["probabilities"])  # (N, K)
        labels = np.asarray(saved["labels"]) if "labels" in saved.files else None
        split = str(saved["split"]) if "split" in saved.files else "test"  # files before issue 27
    if probabilities.ndim != 2 or (labels is not None and len(labels) != len(probabilities)):
        raise ValueError(f"unexpected shapes {probabilities.shape} and {None if labels is None else labels.shape}")
    if split not in PREDICTION_SPLITS:
        raise ValueError(f"unknown split {split!r}")
    return Predictions(probabilities, labels, split)


def _numpy_weights(path: Path) -> dict[str, np.ndarray]:
    from trainlab.engines.numpy.checkpoint import load_model_arrays  # clean errors naming the file

    return load_model_arrays(path)


def _torch_weights(path: Path) -> dict[str, np.ndarray]:
    from trainlab.engines.torch.checkpoint import load_checkpoint  # torch only for torch runs

    payload = load_checkpoint(path)
    return {k: v.detach().cpu().float().numpy() for k, v in payload["model"].items()}


def load_artifacts(path: str | Path) -> RunArtifacts:
    """Read a run directory for a report.

    Raises:
        RunDirError: ``path`` is not a run directory (no ``config.yaml``).
    """
    run_dir: RunDir = open_run_dir(path)
    artifacts = RunArtifacts(run_dir.path, run_dir.read_config(), run_dir.metrics, {})
    notes = artifacts.notes
    try:
        artifacts.summary = run_dir.read_summary()
    except (OSError, RunDirError) as exc:
        notes["summary"] = f"{SUMMARY_FILE} could not be read: {exc}"
    if not artifacts.summary:
        notes.setdefault("summary", f"no {SUMMARY_FILE}: the run has not finished (killed, or still running)")
    log_path = run_dir.path / LOG_FILE
    if log_path.exists():
        artifacts.log_text = log_path.read_text(encoding="utf-8", errors="replace")

    for attr, name in (("predictions", PREDICTIONS_FILE), ("initial_predictions", INITIAL_PREDICTIONS_FILE)):
        file = run_dir.path / name
        if not file.exists():
            notes[attr] = f"no {name} in the run directory"
            continue
        try:
            setattr(artifacts, attr, read_predictions_file(file))
        except NPZ_ERRORS as exc:
            notes[attr] = f"{name} could not be read: {exc}"
    if artifacts.predictions is None and artifacts.status in ("failed", "unknown", "running", "interrupted"):
        notes["predictions"] += " (predictions are written when a run finishes)"

    npz, pt = run_dir.checkpoint_path(".npz"), run_dir.checkpoint_path(".pt")
    try:
        if npz.exists():
            artifacts.weights = _numpy_weights(npz)
        elif pt.exists():
            artifacts.weights = _torch_weights(pt)
        else:
            notes["weights"] = "no checkpoint in the run directory (output.save_checkpoint is off, or none was written yet)"
    except Exception as exc:  # a corrupt or refused checkpoint must not stop the report
        notes["weights"] = f"the checkpoint could not be read: {exc}"

    summary_file = run_dir.path / MODEL_SUMMARY_FILE
    if summary_file.exists():
        artifacts.model_summary = summary_file.read_text(encoding="utf-8", errors="replace").rstrip()
    gradcheck_file = run_dir.path / GRADCHECK_FILE
    if gradcheck_file.exists():
        try:
            artifacts.gradcheck = json.loads(gradcheck_file.read_text(encoding="utf-8"))
        except ValueError as exc:
            notes["gradcheck"] = f"{GRADCHECK_FILE} could not be read: {exc}"
    return artifacts


__all__ = [
    "CONFIG_FILE",
    "NPZ_ERRORS",
    "PREDICTION_SPLITS",
    "Predictions",
    "RunArtifacts",
    "load_artifacts",
    "read_predictions_file",
]
