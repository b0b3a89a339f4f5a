"""Exactly stratified, seeded splits and subsets of labelled data."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError


def _allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` across classes in proportion to ``counts``, summing exactly to ``total``.

    Largest-remainder rounding: every class gets the floor of its quota, and the leftover
    units go to the largest fractional parts (ties to the lower class index), so the result
    is deterministic and no class gets more than it has.
    """
    n = int(counts.sum())
    if n == 0 or total <= 0:
        return np.zeros_like(counts)
    quota = counts.astype(np.float64) * total / n
    take = np.floor(quota).astype(np.int64)
    # Exact integer remainders avoid float ties being broken by rounding noise.
    remainder = counts.astype(np.int64) * total - take * n
    leftover = total - int(take.sum())
    order = np.lexsort((np.arange(len(counts)), -remainder))  # largest remainder first
    take[order[:leftover]] += 1
    return np.minimum(take, counts)


def _validation_total(n: int, val_fraction: float | None, val_size: int | None) -> int:
    """``val_size``, else ``round(val_fraction * n)``, else 0; checked against ``n`` rows."""
    if val_size is not None:
        if not 0 <= int(val_size) < max(n, 1):
            raise ConfigError(f"val_size={val_size} must be in [0, {n}) for {n} rows")
        return int(val_size)
    if val_fraction is not None:
        if not 0.0 <= float(val_fraction) < 1.0:
            raise ConfigError(f"val_fraction={val_fraction} must be in [0, 1)")
        return round(float(val_fraction) * n)
    return 0


def _per_class_pick(labels: np.ndarray, per_class: np.ndarray, classes: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    picked: list[np.ndarray] = []
    for cls, k in zip(classes, per_class, strict=True):
        members = np.flatnonzero(labels == cls)
        picked.append(rng.permutation(members)[:k])
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def stratified_split(
    labels: np.ndarray,
    *,
    val_fraction: float | None = None,
    val_size: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (train_idx, val_idx), both sorted, with per-class proportions kept.

    Args:
        labels: (N,) integer labels.
        val_fraction: share of rows for validation, in [0, 1). Default None.
        val_size: exact number of validation rows, in [0, N); overrides ``val_fraction``.
            Default None. With neither given, nothing goes to validation.
        seed: the same seed gives the same split. Default 0.

    The validation total is exactly ``val_size`` (or ``round(val_fraction * N)``); each class
    contributes in proportion to its size, rounding resolved by largest remainder.
    """
    labels = np.asarray(labels)
    n = len(labels)
    total = _validation_total(n, val_fraction, val_size)
    classes, counts = np.unique(labels, return_counts=True)
    rng = np.random.default_rng(seed)
    val_idx = _per_class_pick(labels, _allocate(counts, total), classes, rng).astype(np.int64)
    mask = np.ones(n, dtype=bool)
    mask[val_idx] = False
    return np.flatnonzero(mask).astype(np.int64), val_idx


def tail_split(
    n: int, *, val_fraction: float | None = None, val_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n)`` into (train_idx, val_idx) with the validation rows last, in order.

    The validation total is ``val_size``, else ``round(val_fraction * n)``, as for
    :func:`stratified_split`; no seed and no class balance: the rows keep their stored
    order, as Keras's ``validation_split`` and many course notebooks hold out data.
    """
    total = _validation_total(n, val_fraction, val_size)
    rows = np.arange(n, dtype=np.int64)
    return rows[: n - total], rows[n - total :]


def stratified_subset(labels: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of a class-balanced (proportional) subset of ``size`` rows.

    ``size`` at or above ``len(labels)`` returns every index.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if size < 0:
        raise ConfigError(f"subset size {size} must be >= 0")
    if size >= n:
        return np.arange(n, dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    rng = np.random.default_rng(seed)
    return _per_class_pick(labels, _allocate(counts, size), classes, rng).astype(np.int64)


def random_subset(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded random subset (for unlabelled rows)."""
    if size >= n:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)


__all__ = ["random_subset", "stratified_split", "stratified_subset", "tail_split"]
