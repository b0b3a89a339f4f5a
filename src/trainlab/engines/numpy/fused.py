"""The fast path of the training step: the weight update folded into the gradient's GEMM.

The plain step reads as the layers and update rules do: backward forms each weight
gradient ``dW = x.T @ dout`` (one GEMM per Linear layer), then the optimizer reads dW, its
slot and W and writes them back, a few element-wise NumPy passes over every weight array
on one core (about a fifth of a step of the benchmark's 3072-500-500-10 MLP). For SGD and
momentum those passes fold into the GEMM that forms the gradient, because BLAS computes
``C = alpha * A @ B + beta * C`` in one call::

    SGD       W = (1 - lr * decay) * W - lr * x.T @ dout            one GEMM into W
    momentum  v = mu * v - lr * x.T @ dout                          one GEMM into v
              v -= lr * decay * W  (only with decay);  W += v       axpy (BLAS, threaded)

``decay`` is L2's ``2 * l2`` plus the optimizer's coupled ``weight_decay``, so the update is
the plain one, ``v = mu * v - lr * (dW + decay * W)``; only float rounding differs (the
GEMM accumulates in its own order). dW itself is never stored.

:func:`plan_fused_updates` says where the engine uses it; automatically, for every Linear
weight, and only where the update is the same and nobody reads dW: float32 models
(float64 is the dtype of the checks, gradcheck and parity, which read every gradient and
so keep the plain path exactly), SGD or momentum, no gradient clipping (it needs every
gradient before any update), no L1 penalty, no ``regularization.shrink`` (it rescales the
weights between the gradient and the update), and NumPy's BLAS exposing gemm and axpy.
Biases, batch norm and every other case keep the plain path. Monitors run their own plain
backward between steps, so they always see dW.

NumPy has no gemm with beta. ``scipy.linalg.blas`` has, but SciPy's wheels carry their own
copy of OpenBLAS, and calling two OpenBLAS copies in turn makes each one's spinning worker
threads fight the other's (measured: the benchmark's eight GEMMs took 5x as long on 2
cores with three of them on SciPy's copy). So the two calls below go to NumPy's own BLAS
(CBLAS symbols looked up through NumPy's extension module, with ctypes) and are checked
once against ``np.dot`` before use; where that fails the engine keeps the plain path.
"""

from __future__ import annotations

import ctypes
import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from trainlab.engines.numpy.layers import Linear

if TYPE_CHECKING:
    from trainlab.engines.numpy.model import Sequential
    from trainlab.engines.numpy.optim import Optimizer

# CBLAS enum values (cblas.h).
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


@dataclass(frozen=True)
class WeightProduct:
    """A weight gradient left as its factors: ``g = x.T @ dout + decay * W``.

    Shapes: x (N, D) the layer's input, dout (N, M) the gradient of its output, W (D, M).
    """

    x: np.ndarray
    dout: np.ndarray
    decay: float = 0.0


# -- NumPy's own BLAS ---------------------------------------------------------------------
def _find_blas() -> dict[np.dtype, dict[str, Any]]:
    """CBLAS gemm and axpy of the library NumPy calls, per dtype; empty when not found.

    Only symbols whose integer width the name tells are used: ``..64_`` (ILP64, NumPy's
    wheels) and SciPy-OpenBLAS's 32-bit ``scipy_cblas_*``.
    """
    try:
        multiarray = importlib.import_module("numpy._core._multiarray_umath")
    except ImportError:  # NumPy 1.x
        multiarray = importlib.import_module("numpy.core._multiarray_umath")
    try:
        lib = ctypes.CDLL(multiarray.__file__)  # its BLAS is among its dependencies
    except OSError:
        return {}
    for prefix, suffix, blasint in (("scipy_cblas_", "64_", ctypes.c_int64),
                                    ("cblas_", "64_", ctypes.c_int64),
                                    ("scipy_cblas_", "", ctypes.c_int32)):
        found: dict[np.dtype, dict[str, Any]] = {}
        for letter, dtype, real in (("s", np.float32, ctypes.c_float), ("d", np.float64, ctypes.c_double)):
            try:
                gemm = getattr(lib, f"{prefix}{letter}gemm{suffix}")
                axpy = getattr(lib, f"{prefix}{letter}axpy{suffix}")
            except AttributeError:
                break
            i, p = blasint, ctypes.c_void_p
            gemm.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, i, i, i, real, p, i, p, i, real, p, i]
            axpy.argtypes = [i, real, p, i, p, i]
            gemm.restype = axpy.restype = None
            found[np.dtype(dtype)] = {"gemm": gemm, "axpy": axpy}
        if len(found) == 2:
            return found
    return {}


_BLAS = _find_blas()


def gemm_tn(x: np.ndarray, dout: np.ndarray, c: np.ndarray, alpha: float, beta: float) -> None:
    """``c = alpha * x.T @ dout + beta * c`` in place, one BLAS call.

    Shapes: x (N, D), dout (N, M), c (D, M), c C-contiguous; x and dout are made
    C-contiguous in c's dtype (no copy when they are already).
    """
    n, d = x.shape
    m = dout.shape[1]
    if c.shape != (d, m) or not c.flags.c_contiguous:
        raise ValueError(f"gemm_tn: c must be a C-contiguous ({d}, {m}) array, got {c.shape}")
    x = np.ascontiguousarray(x, dtype=c.dtype)
    dout = np.ascontiguousarray(dout, dtype=c.dtype)
    _BLAS[c.dtype]["gemm"](_ROW_MAJOR, _TRANS, _NO_TRANS, d, m, n, alpha, x.ctypes.data, d,
                           dout.ctypes.data, m, beta, c.ctypes.data, m)


def axpy(alpha: float, x: np.ndarray, y: np.ndarray) -> None:
    """``y += alpha * x`` in place, one BLAS call (threaded for large arrays).

    x and y: C-contiguous arrays of the same shape and dtype.
    """
    if x.shape != y.shape or x.dtype != y.dtype or not (x.flags.c_contiguous and y.flags.c_contiguous):
        raise ValueError("axpy: x and y must be C-contiguous arrays of one shape and dtype")
    _BLAS[y.dtype]["axpy"](y.size, alpha, x.ctypes.data, 1, y.ctypes.data, 1)


def _blas_checked() -> bool:
    """Both calls agree with NumPy on a small case in both dtypes (run once, at import)."""
    if not _BLAS:
        return False
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        x, dout = rng.standard_normal((5, 7)).astype(dtype), rng.standard_normal((5, 3)).astype(dtype)
        c = rng.standard_normal((7, 3)).astype(dtype)
        expected = 0.5 * c - 2.0 * (x.T @ dout)
        gemm_tn(x, dout, c, -2.0, 0.5)
        y = rng.standard_normal((7, 3)).astype(dtype)
        expected_y = y + 0.25 * c
        axpy(0.25, c, y)
        if not (np.allclose(c, expected, rtol=1e-5, atol=1e-5)
                and np.allclose(y, expected_y, rtol=1e-5, atol=1e-5)):
            return False
    return True


BLAS_AVAILABLE = _blas_checked()


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

    @property
    def keys(self) -> list[str]:
        """The weight keys on the fast path (their entries of ``grads`` are not formed)."""
        return list(self.layers)

    @contextmanager
    def deferring(self) -> Iterator[None]:
        """While inside, the layers' backward leaves dW to the optimizer (``dW_factors``)."""
        for layer in self.layers.values():
            layer.defer_weight_grad = True
        try:
            yield
        finally:
            for layer in self.layers.values():
                layer.defer_weight_grad = False

    def products(self) -> dict[str, WeightProduct]:
        """Each weight's gradient as factors, from the last backward run by ``deferring``."""
        products = {}
        for key, layer in self.layers.items():
            if layer.dW_factors is None:
                raise RuntimeError(f"{key}: no deferred gradient; run backward inside deferring()")
            x, dout = layer.dW_factors
            products[key] = WeightProduct(x, dout, self.decay)
            layer.dW_factors = None  # used once: a stale product must never update twice
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
        optimizer: its update rule; only those with ``fusable`` (SGD, momentum) fuse.
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
    if (np.dtype(dtype) != np.float32 or not getattr(optimizer, "fusable", False) or clipping
            or l1 or shrink or not BLAS_AVAILABLE):
        return FusedUpdates()
    layers = {f"{i}.W": layer for i, layer in enumerate(model.layers) if isinstance(layer, Linear)}
    return FusedUpdates(layers, decay=2.0 * float(l2))


__all__ = ["BLAS_AVAILABLE", "FusedUpdates", "WeightProduct", "axpy", "gemm_tn", "plan_fused_updates"]
