"""Numerical gradient checks of the NumPy engine (centred finite differences, float64).

For an entry p of a parameter, the numerical derivative is
``n = (f(p + eps) - f(p - eps)) / (2 * eps)`` and it is compared with the analytic ``a``
from ``backward`` by the relative error ``|a - n| / max(1e-12, |a| + |n|)`` (symmetric,
bounded by 1, and the 1e-12 floor keeps it defined where both are exactly zero) and the
absolute error ``|a - n|``.

Both the model and the loss run in float64 (build the model with ``dtype=np.float64``).
Dropout masks are frozen by restoring every dropout generator's state before each
evaluation, BatchNorm runs in train mode (batch statistics; :func:`gradcheck_layer` in the
mode its ``training`` says), and the dropout generators and the BatchNorm running
statistics are put back afterwards.

:func:`n_sweep` is the check of seed B's report (its section 1.c): the first few weights of
one layer, differentiated with ``eps = 1/N`` for ``N = k * 10**i``, and the largest
``|analytic - numerical|`` against N. The error of a centred difference shrinks like
``eps**2`` until rounding (about ``1e-16 * |loss| / eps``) takes over, so on a log-log plot
it falls with slope -2 in N and then rises again; a wrong backward pass gives a floor that
no N gets under.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from trainlab.engines.numpy.layers import Dropout, Layer, Linear
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


class NSweepRow(NamedTuple):
    """One step of an N sweep: N, ``eps = 1/N``, max ``|analytic - numerical|`` and max
    relative error over the checked entries, and how many of them are exactly 0 both ways
    (a weight between units that are inactive for every example of the batch: it tells
    nothing about the backward pass)."""

    n: int
    eps: float
    max_abs_diff: float
    max_rel_error: float
    zeros: int


def relative_error(a: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Element-wise ``|a - n| / max(1e-12, |a| + |n|)``."""
    return np.abs(a - n) / np.maximum(1e-12, np.abs(a) + np.abs(n))


def _entries(shape: tuple[int, ...], num_entries: int | None, rng: np.random.Generator,
             first: bool = False) -> np.ndarray:
    """Flat indices to check: all, the first ``num_entries`` (see :func:`first_entries`), or
    a seeded sample of that many without repeats."""
    size = int(np.prod(shape))
    if first:
        return first_entries(shape, size if num_entries is None else num_entries)
    if num_entries is None or num_entries >= size:
        return np.arange(size)
    return np.sort(rng.choice(size, size=num_entries, replace=False))


def first_entries(shape: tuple[int, ...], count: int) -> np.ndarray:
    """Flat indices of the first ``count`` entries of an array of ``shape``, a weight matrix
    read as (D_out, D_in).

    Our W is stored (D_in, D_out); PyTorch and seed B's notebook store (D_out, D_in), and
    "the first 10 weights of a layer" there are the weights into output unit 0 from inputs
    0..9. Reading W transposed checks those same weights.
    """
    order = np.arange(int(np.prod(shape))).reshape(shape)
    if order.ndim == 2:
        order = order.T  # (D_out, D_in)
    return order.reshape(-1)[:count]


def _centred(f: Callable[[], float], flat: np.ndarray, idx: np.ndarray, eps: float) -> np.ndarray:
    """``(f(p + eps) - f(p - eps)) / (2 eps)`` for each flat index of ``flat`` (a view,
    perturbed in place and put back)."""
    num = np.empty(idx.size)
    for j, i in enumerate(idx):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        num[j] = (fp - fm) / (2 * eps)
    return num


def _check_arrays(
    f: Callable[[], float],
    arrays: dict[str, np.ndarray],
    analytic: dict[str, np.ndarray],
    *,
    eps: float,
    num_entries: int | None,
    seed: int,
    first: bool = False,
) -> list[GradcheckRow]:
    """Perturb each entry of each array in place, compare with ``analytic``."""
    rng = np.random.default_rng(seed)
    rows = []
    for name, p in arrays.items():
        flat = p.reshape(-1)  # a view: p is contiguous
        idx = _entries(p.shape, num_entries, rng, first)
        num = _centred(f, flat, idx, eps)
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


class _BatchLoss:
    """The loss of one batch (with its penalties) as a function of the model's parameters.

    Dropout masks are frozen (every dropout generator is rewound before each forward) and
    :meth:`restore` puts back the generators and the BatchNorm running statistics that the
    forwards moved.
    """

    def __init__(self, model: Sequential, x: np.ndarray, y: np.ndarray, loss: str | LossFn,
                 l2: float, l1: float, apply_to: str) -> None:
        self.model = model
        self.params = model.parameters()
        _require_float64(self.params)
        self.x = np.asarray(x, dtype=np.float64)  # (N, D)
        self.y = y
        self.loss_fn = LOSSES[loss] if isinstance(loss, str) else loss
        self.l2, self.l1, self.apply_to = l2, l1, apply_to
        self.drop_states = [(layer.rng, copy.deepcopy(layer.rng.bit_generator.state))
                            for layer in model.layers if isinstance(layer, Dropout)]
        self.saved = model.state_arrays()

    def _reset_masks(self) -> None:
        for gen, state in self.drop_states:
            gen.bit_generator.state = copy.deepcopy(state)

    def _forward(self) -> tuple[float, np.ndarray]:
        self._reset_masks()
        logits = self.model.forward(self.x, training=True)  # (N, K)
        value, dlogits = self.loss_fn(logits, self.y)
        if self.l2:
            value += l2_penalty(self.params, self.l2, apply_to=self.apply_to)[0]
        if self.l1:
            value += l1_penalty(self.params, self.l1, apply_to=self.apply_to)[0]
        return float(value), dlogits

    def __call__(self) -> float:
        """The loss at the parameters' current values."""
        return self._forward()[0]

    def analytic(self) -> dict[str, np.ndarray]:
        """Copies of the gradients of every parameter from ``backward`` plus the penalties'."""
        _, dlogits = self._forward()
        self.model.backward(dlogits)
        grads = {k: g.copy() for k, g in self.model.gradients().items()}
        if self.l2:
            l2_penalty(self.params, self.l2, apply_to=self.apply_to, grads=grads)
        if self.l1:
            l1_penalty(self.params, self.l1, apply_to=self.apply_to, grads=grads)
        return grads

    def restore(self) -> None:
        """Put back the dropout generators and the BatchNorm running statistics."""
        self._reset_masks()
        self.model.load_state_arrays(self.saved)


def _select(params: dict[str, np.ndarray], keys: Sequence[str] | None) -> dict[str, np.ndarray]:
    if keys is None:
        return params
    unknown = [k for k in keys if k not in params]
    if unknown:
        raise KeyError(f"no parameter {', '.join(map(repr, unknown))} in the model "
                       f"(parameters: {', '.join(params)})")
    return {k: params[k] for k in keys}


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
    keys: Sequence[str] | None = None,
    first: bool = False,
) -> list[GradcheckRow]:
    """Check the parameters of ``model`` (W, b, gamma, beta) on the batch x (N, D), y (N,).

    Args:
        model: a float64 model.
        x: the batch, (N, D).
        y: its labels, (N,).
        loss: ``"softmax"``, ``"squared"`` or a function ``(logits, y) -> (loss, dlogits)``.
            Default ``"softmax"``.
        l2: L2 penalty included in the loss (see ``losses.l2_penalty``). Default 0.0.
        l1: L1 penalty included in the loss. Default 0.0.
        apply_to: what the penalties apply to (``losses.l2_penalty``). Default ``"weights"``.
        eps: the finite-difference step. Default 1e-5.
        num_entries: entries checked per parameter; None checks all. Default None.
        seed: seeds the sample of entries. Default 0.
        keys: check only these parameters (``"2.W"``); None checks all. Default None.
        first: check the first ``num_entries`` entries (see :func:`first_entries`)
            instead of a sample. Default False.

    Returns:
        One ``GradcheckRow`` per parameter checked.
    """
    f = _BatchLoss(model, x, y, loss, l2, l1, apply_to)
    try:
        analytic = f.analytic()
        return _check_arrays(f, _select(f.params, keys), analytic, eps=eps,
                             num_entries=num_entries, seed=seed, first=first)
    finally:
        f.restore()


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
    :func:`gradcheck`, and the dropout generator and the BatchNorm running statistics are
    put back afterwards.
    """
    _require_float64({**layer.params, "x": np.asarray(x)})
    x = np.array(x, dtype=np.float64)  # (N, D), our own copy to perturb
    state = (copy.deepcopy(layer.rng.bit_generator.state)
             if isinstance(layer, Dropout) else None)
    buffers = {k: v.copy() for k, v in layer.buffers.items()}  # BatchNorm's running statistics

    def forward() -> np.ndarray:
        if state is not None:
            layer.rng.bit_generator.state = copy.deepcopy(state)
        return layer.forward(x.copy(), training)

    try:
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
    finally:
        for k, saved in buffers.items():
            np.copyto(layer.buffers[k], saved)  # in place: buffers are never reallocated
        if state is not None:
            layer.rng.bit_generator.state = state


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


def n_grid(k_max: int = 5, i_max: int = 5) -> list[int]:
    """``N = k * 10**i`` for k in 1..k_max and i in 0..i_max, ascending: seed B's grid
    (its notebook builds eps = 1/N from k in 1..5 and i in 0..5, 30 values, and plots the
    ten largest eps, N <= 50)."""
    if k_max < 1 or i_max < 0:
        raise ValueError(f"n_grid needs k_max >= 1 and i_max >= 0, got {k_max} and {i_max}")
    return sorted({k * 10**i for k in range(1, k_max + 1) for i in range(i_max + 1)})


def linear_weight_key(model: Sequential, layer: int) -> str:
    """The parameter key (``"2.W"``) of the weight matrix of the ``layer``-th affine layer,
    counting from 1 (layer 1 maps the input to the first hidden layer).

    Raises:
        IndexError: the model has fewer affine layers; the message says how many.
    """
    keys = [f"{i}.W" for i, item in enumerate(model.layers) if isinstance(item, Linear)]
    if not 1 <= layer <= len(keys):
        raise IndexError(f"layer {layer}: the model has {len(keys)} affine layer(s), numbered 1 to {len(keys)}")
    return keys[layer - 1]


def n_sweep(
    model: Sequential,
    x: np.ndarray,
    y: np.ndarray,
    n_values: Sequence[int],
    *,
    key: str,
    num_entries: int | None = 10,
    loss: str | LossFn = "softmax",
    l2: float = 0.0,
    l1: float = 0.0,
    apply_to: str = "weights",
) -> list[NSweepRow]:
    """Centred differences with ``eps = 1/N`` for each N, on the first entries of one parameter.

    The analytic gradient comes from one backward pass; each N perturbs the same entries,
    the first ones of the parameter as :func:`first_entries` orders them (for a weight
    matrix: into output unit 0 from inputs 0, 1, ..., as in seed B's notebook).

    Args:
        model: a float64 model.
        x: the batch, (N, D).
        y: its labels, (N,).
        n_values: the N of each step (``n_grid()`` gives seed B's).
        key: the parameter (``linear_weight_key(model, 2)`` for the second layer's weights).
        num_entries: how many entries, from the first (:func:`first_entries`); None
            checks all. Default 10.
        loss: as in :func:`gradcheck`. Default ``"softmax"``.
        l2: as in :func:`gradcheck`. Default 0.0.
        l1: as in :func:`gradcheck`. Default 0.0.
        apply_to: as in :func:`gradcheck`. Default ``"weights"``.

    Returns:
        One ``NSweepRow`` per N, in the order given.
    """
    bad = [n for n in n_values if not n > 0]
    if bad:
        raise ValueError(f"n_sweep needs N > 0 (eps = 1/N); got {bad}")
    f = _BatchLoss(model, x, y, loss, l2, l1, apply_to)
    try:
        p = _select(f.params, [key])[key]
        idx = first_entries(p.shape, p.size if num_entries is None else num_entries)
        a = f.analytic()[key].reshape(-1)[idx]
        rows = []
        for n in n_values:
            eps = 1.0 / float(n)
            num = _centred(f, p.reshape(-1), idx, eps)
            rows.append(NSweepRow(int(n), eps, float(np.abs(a - num).max(initial=0.0)),
                                  float(relative_error(a, num).max(initial=0.0)),
                                  int(np.count_nonzero((a == 0) & (num == 0)))))
        return rows
    finally:
        f.restore()


__all__ = ["GradcheckRow", "NSweepRow", "eps_sweep", "first_entries", "gradcheck", "gradcheck_layer",
           "linear_weight_key", "n_grid", "n_sweep", "relative_error"]
