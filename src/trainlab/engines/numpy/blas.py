"""Two BLAS calls NumPy does not expose, for the engine's fast path (``fused.py``).

``gemm_tn`` is ``C = alpha * A.T @ B + beta * C`` in one call (NumPy's ``dot`` has no beta),
``axpy`` is ``y += alpha * x`` in one call (threaded for large arrays, unlike NumPy's
element-wise passes).

NumPy has no gemm with beta. ``scipy.linalg.blas`` has, but SciPy's wheels carry their own
copy of OpenBLAS, and calling two OpenBLAS copies in turn makes each one's spinning worker
threads fight the other's (measured: the benchmark's eight GEMMs took 5x as long on 2
cores with three of them on SciPy's copy). So both calls go to NumPy's own BLAS (CBLAS
symbols looked up through NumPy's extension module, with ctypes) and are checked once
against ``np.dot`` at import: :data:`BLAS_AVAILABLE` is False where that fails, and the
engine then keeps the plain path.
"""

from __future__ import annotations

import ctypes
import importlib
from typing import Any

import numpy as np

# CBLAS enum values (cblas.h).
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


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


#: Whether :func:`gemm_tn` and :func:`axpy` were found and agree with NumPy.
BLAS_AVAILABLE = _blas_checked()


__all__ = ["BLAS_AVAILABLE", "axpy", "gemm_tn"]
