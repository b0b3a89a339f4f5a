"""Diagnostics of a trained classifier, computed from arrays: no plotting, no files.

Confusion matrices, per-class precision/recall/F1, the most confused class pairs, top
losses, calibration (reliability bins and expected calibration error), weight templates
of a linear layer, and a parameter table. :mod:`trainlab.report` draws and tabulates them.

Conventions: ``labels`` (N,) are int class indices, ``probabilities`` (N, K) rows sum to 1,
``cm[i, j]`` counts examples of true class ``i`` predicted as ``j``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts (K, K): row = true class, column = predicted class."""
    labels = np.asarray(labels, dtype=np.int64).ravel()
    predicted = np.asarray(predicted, dtype=np.int64).ravel()
    if labels.shape != predicted.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predicted.shape} differ in length")
    flat = labels * num_classes + predicted
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def normalize_rows(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its total (the recall of each class on the diagonal); empty rows stay 0."""
    totals = cm.sum(axis=1, keepdims=True).astype(np.float64)  # (K, 1)
    return np.divide(cm, totals, out=np.zeros(cm.shape, dtype=np.float64), where=totals > 0)


@dataclass(frozen=True)
class ClassScores:
    """Precision, recall, F1 and support of one class."""

    name: str
    precision: float
    recall: float
    f1: float
    support: int


def per_class_scores(cm: np.ndarray, class_names: Sequence[str]) -> list[ClassScores]:
    """Precision, recall and F1 of every class from a confusion matrix (0 where undefined)."""
    true_pos = np.diag(cm).astype(np.float64)  # (K,)
    predicted = cm.sum(axis=0).astype(np.float64)
    actual = cm.sum(axis=1).astype(np.float64)
    precision = np.divide(true_pos, predicted, out=np.zeros_like(true_pos), where=predicted > 0)
    recall = np.divide(true_pos, actual, out=np.zeros_like(true_pos), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(true_pos), where=denom > 0)
    return [
        ClassScores(str(name), float(p), float(r), float(f), int(s))
        for name, p, r, f, s in zip(class_names, precision, recall, f1, actual, strict=True)
    ]


def macro_f1(scores: Sequence[ClassScores]) -> float:
    """Mean F1 over the classes that have examples."""
    present = [s.f1 for s in scores if s.support > 0]
    return float(np.mean(present)) if present else 0.0


def most_confused(
    cm: np.ndarray, class_names: Sequence[str], top: int = 5
) -> list[tuple[str, str, int]]:
    """The ``top`` largest off-diagonal cells as ``(true name, predicted name, count)``, count > 0."""
    off = cm.astype(np.int64).copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:top]
    pairs = []
    for flat in order:
        i, j = divmod(int(flat), cm.shape[1])
        if off[i, j] > 0:
            pairs.append((str(class_names[i]), str(class_names[j]), int(off[i, j])))
    return pairs


@dataclass(frozen=True)
class TopLoss:
    """One misclassified example: its index, true and predicted class, and probabilities."""

    index: int
    label: int
    predicted: int
    confidence: float  # probability of the predicted class
    true_probability: float
    loss: float  # cross-entropy of the true class


def top_losses(probabilities: np.ndarray, labels: np.ndarray, top: int = 16) -> list[TopLoss]:
    """The most confidently misclassified examples: largest cross-entropy among the wrong ones."""
    probabilities = np.asarray(probabilities, dtype=np.float64)  # (N, K)
    labels = np.asarray(labels, dtype=np.int64)
    predicted = probabilities.argmax(axis=1)
    rows = np.arange(len(labels))
    true_p = probabilities[rows, labels]
    loss = -np.log(np.clip(true_p, 1e-12, None))
    wrong = np.flatnonzero(predicted != labels)
    chosen = wrong[np.argsort(-loss[wrong], kind="stable")[:top]]
    return [
        TopLoss(int(i), int(labels[i]), int(predicted[i]), float(probabilities[i, predicted[i]]),
                float(true_p[i]), float(loss[i]))
        for i in chosen
    ]


@dataclass(frozen=True)
class Calibration:
    """Reliability bins of the top-class confidence, and the expected calibration error."""

    edges: np.ndarray  # (B + 1,)
    confidence: np.ndarray  # (B,) mean confidence per bin (NaN where empty)
    accuracy: np.ndarray  # (B,) accuracy per bin (NaN where empty)
    counts: np.ndarray  # (B,)
    ece: float
    max_gap: float  # maximum calibration error over non-empty bins


def calibration(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> Calibration:
    """Equal-width bins of the top-class probability (Guo et al. 2017).

    ECE = sum over bins of (bin size / N) * |accuracy - mean confidence|.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    confidence = probabilities.max(axis=1)  # (N,)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bins are (lo, hi]; a confidence of exactly 0 goes into the first one.
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    sum_conf = np.bincount(which, weights=confidence, minlength=bins)
    sum_acc = np.bincount(which, weights=correct, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(counts > 0, sum_conf / counts, np.nan)
        mean_acc = np.where(counts > 0, sum_acc / counts, np.nan)
    filled = counts > 0
    gaps = np.abs(mean_acc[filled] - mean_conf[filled])
    total = max(1, len(labels))
    ece = float(np.sum(counts[filled] / total * gaps)) if filled.any() else 0.0
    return Calibration(edges, mean_conf, mean_acc, counts, ece, float(gaps.max()) if filled.any() else 0.0)


def weight_templates(weights: np.ndarray, image_shape: tuple[int, int, int]) -> np.ndarray:
    """One image per output unit of a dense layer, scaled to [0, 1] each.

    Args:
        weights: (D, M) with D = C * H * W inputs in the data's (C, H, W) order, as the
            NumPy engine stores ``model/0.W``; a torch ``nn.Linear.weight`` is (M, D):
            transpose it first.
        image_shape: (C, H, W) of the input.

    Returns:
        (M, H, W, C) floats in [0, 1] (min-max per template, so each shows its own pattern).
    """
    c, h, w = image_shape
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape[0] != c * h * w:
        raise ValueError(f"weights have {weights.shape[0]} inputs; images {image_shape} have {c * h * w}")
    templates = weights.T.reshape(-1, c, h, w).transpose(0, 2, 3, 1)  # (M, H, W, C)
    low = templates.min(axis=(1, 2, 3), keepdims=True)
    high = templates.max(axis=(1, 2, 3), keepdims=True)
    span = np.where(high > low, high - low, 1.0)
    return (templates - low) / span


def first_layer_templates(
    weights: dict[str, np.ndarray], engine: str, image_shape: tuple[int, int, int] | None
) -> tuple[np.ndarray, str] | None:
    """Templates (M, H, W, C) of the first weight layer, and a description; None if not drawable.

    Dense layers whose inputs are the image pixels give one image-sized template per unit;
    a first conv layer on 1 or 3 channels gives its filters.
    """
    for name, array in weights.items():
        if not (name.endswith(".W") or name.endswith(".weight")) or array.ndim < 2:
            continue
        if array.ndim == 4 and array.shape[1] in (1, 3):  # conv filters (O, C, kh, kw)
            return weight_templates(array.reshape(len(array), -1).T, tuple(array.shape[1:])), \
                f"filters of the first conv layer ({name})"
        if array.ndim != 2:
            return None
        dense = array if engine == "numpy" else array.T  # (D, M)
        shape = image_shape or _guess_shape(dense.shape[0])
        if shape is None or math.prod(shape) != dense.shape[0]:
            return None
        return weight_templates(dense, shape), f"rows of the first dense layer's weights ({name})"
    return None


def _guess_shape(inputs: int) -> tuple[int, int, int] | None:
    for channels in (3, 1):
        side = math.isqrt(inputs // channels)
        if channels * side * side == inputs:
            return (channels, side, side)
    return None


@dataclass(frozen=True)
class ParamRow:
    """One array of a model: name, shape, number of scalars, learned or a buffer."""

    name: str
    shape: tuple[int, ...]
    count: int
    trainable: bool


_BUFFER_NAMES = ("running_mean", "running_var", "num_batches_tracked")


def parameter_table(arrays: Mapping[str, Any]) -> list[ParamRow]:
    """Rows for a model's named arrays (NumPy state arrays or a torch state dict).

    BatchNorm running statistics count as buffers (not trainable); ``num_batches_tracked``
    is left out.
    """
    rows = []
    for name, value in arrays.items():
        if name.endswith("num_batches_tracked"):
            continue
        shape = tuple(int(d) for d in getattr(value, "shape", ()))
        rows.append(ParamRow(name, shape, int(math.prod(shape)), not name.endswith(_BUFFER_NAMES)))
    return rows


def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Examples per class (K,)."""
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)


_BEST_STEP = re.compile(r"best .* at step (\d+)")


def early_stopping_step(summary: Mapping[str, Any]) -> int | None:
    """The step of the best evaluation when early stopping ended the run, from its stop reason."""
    reason = str(summary.get("stop_reason") or "")
    if not reason.startswith("early stopping"):
        return None
    match = _BEST_STEP.search(reason)
    return int(match.group(1)) if match else None


def log_warnings(log_text: str) -> list[str]:
    """The ``warning:`` lines of a ``run.log``, without their time stamps."""
    found = []
    for line in log_text.splitlines():
        _, _, rest = line.partition(" ")
        text = rest if rest.startswith("warning:") else line
        if text.startswith("warning:"):
            found.append(text.removeprefix("warning:").strip())
    return found


__all__ = [
    "Calibration",
    "ClassScores",
    "ParamRow",
    "TopLoss",
    "calibration",
    "class_counts",
    "confusion_matrix",
    "early_stopping_step",
    "first_layer_templates",
    "log_warnings",
    "macro_f1",
    "most_confused",
    "normalize_rows",
    "parameter_table",
    "per_class_scores",
    "top_losses",
    "weight_templates",
]
