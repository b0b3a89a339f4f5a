"""The fast path of the training step: the weight update folded into the gradient's GEMM.

The plain step reads as the layers and update rules do: backward forms each weight
gradient ``dW = x.T @ dout`` (one GEMM per Linear layer), then the optimizer reads dW, its
slot and W and writes them back, a few element-wise NumPy passes over every weight array
on one core (about a fifth of a step of the benchmark's 3072-500-500-10 MLP). For SGD and
momentum those passes fold into the GEMM that forms the gradient, because BLAS computes
``C = alpha * A @ B + beta * C`` in one call (:mod:`.blas`)::

    SGD       W = (1 - lr * decay) * W - lr * x.T @ dout            one GEMM into W
    momentum  v = mu * v - lr * x.T @ dout                          one GEMM into v
              v -= lr * decay * W  (only with decay);  W += v       axpy (BLAS, threaded)

``decay`` is L2's ``2 * l2`` plus the optimizer's coupled ``weight_decay``, so the update is
the plain one, ``v = mu * v - lr * (dW + decay * W)``; only float rounding differs (the
GEMM accumulates in its own order). dW itself is never stored.

All of it lives here, so that ``layers.py`` and ``optim.py`` stay the plain math: while
:meth:`FusedUpdates.deferring` is active, the fused Linear layers run this module's
backward (theirs less the dW GEMM, keeping its factors), and each factor pair becomes a
:class:`WeightProduct` that the optimizer's ``step`` hands its key to (``products=``); the
product applies its rule's fused form from :data:`FUSED_RULES`, chosen by optimizer class.

:func:`plan_fused_updates` says where the engine uses it; automatically, for every Linear
weight, and only where the update is the same and nobody reads dW: float32 models
(float64 is the dtype of the checks, gradcheck and parity, which read every gradient and
so keep the plain path exactly), SGD or momentum, no gradient clipping (it needs every
gradient before any update), no L1 penalty, no ``regularization.shrink`` (it rescales the
weights between the gradient and the update), and NumPy's BLAS exposing gemm and axpy.
Biases, batch norm and every other case keep the plain path. Monitors run their own plain
backward between steps, so they always see dW.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from trainlab.engines.numpy.blas import BLAS_AVAILABLE, axpy, gemm_tn
from trainlab.engines.numpy.layers import Linear
from trainlab.engines.numpy.optim import SGD, Momentum, Optimizer

if TYPE_CHECKING:
    from trainlab.engines.numpy.model import Sequential


@dataclass(frozen=True)
class WeightProduct:
    """A weight gradient left as its factors: ``g = x.T @ dout + decay * W``.

    Shapes: x (N, D) the layer's input, dout (N, M) the gradient of its output, W (D, M).
    """

    x: np.ndarray
    dout: np.ndarray
    decay: float = 0.0

    def update(self, optimizer: Optimizer, key: str, p: np.ndarray, lr: float) -> None:
        """Apply ``optimizer``'s update to the weight ``p`` (key ``key``) from this gradient.

        Raises:
            ValueError: the optimizer's rule has no fused form (not in :data:`FUSED_RULES`).
        """
        rule = FUSED_RULES.get(type(optimizer))
        if rule is None:
            raise ValueError(f"{type(optimizer).__name__} takes no gradient products (not fusable)")
        rule(optimizer, key, p, self, lr)


# -- the fused update rules -----------------------------------------------------------------
def _sgd_update(optimizer: SGD, key: str, p: np.ndarray, product: WeightProduct, lr: float) -> None:
    """SGD's ``p -= lr * g`` from ``g = x.T @ dout + decay * p``: one GEMM into p."""
    decay = product.decay + optimizer.weight_decay
    # p - lr * (x.T @ dout + decay * p) = (1 - lr * decay) * p - lr * x.T @ dout
    gemm_tn(product.x, product.dout, p, alpha=-lr, beta=1.0 - lr * decay)


def _momentum_update(optimizer: Momentum, key: str, p: np.ndarray, product: WeightProduct,
                     lr: float) -> None:
    """Momentum's ``v = mu * v - lr * g; p += v``: one GEMM into v, then axpy into p."""
    decay = product.decay + optimizer.weight_decay
    v = optimizer.slot("v", key, p)
    gemm_tn(product.x, product.dout, v, alpha=-lr, beta=optimizer.momentum)  # mu v - lr x.T dout
    if decay:
        axpy(-lr * decay, p, v)  # ... - lr * decay * p
    axpy(1.0, v, p)


#: The fused form of each update rule that has one, by optimizer class. The class must match
#: exactly: a subclass may change the rule, and would then silently get its parent's.
FUSED_RULES: dict[type[Optimizer], Callable[..., None]] = {SGD: _sgd_update, Momentum: _momentum_update}


# -- when the engine uses it ----------------------------------------------------------------
class FusedUpdates:
    """The Linear layers whose weight update is folded into the gradient's GEMM.

    Use it around one training step::

        with fused.deferring():
            model.backward(dlogits)  # these layers keep (x, dout) instead of forming dW
        optimizer.step(params, grads, lr, products=fused.products())

    Args:
        layers: the Linear layers by weight key (``"0.W"``); none means the plain path.
        decay: the L2 gradient factor of those weights (``2 * l2``). Default 0.
    """

    def __init__(self, layers: dict[str, Linear] | None = None, decay: float = 0.0) -> None:
        self.layers = dict(layers or {})
        self.decay = float(decay)
        self._factors: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def keys(self) -> list[str]:
        """The weight keys on the fast path (their entries of ``grads`` are not formed)."""
        return list(self.layers)

    @contextmanager
    def deferring(self) -> Iterator[None]:
        """While inside, the layers' backward leaves dW to the optimizer (see :meth:`products`)."""
        # An instance attribute shadows the class's method, so Linear itself stays plain and
        # every other caller of backward (monitors, gradcheck) keeps forming dW.
        for key, layer in self.layers.items():
            layer.backward = partial(self._backward_keeping_factors, key, layer)  # type: ignore[method-assign]
        try:
            yield
        finally:
            for layer in self.layers.values():
                vars(layer).pop("backward", None)

    def _backward_keeping_factors(self, key: str, layer: Linear, dout: np.ndarray) -> np.ndarray | None:
        """:meth:`Linear.backward` less its dW GEMM: the factors ``(x, dout)`` are kept instead.

        dout (N, M) -> dx (N, D) (or None when the layer's ``need_dx`` is False); fills db
        (:meth:`Linear.backward_except_weight`).
        """
        x, _ = layer.cache  # (N, D)
        dout = dout.astype(layer.params["W"].dtype, copy=False)
        self._factors[key] = (x, dout)  # dW = x.T @ dout, formed inside the update
        return layer.backward_except_weight(dout)

    def products(self) -> dict[str, WeightProduct]:
        """Each weight's gradient as factors, from the last backward run by ``deferring``.

        Raises:
            RuntimeError: a layer ran no backward inside ``deferring`` since the last call.
        """
        products = {}
        for key in self.layers:
            # popped: used once, a stale product must never update twice
            factors = self._factors.pop(key, None)
            if factors is None:
                raise RuntimeError(f"{key}: no deferred gradient; run backward inside deferring()")
            products[key] = WeightProduct(*factors, self.decay)
        return products

    def __repr__(self) -> str:
        return f"FusedUpdates({', '.join(self.keys) or 'none: plain path'})"


def plan_fused_updates(
    model: Sequential,
    optimizer: Optimizer,
    *,
    dtype: np.dtype | type = np.float32,
    clipping: bool = False,
    l1: float = 0.0,
    l2: float = 0.0,
    shrink: float = 0.0,
) -> FusedUpdates:
    """The fast path for this run: every Linear weight when the update stays the same.

    Args:
        model: the network.
        optimizer: its update rule; only those in :data:`FUSED_RULES` (SGD, momentum) fuse.
        dtype: the model's dtype; only float32 fuses (float64 keeps the checks' plain path).
            Default float32.
        clipping: whether gradients are clipped (by value or norm); then nothing fuses.
            Default False.
        l1: the L1 strength; any L1 keeps the plain path. Default 0.
        l2: the L2 strength (``l2 * sum(W**2)``); folded into the update. Default 0.
        shrink: ``regularization.shrink``; any shrink keeps the plain path. Default 0.

    Returns:
        The layers to fuse, or an empty :class:`FusedUpdates` (the plain path).
    """
    if (np.dtype(dtype) != np.float32 or type(optimizer) not in FUSED_RULES or clipping
            or l1 or shrink or not BLAS_AVAILABLE):
        return FusedUpdates()
    layers = {f"{i}.W": layer for i, layer in enumerate(model.layers) if isinstance(layer, Linear)}
    return FusedUpdates(layers, decay=2.0 * float(l2))


__all__ = [
    "BLAS_AVAILABLE",
    "FUSED_RULES",
    "FusedUpdates",
    "WeightProduct",
    "axpy",
    "gemm_tn",
    "plan_fused_updates",
]
