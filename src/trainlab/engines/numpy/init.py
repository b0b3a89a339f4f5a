"""Weight initialisation schemes for the NumPy engine.

Every scheme draws in float64 from the given ``np.random.Generator`` and casts to the
requested dtype, so the same seed gives the same initial weights (up to rounding) in a
float32 training model and in a float64 gradient-check model.

For a weight of shape ``(D, M)`` (``Linear`` maps ``D`` inputs to ``M`` outputs),
``fan_in = D`` and ``fan_out = M``.
"""

from __future__ import annotations

import math

import numpy as np

from trainlab.config.model import WEIGHT_SCHEMES

# The schemes model.init.scheme may name (but ``default``), declared once in config.
SCHEMES = WEIGHT_SCHEMES


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of shape (D, M); a 1-D shape counts as (D, D)."""
    if len(shape) == 1:
        return shape[0], shape[0]
    return shape[0], shape[1]


def zero(shape: tuple[int, ...], *, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """All zeros, shape ``shape``."""
    return np.zeros(shape, dtype=dtype)


def constant(
    shape: tuple[int, ...], value: float, *, dtype: np.dtype | type = np.float32
) -> np.ndarray:
    """Every entry equal to ``value``."""
    return np.full(shape, value, dtype=dtype)


def normal(
    shape: tuple[int, ...],
    sigma: float,
    rng: np.random.Generator,
    *,
    dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """N(0, sigma^2) entries (CS231n's ``weight_scale * randn``)."""
    return (sigma * rng.standard_normal(shape)).astype(dtype, copy=False)


def uniform(
    shape: tuple[int, ...],
    scale: float,
    rng: np.random.Generator,
    *,
    dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """U(-scale, scale) entries."""
    return rng.uniform(-scale, scale, size=shape).astype(dtype, copy=False)


def glorot_normal(
    shape: tuple[int, ...], rng: np.random.Generator, *, dtype: np.dtype | type = np.float32
) -> np.ndarray:
    """Glorot/Xavier normal: N(0, 2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(shape)
    return normal(shape, math.sqrt(2.0 / (fan_in + fan_out)), rng, dtype=dtype)


def glorot_uniform(
    shape: tuple[int, ...], rng: np.random.Generator, *, dtype: np.dtype | type = np.float32
) -> np.ndarray:
    """Glorot/Xavier uniform: U(-a, a) with a = sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(shape)
    return uniform(shape, math.sqrt(6.0 / (fan_in + fan_out)), rng, dtype=dtype)


def he_normal(
    shape: tuple[int, ...], rng: np.random.Generator, *, dtype: np.dtype | type = np.float32
) -> np.ndarray:
    """He/Kaiming normal: N(0, 2 / fan_in)."""
    fan_in, _ = _fans(shape)
    return normal(shape, math.sqrt(2.0 / fan_in), rng, dtype=dtype)


def he_uniform(
    shape: tuple[int, ...], rng: np.random.Generator, *, dtype: np.dtype | type = np.float32
) -> np.ndarray:
    """He/Kaiming uniform: U(-a, a) with a = sqrt(6 / fan_in)."""
    fan_in, _ = _fans(shape)
    return uniform(shape, math.sqrt(6.0 / fan_in), rng, dtype=dtype)


def init_bias(
    size: int,
    fan_in: int,
    value: float | str,
    rng: np.random.Generator | None,
    dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """A bias of ``size`` units: every entry ``value``, or with ``"uniform_fan_in"``
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) drawn from ``rng`` (PyTorch's default bias).

    A constant draws nothing from ``rng``, so it leaves every later draw as it was.
    """
    if value == "uniform_fan_in":
        if rng is None:
            raise ValueError("bias 'uniform_fan_in' needs a random generator 'rng'")
        bound = 1.0 / np.sqrt(max(int(fan_in), 1))
        return rng.uniform(-bound, bound, int(size)).astype(dtype)
    if isinstance(value, str):
        raise ValueError(f"unknown bias init {value!r}; give a number or 'uniform_fan_in'")
    return np.full(int(size), float(value), dtype=dtype)


def init_weight(
    shape: tuple[int, ...],
    scheme: str,
    rng: np.random.Generator | None,
    *,
    sigma: float | None = None,
    scale: float | None = None,
    value: float | None = None,
    dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """A weight array of ``shape`` initialised with ``scheme`` (one of ``SCHEMES``).

    ``normal`` needs ``sigma``, ``uniform`` needs ``scale``, ``constant`` needs ``value``;
    a missing one raises ``ValueError`` naming it. Random schemes need ``rng``.
    """
    shape = tuple(int(s) for s in shape)
    if scheme == "zero":
        return zero(shape, dtype=dtype)
    if scheme == "constant":
        if value is None:
            raise ValueError("init scheme 'constant' needs 'value'")
        return constant(shape, value, dtype=dtype)
    if scheme not in SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    if rng is None:
        raise ValueError(f"init scheme {scheme!r} needs a random generator 'rng'")
    if scheme == "normal":
        if sigma is None:
            raise ValueError("init scheme 'normal' needs 'sigma'")
        return normal(shape, sigma, rng, dtype=dtype)
    if scheme == "uniform":
        if scale is None:
            raise ValueError("init scheme 'uniform' needs 'scale'")
        return uniform(shape, scale, rng, dtype=dtype)
    fn = {
        "glorot_normal": glorot_normal,
        "glorot_uniform": glorot_uniform,
        "he_normal": he_normal,
        "he_uniform": he_uniform,
    }[scheme]
    return fn(shape, rng, dtype=dtype)


__all__ = [
    "SCHEMES",
    "constant",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "init_weight",
    "normal",
    "uniform",
    "zero",
]
