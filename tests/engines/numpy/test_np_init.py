"""Initialisation schemes: statistics, required arguments, seeding."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainlab.engines.numpy import Linear, init_weight

SHAPE = (400, 600)  # (D, M): fan_in 400, fan_out 600


@pytest.mark.parametrize(
    ("scheme", "std", "bound"),
    [  # bound: sqrt(6 / fan), the uniform scheme's a; U(-a, a) has std a / sqrt(3)
        ("glorot_normal", math.sqrt(2 / 1000), math.sqrt(6 / 1000)),
        ("glorot_uniform", math.sqrt(2 / 1000), math.sqrt(6 / 1000)),
        ("he_normal", math.sqrt(2 / 400), math.sqrt(6 / 400)),
        ("he_uniform", math.sqrt(2 / 400), math.sqrt(6 / 400)),
    ],
)
def test_scaled_schemes_have_the_right_std(scheme: str, std: float, bound: float) -> None:
    w = init_weight(SHAPE, scheme, np.random.default_rng(0))
    assert w.dtype == np.float32 and w.shape == SHAPE
    assert abs(w.mean()) < 0.01 * std  # 5 standard errors of the mean of 240,000 draws
    assert w.std() == pytest.approx(std, rel=0.02)
    # The std alone does not tell a normal from a uniform of that std; the tails do.
    largest = np.abs(w).max()
    if scheme.endswith("_uniform"):
        # inside [-a, a] (a rounded to float32 as the weights are) and reaching its edge
        assert largest <= np.float32(bound) and largest > 0.99 * bound
    else:
        # past sqrt(3) * std = a, where no uniform of this std reaches, and untruncated as
        # documented: 240 000 normal draws go beyond 4 sd (the expected maximum is ~4.6 sd)
        assert largest > bound and largest > 4 * std


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


def test_biases_start_constant_or_at_pytorchs_default() -> None:
    constant = Linear(50, 400, rng=np.random.default_rng(0), bias_init=1e-5)
    assert np.all(constant.params["b"] == np.float32(1e-5))
    uniform = Linear(50, 4000, rng=np.random.default_rng(0), bias_init="uniform_fan_in")
    bias = uniform.params["b"]
    assert np.abs(bias).max() <= 50**-0.5 and np.abs(bias).max() > 0.99 * 50**-0.5
    assert bias.std() == pytest.approx(50**-0.5 / math.sqrt(3), rel=0.05)  # U(-a, a) has std a / sqrt(3)
    # a constant bias draws nothing, so the next layer's weights are the same as with 0
    first, second = np.random.default_rng(1), np.random.default_rng(1)
    Linear(5, 4, rng=first, bias_init=0.3), Linear(5, 4, rng=second)
    assert np.array_equal(Linear(4, 3, rng=first).params["W"], Linear(4, 3, rng=second).params["W"])
    with pytest.raises(ValueError, match="bias init"):
        Linear(5, 4, rng=np.random.default_rng(0), bias_init="ones")


def test_the_engine_honours_the_configs_bias_and_output_activation() -> None:
    from trainlab.config import RunConfig
    from trainlab.engines.numpy.engine import build_model

    cfg = RunConfig.from_dict({"engine": "numpy", "data": {"dataset": "mnist"},
                               "model": {"type": "mlp", "hidden": [6], "activation": "elu", "activate_output": True,
                                         "init": {"scheme": "normal", "sigma": 1e-3, "bias": 1e-5}}})
    model = build_model(cfg, 12, 3, np.random.default_rng(0))
    assert [type(layer).__name__ for layer in model.layers] == ["Linear", "ELU", "Linear", "ELU"]
    assert all(np.all(layer.params["b"] == np.float32(1e-5)) for layer in model.layers if "b" in layer.params)


def test_schemes_are_the_configs() -> None:
    """Every weight scheme the config accepts (but the engine's own ``default``) is drawn, and
    a name that is no scheme, such as the bias initialiser's, is refused by name."""
    from typing import get_args

    from trainlab.config.model import InitScheme
    from trainlab.engines.numpy.init import SCHEMES

    assert set(SCHEMES) == set(get_args(InitScheme)) - {"default"}
    rng = np.random.default_rng(0)
    for scheme in SCHEMES:
        options = {"sigma": 0.1, "scale": 0.1, "value": 0.5}
        assert init_weight((3, 2), scheme, rng, **options).shape == (3, 2)
    with pytest.raises(ValueError, match="unknown init scheme 'init_bias'"):
        init_weight((3, 2), "init_bias", rng)
