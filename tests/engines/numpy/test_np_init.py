"""Initialisation schemes: statistics, required arguments, seeding."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainlab.engines.numpy import init_weight

SHAPE = (400, 600)  # (D, M): fan_in 400, fan_out 600


@pytest.mark.parametrize(
    ("scheme", "std"),
    [
        ("glorot_normal", math.sqrt(2 / 1000)),
        ("glorot_uniform", math.sqrt(2 / 1000)),  # U(-a, a) has std a / sqrt(3)
        ("he_normal", math.sqrt(2 / 400)),
        ("he_uniform", math.sqrt(2 / 400)),
    ],
)
def test_scaled_schemes_have_the_right_std(scheme: str, std: float) -> None:
    w = init_weight(SHAPE, scheme, np.random.default_rng(0))
    assert w.dtype == np.float32 and w.shape == SHAPE
    assert abs(w.mean()) < 0.01 * std * 10
    assert w.std() == pytest.approx(std, rel=0.02)


def test_uniform_schemes_stay_in_their_bounds() -> None:
    a = math.sqrt(6 / 400)
    w = init_weight(SHAPE, "he_uniform", np.random.default_rng(0))
    assert np.abs(w).max() <= a and np.abs(w).max() > 0.99 * a
    w = init_weight(SHAPE, "uniform", np.random.default_rng(0), scale=0.3)
    assert np.abs(w).max() <= 0.3
    assert w.std() == pytest.approx(0.3 / math.sqrt(3), rel=0.02)


def test_normal_zero_constant() -> None:
    w = init_weight(SHAPE, "normal", np.random.default_rng(0), sigma=1e-3, dtype=np.float64)
    assert w.dtype == np.float64 and w.std() == pytest.approx(1e-3, rel=0.02)
    assert not init_weight(SHAPE, "zero", None).any()
    assert (init_weight((3,), "constant", None, value=0.5) == 0.5).all()


def test_missing_arguments_are_named() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="sigma"):
        init_weight(SHAPE, "normal", rng)
    with pytest.raises(ValueError, match="scale"):
        init_weight(SHAPE, "uniform", rng)
    with pytest.raises(ValueError, match="value"):
        init_weight(SHAPE, "constant", rng)
    with pytest.raises(ValueError, match="xavier"):
        init_weight(SHAPE, "xavier", rng)


def test_same_seed_same_weights_in_both_dtypes() -> None:
    a = init_weight((5, 4), "he_normal", np.random.default_rng(3))
    b = init_weight((5, 4), "he_normal", np.random.default_rng(3), dtype=np.float64)
    np.testing.assert_array_equal(a, b.astype(np.float32))
