"""Layers of the NumPy engine: gradient checks and train/eval behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from trainlab.engines.numpy import (
    ELU,
    BatchNorm,
    Dropout,
    LeakyReLU,
    Linear,
    ReLU,
    Sigmoid,
    Tanh,
    gradcheck_layer,
)

TOL = 1e-6


def away_from_zero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Inputs with |x| >= 0.1, so a finite-difference step never crosses a ReLU kink."""
    x = rng.standard_normal(shape)  # shape
    return np.sign(x) * (np.abs(x) + 0.1)


def assert_checks(rows: list) -> None:
    for row in rows:
        assert row.max_rel_error < TOL, row


@pytest.mark.parametrize(
    "layer",
    [
        Linear(7, 5, rng=np.random.default_rng(0), dtype=np.float64),
        Linear(7, 5, rng=np.random.default_rng(0), dtype=np.float64, bias=False),
        ReLU(),
        LeakyReLU(0.1),
        ELU(1.3),
        Sigmoid(),
        Tanh(),
    ],
    ids=["linear", "linear_nobias", "relu", "leaky_relu", "elu", "sigmoid", "tanh"],
)
def test_layer_gradients(layer) -> None:
    x = away_from_zero(np.random.default_rng(1), (6, 7))  # (N, D)
    rows = gradcheck_layer(layer, x)
    assert {r.name for r in rows} == {*layer.params, "x"}
    assert_checks(rows)


def test_linear_bias_gradient_is_column_sum() -> None:
    layer = Linear(4, 3, rng=np.random.default_rng(0), dtype=np.float64)
    x = np.random.default_rng(1).standard_normal((5, 4))  # (N, D)
    layer.forward(x, True)
    dout = np.random.default_rng(2).standard_normal((5, 3))  # (N, M)
    dx = layer.backward(dout)
    np.testing.assert_allclose(layer.grads["b"], dout.sum(0))
    np.testing.assert_allclose(layer.grads["W"], x.T @ dout)
    np.testing.assert_allclose(dx, dout @ layer.params["W"].T)


def test_linear_flattens_images() -> None:
    layer = Linear(3 * 2 * 2, 4, rng=np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((5, 3, 2, 2)).astype(np.float32)  # (N, C, H, W)
    out = layer.forward(x, True)
    assert out.shape == (5, 4) and out.dtype == np.float32
    assert layer.backward(np.ones((5, 4), np.float32)).shape == x.shape


def test_inplace_relu_matches_copying_relu() -> None:
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)  # (N, D)
    dout = np.random.default_rng(1).standard_normal((4, 6)).astype(np.float32)  # (N, D)
    ref = ReLU()
    out_ref, dx_ref = ref.forward(x.copy(), True).copy(), ref.backward(dout.copy())
    inplace = ReLU(inplace=True)
    xi = x.copy()
    out = inplace.forward(xi, True)
    assert out is xi
    np.testing.assert_array_equal(out, out_ref)
    np.testing.assert_array_equal(inplace.backward(dout.copy()), dx_ref)


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_gradients(training: bool) -> None:
    rng = np.random.default_rng(0)
    bn = BatchNorm(5, dtype=np.float64)
    bn.params["gamma"][:] = rng.uniform(0.5, 1.5, 5)
    bn.params["beta"][:] = rng.standard_normal(5)
    bn.buffers["running_mean"][:] = rng.standard_normal(5)
    bn.buffers["running_var"][:] = rng.uniform(0.5, 2.0, 5)
    x = 2.0 + 3.0 * rng.standard_normal((8, 5))  # (N, D)
    assert_checks(gradcheck_layer(bn, x, training=training))


def test_batchnorm_train_uses_batch_statistics() -> None:
    rng = np.random.default_rng(0)
    bn = BatchNorm(4)
    x = (5.0 + 3.0 * rng.standard_normal((256, 4))).astype(np.float32)  # (N, D)
    out = bn.forward(x, training=True)
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=0), 1.0, atol=1e-3)
    # one step of the running averages, momentum 0.9
    np.testing.assert_allclose(bn.buffers["running_mean"], 0.1 * x.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(bn.buffers["running_var"], 0.9 + 0.1 * x.var(axis=0), rtol=1e-5)


def test_batchnorm_eval_uses_running_statistics() -> None:
    rng = np.random.default_rng(0)
    bn = BatchNorm(3, dtype=np.float64)
    x = 5.0 + 3.0 * rng.standard_normal((64, 3))  # (N, D)
    train_out = bn.forward(x, training=True).copy()
    eval_out = bn.forward(x, training=False)
    expected = (x - bn.buffers["running_mean"]) / np.sqrt(bn.buffers["running_var"] + 1e-5)
    np.testing.assert_allclose(eval_out, expected)
    assert not np.allclose(eval_out, train_out)
    for _ in range(200):  # the running averages converge to the batch statistics
        bn.forward(x, training=True)
    np.testing.assert_allclose(bn.forward(x, training=False), train_out, atol=1e-4)


def test_dropout_gradients_with_fixed_mask() -> None:
    layer = Dropout(0.4, rng=np.random.default_rng(3))
    x = np.random.default_rng(1).standard_normal((6, 7))  # (N, D)
    assert_checks(gradcheck_layer(layer, x))


def test_dropout_keeps_expectation_and_eval_is_identity() -> None:
    p = 0.3
    layer = Dropout(p, seed=0)
    x = np.full((1000, 200), 2.0, dtype=np.float32)  # (N, D)
    out = layer.forward(x, training=True)
    kept = out != 0
    assert abs(kept.mean() - (1 - p)) < 0.01
    np.testing.assert_allclose(out[kept], 2.0 / (1 - p), rtol=1e-6)
    assert abs(out.mean() - 2.0) < 0.02
    assert layer.forward(x, training=False) is x
    np.testing.assert_array_equal(layer.backward(x), x)


def test_dropout_masks_follow_the_seed() -> None:
    x = np.ones((10, 10), dtype=np.float32)  # (N, D)
    a, b, c = Dropout(0.5, seed=7), Dropout(0.5, seed=7), Dropout(0.5, seed=8)
    out_a, out_b, out_c = (layer.forward(x, True) for layer in (a, b, c))
    np.testing.assert_array_equal(out_a, out_b)
    assert not np.array_equal(out_a, out_c)


def test_dropout_rejects_bad_probability() -> None:
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.0)


def test_dtype_follows_parameters_and_input() -> None:
    x = np.random.default_rng(0).standard_normal((3, 4))  # (N, D) float64
    assert Linear(4, 2, rng=np.random.default_rng(0)).forward(x, True).dtype == np.float32
    for layer in (ReLU(), LeakyReLU(), ELU(), Sigmoid(), Tanh()):
        assert layer.forward(x.astype(np.float32), True).dtype == np.float32
        assert layer.forward(x, True).dtype == np.float64


def test_sigmoid_is_stable_on_large_inputs() -> None:
    out = Sigmoid().forward(np.array([[-1000.0, 0.0, 1000.0]]), True)
    np.testing.assert_allclose(out, [[0.0, 0.5, 1.0]])
