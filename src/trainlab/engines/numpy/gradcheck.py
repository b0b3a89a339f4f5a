"""Numerical gradient checks of the NumPy engine (centred finite differences, float64).

For an entry p of a parameter, the numerical derivative is
``n = (f(p + eps) - f(p - eps)) / (2 * eps)`` and it is compared with the analytic ``a``
from ``backward`` by the relative error ``|a - n| / max(1e-12, |a| + |n|)`` (symmetric,
bounded by 1, and the 1e-12 floor keeps it defined where both are exactly zero) and the
absolute error ``|a - n|``.

Both the model and the loss run in float64 (build the model with ``dtype=np.float64``).
Dropout masks are frozen by restoring every dropout generator's state before each
evaluation, BatchNorm runs in train mode (batch statistics), and the BatchNorm running
statistics are put back afterwards.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from trainlab.engines.numpy.layers import Dropout, Layer
from trainlab.engines.numpy.losses import LOSSES, l1_penalty, l2_penalty
from trainlab.engines.numpy.model import Sequential

LossFn = Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]


class GradcheckRow(NamedTuple):
    """One parameter's result: name, shape, entries checked, max relative and abs error."""

    name: str
    shape: tuple[int, ...]
    entries: int
    max_rel_error: float
    max_abs_error: float


def relative_error(a: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Element-wise ``|a - n| / max(1e-12, |a| + |n|)``."""
    return np.abs(a - n) / np.maximum(1e-12, np.abs(a) + np.abs(n))


def _entries(size: int, num_entries: int | None, rng: np.random.Generator) -> np.ndarray:
    """Flat indices to check: all, or a seeded sample of ``num_entries`` without repeats."""
    if num_entries is None or num_entries >= size:
        return np.arange(size)
    return np.sort(rng.choice(size, size=num_entries, replace=False))


def _check_arrays(
    f: Callable[[], float],
    arrays: dict[str, np.ndarray],
    analytic: dict[str, np.ndarray],
    *,
    eps: float,
    num_entries: int | None,
    seed: int,
) -> list[GradcheckRow]:
    """Perturb each entry of each array in place, compare with ``analytic``."""
    rng = np.random.default_rng(seed)
    rows = []
    for name, p in arrays.items():
        flat = p.reshape(-1)  # a view: p is contiguous
        idx = _entries(p.size, num_entries, rng)
        num = np.empty(idx.size)
        for j, i in enumerate(idx):
            old = flat[i]
            flat[i] = old + eps
            fp = f()
            flat[i] = old - eps
            fm = f()
            flat[i] = old
            num[j] = (fp - fm) / (2 * eps)
        a = analytic[name].reshape(-1)[idx]
        rel = relative_error(a, num)
        rows.append(GradcheckRow(name, tuple(p.shape), int(idx.size),
                                 float(rel.max(initial=0.0)),
                                 float(np.abs(a - num).max(initial=0.0))))
    return rows


def _require_float64(arrays: dict[str, np.ndarray]) -> None:
    bad = [k for k, v in arrays.items() if v.dtype != np.float64]
    if bad:
        raise ValueError(f"gradient checks need float64 parameters; {', '.join(bad)} are not "
                         "(build the model with dtype=np.float64)")


def gradcheck(
    model: Sequential,
    x: np.ndarray,
    y: np.ndarray,
    *,
    loss: str | LossFn = "softmax",
    l2: float = 0.0,
    l1: float = 0.0,
    apply_to: str = "weights",
    eps: float = 1e-5,
    num_entries: int | None = None,
    seed: int = 0,
) -> list[GradcheckRow]:
    """Check every parameter of ``model`` (W, b, gamma, beta) on the batch x (N, D), y (N,).

    ``loss`` is ``"softmax"``, ``"squared"`` or a function ``(logits, y) -> (loss,
    dlogits)``; optional L2/L1 penalties (see ``losses.l2_penalty``) are included.
    ``num_entries`` checks a sample (seeded by ``seed``) of that many entries per parameter
    instead of all. Returns one ``GradcheckRow`` per parameter.
    """
    loss_fn = LOSSES[loss] if isinstance(loss, str) else loss
    params = model.parameters()
    _require_float64(params)
    x = np.asarray(x, dtype=np.float64)  # (N, D)
    drop_states = [(layer.rng, copy.deepcopy(layer.rng.bit_generator.state))
                   for layer in model.layers if isinstance(layer, Dropout)]
    saved_buffers = model.state_arrays()

    def reset_masks() -> None:
        for gen, state in drop_states:
            gen.bit_generator.state = copy.deepcopy(state)

    def objective() -> tuple[float, np.ndarray]:
        reset_masks()
        logits = model.forward(x, training=True)  # (N, K)
        value, dlogits = loss_fn(logits, y)
        if l2:
            value += l2_penalty(params, l2, apply_to=apply_to)[0]
        if l1:
            value += l1_penalty(params, l1, apply_to=apply_to)[0]
        return value, dlogits

    try:
        _, dlogits = objective()
        model.backward(dlogits)
        analytic = {k: g.copy() for k, g in model.gradients().items()}
        if l2:
            l2_penalty(params, l2, apply_to=apply_to, grads=analytic)
        if l1:
            l1_penalty(params, l1, apply_to=apply_to, grads=analytic)
        return _check_arrays(lambda: objective()[0], params, analytic,
                             eps=eps, num_entries=num_entries, seed=seed)
    finally:
        reset_masks()
        model.load_state_arrays(saved_buffers)


def gradcheck_layer(
    layer: Layer,
    x: np.ndarray,
    *,
    training: bool = True,
    eps: float = 1e-5,
    num_entries: int | None = None,
    seed: int = 0,
) -> list[GradcheckRow]:
    """Check one layer's parameters and its input gradient (row ``"x"``) on x (N, D).

    The scalar checked is ``sum(forward(x) * r)`` with a fixed random r like the output, so
    ``backward(r)`` gives the analytic gradients. Dropout masks are frozen as in
    :func:`gradcheck`.
    """
    _require_float64({**layer.params, "x": np.asarray(x)})
    x = np.array(x, dtype=np.float64)  # (N, D), our own copy to perturb
    state = (copy.deepcopy(layer.rng.bit_generator.state)
             if isinstance(layer, Dropout) else None)

    def forward() -> np.ndarray:
        if state is not None:
            layer.rng.bit_generator.state = copy.deepcopy(state)
        return layer.forward(x.copy(), training)

    out = forward()
    r = np.random.default_rng(seed + 1).standard_normal(out.shape)  # like out
    need_dx = layer.need_dx
    layer.need_dx = True
    try:
        dx = layer.backward(r.copy())
    finally:
        layer.need_dx = need_dx
    analytic = {**{k: g.copy() for k, g in layer.grads.items()}, "x": dx}
    arrays = {**layer.params, "x": x}
    return _check_arrays(lambda: float(np.sum(forward() * r)), arrays, analytic,
                         eps=eps, num_entries=num_entries, seed=seed)


def eps_sweep(
    model: Sequential,
    x: np.ndarray,
    y: np.ndarray,
    eps_values: list[float],
    **kwargs: object,
) -> list[tuple[float, float, float]]:
    """Max relative and absolute error over all parameters for each step size in
    ``eps_values``: rows ``(eps, max_rel_error, max_abs_error)``. Keyword arguments go to
    :func:`gradcheck` (use the same ``seed`` so every eps checks the same entries)."""
    out = []
    for eps in eps_values:
        rows = gradcheck(model, x, y, eps=float(eps), **kwargs)  # type: ignore[arg-type]
        out.append((float(eps), max(r.max_rel_error for r in rows),
                    max(r.max_abs_error for r in rows)))
    return out


__all__ = ["GradcheckRow", "eps_sweep", "gradcheck", "gradcheck_layer", "relative_error"]
