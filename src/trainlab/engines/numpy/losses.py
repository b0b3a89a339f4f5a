"""Losses and weight penalties of the NumPy engine.

Every loss takes logits (N, C) and integer labels y (N,) and returns ``(loss, dlogits)``
with dlogits (N, C) the gradient of the returned loss. ``reduction="mean"`` averages over
the N examples, ``"sum"`` adds them up.
"""

from __future__ import annotations

import numpy as np

REDUCTIONS = ("mean", "sum")


def _check(logits: np.ndarray, y: np.ndarray, reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; choose 'mean' or 'sum'")
    if logits.ndim != 2 or y.shape != (logits.shape[0],):
        raise ValueError(f"expected logits (N, C) and labels (N,), got {logits.shape} and {y.shape}")


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of logits (N, C), computed as ``z - max - log(sum(exp(z - max)))``."""
    shifted = logits - logits.max(axis=1, keepdims=True)  # (N, C), max entry is 0
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (N, C)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits (N, C) -> probabilities (N, C); the row max is subtracted
    first, so huge logits give no overflow and no NaN."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))  # (N, C)
    e /= e.sum(axis=1, keepdims=True)
    return e


def softmax_cross_entropy(
    logits: np.ndarray,
    y: np.ndarray,
    *,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> tuple[float, np.ndarray]:
    """Cross-entropy of softmax(logits) against labels y, computed with log-sum-exp.

    With label smoothing s the target of example i is ``q = (1 - s) * onehot(y_i) + s / C``
    (PyTorch's definition) and its loss is ``-sum_c q_c * log softmax(z_i)_c``; the gradient
    is ``softmax(z_i) - q`` (divided by N for ``"mean"``).

    Shapes: logits (N, C), y (N,) ints -> (loss: float, dlogits (N, C)).
    """
    _check(logits, y, reduction)
    n, c = logits.shape
    logp = log_softmax(logits)  # (N, C)
    rows = np.arange(n)
    if label_smoothing:
        s = float(label_smoothing)
        per_example = -(1 - s) * logp[rows, y] - (s / c) * logp.sum(axis=1)  # (N,)
    else:
        per_example = -logp[rows, y]  # (N,)
    dlogits = np.exp(logp)  # (N, C), the probabilities
    dlogits[rows, y] -= 1 - label_smoothing
    if label_smoothing:
        dlogits -= label_smoothing / c
    loss = float(per_example.sum())
    if reduction == "mean":
        loss /= n
        dlogits /= n
    return loss, dlogits


def squared_loss(
    logits: np.ndarray, y: np.ndarray, *, reduction: str = "mean", half: bool = True
) -> tuple[float, np.ndarray]:
    """Squared error of the raw scores against one-hot targets.

    Reading: example i costs ``0.5 * sum_c (z_ic - onehot(y_i)_c)^2`` (on the logits
    themselves, no softmax), or ``sum_c (z_ic - onehot(y_i)_c)^2`` with ``half=False``;
    ``"mean"`` averages that over the N examples, ``"sum"`` adds them. The gradient is
    ``z - onehot`` (``2 (z - onehot)`` without the half), divided by N for ``"mean"``.

    Shapes: logits (N, C), y (N,) ints -> (loss: float, dlogits (N, C)).
    """
    _check(logits, y, reduction)
    n = logits.shape[0]
    diff = logits.copy()  # (N, C)
    diff[np.arange(n), y] -= 1
    loss = float(np.sum(diff * diff))
    if half:
        loss *= 0.5
    else:
        diff *= 2.0
    if reduction == "mean":
        loss /= n
        diff /= n
    return loss, diff


LOSSES = {"softmax": softmax_cross_entropy, "cross_entropy": softmax_cross_entropy,
          "squared": squared_loss}


def _penalised(params: dict[str, np.ndarray], apply_to: str) -> list[str]:
    """Keys that a penalty applies to: Linear weights (keys ending in 'W') or all."""
    if apply_to == "all":
        return list(params)
    if apply_to == "weights":
        return [k for k in params if k.rsplit(".", 1)[-1] == "W"]
    raise ValueError(f"unknown apply_to {apply_to!r}; choose 'weights' or 'all'")


def l2_penalty(
    params: dict[str, np.ndarray],
    strength: float,
    *,
    apply_to: str = "weights",
    grads: dict[str, np.ndarray] | None = None,
) -> tuple[float, dict[str, np.ndarray]]:
    """L2 penalty ``strength * sum(p^2)`` and its gradient ``2 * strength * p``.

    This is Keras' ``l2`` regulariser and what the config's ``regularization.l2`` means
    on both engines (PyTorch's ``weight_decay`` ``wd`` is ``l2 = wd / 2``).

    It covers Linear weights (keys ending in ``W``, like ``"0.W"``) unless
    ``apply_to="all"`` (then biases, gamma and beta too). When ``grads`` is given the
    penalty gradients are also added into it in place. Returns (penalty, {key: gradient}).
    """
    keys = _penalised(params, apply_to)
    value = strength * sum(float(np.vdot(params[k], params[k])) for k in keys)
    pen = {k: (2.0 * strength) * params[k] for k in keys}
    if grads is not None:
        for k in keys:
            grads[k] += pen[k]
    return value, pen


def l1_penalty(
    params: dict[str, np.ndarray],
    strength: float,
    *,
    apply_to: str = "weights",
    grads: dict[str, np.ndarray] | None = None,
) -> tuple[float, dict[str, np.ndarray]]:
    """L1 penalty ``strength * sum(|p|)`` and its (sub)gradient ``strength * sign(p)``.

    Same selection and ``grads`` handling as :func:`l2_penalty`.
    """
    keys = _penalised(params, apply_to)
    value = strength * sum(float(np.abs(params[k]).sum()) for k in keys)
    pen = {k: strength * np.sign(params[k]) for k in keys}
    if grads is not None:
        for k in keys:
            grads[k] += pen[k]
    return value, pen


def shrink_weights(params: dict[str, np.ndarray], shrink: float, *, apply_to: str = "weights") -> None:
    """Multiply the parameters a penalty covers by ``1 - shrink`` in place.

    The config's ``regularization.shrink``: applied just before an optimizer step, it makes
    SGD's update ``W = W - lr * dW - shrink * W`` (a decay not scaled by the lr). Same
    selection as :func:`l2_penalty` (``apply_to``: ``"weights"``, default, or ``"all"``).
    """
    factor = 1.0 - float(shrink)
    for key in _penalised(params, apply_to):
        params[key] *= factor


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    """Fraction of rows of logits (N, C) whose argmax equals the label y (N,)."""
    return float(np.mean(np.argmax(logits, axis=1) == y))


__all__ = [
    "LOSSES",
    "accuracy",
    "l1_penalty",
    "l2_penalty",
    "log_softmax",
    "shrink_weights",
    "softmax",
    "softmax_cross_entropy",
    "squared_loss",
]
