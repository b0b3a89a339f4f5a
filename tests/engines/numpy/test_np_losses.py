"""Losses and penalties of the NumPy engine, against hand computation and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainlab.engines.numpy import (
    accuracy,
    l1_penalty,
    l2_penalty,
    relative_error,
    shrink_weights,
    softmax,
    softmax_cross_entropy,
    squared_loss,
)


def numeric_grad(f, z: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Centred differences of the scalar f at every entry of z (N, C)."""
    g = np.zeros_like(z)  # (N, C)
    for i in np.ndindex(z.shape):
        old = z[i]
        z[i] = old + eps
        fp = f(z)
        z[i] = old - eps
        fm = f(z)
        z[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


@pytest.fixture
def batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((6, 4)) * 3, rng.integers(0, 4, 6)  # (N, C), (N,)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_matches_torch(batch, reduction: str, smoothing: float) -> None:
    z, y = batch
    loss, dz = softmax_cross_entropy(z, y, reduction=reduction, label_smoothing=smoothing)
    tz = torch.tensor(z, requires_grad=True)
    tl = F.cross_entropy(tz, torch.tensor(y), reduction=reduction, label_smoothing=smoothing)
    tl.backward()
    assert loss == pytest.approx(tl.item(), rel=1e-12)
    np.testing.assert_allclose(dz, tz.grad.numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_gradient_check(batch, smoothing: float) -> None:
    z, y = batch
    _, dz = softmax_cross_entropy(z, y, label_smoothing=smoothing)
    num = numeric_grad(lambda a: softmax_cross_entropy(a, y, label_smoothing=smoothing)[0], z)
    assert relative_error(dz, num).max() < 1e-6


def test_cross_entropy_by_hand() -> None:
    z = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])  # (N, C)
    y = np.array([2, 0])
    p0 = np.exp(3) / (np.exp(1) + np.exp(2) + np.exp(3))
    expected = (-np.log(p0) + np.log(3)) / 2
    assert softmax_cross_entropy(z, y)[0] == pytest.approx(expected)


def test_softmax_is_stable_on_huge_logits() -> None:
    z = np.array([[1e4, 0.0, -1e4], [1e30, 1e30, 1e30]], dtype=np.float32)  # (N, C)
    p = softmax(z)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)
    loss, dz = softmax_cross_entropy(z, np.array([2, 1]))
    assert np.isfinite(loss) and np.isfinite(dz).all()
    assert loss == pytest.approx((2e4 + np.log(3)) / 2, rel=1e-6)


def test_squared_loss_by_hand_and_gradient(batch) -> None:
    z = np.array([[0.5, -1.0], [2.0, 0.0]])  # (N, C)
    y = np.array([0, 1])
    # example 0: 0.5 * ((0.5 - 1)^2 + 1^2) = 0.625; example 1: 0.5 * (4 + 1) = 2.5
    assert squared_loss(z, y, reduction="sum")[0] == pytest.approx(3.125)
    assert squared_loss(z, y)[0] == pytest.approx(3.125 / 2)
    z, y = batch
    _, dz = squared_loss(z, y)
    assert relative_error(dz, numeric_grad(lambda a: squared_loss(a, y)[0], z)).max() < 1e-6


def test_loss_arguments_are_checked(batch) -> None:
    z, y = batch
    with pytest.raises(ValueError, match="reduction"):
        softmax_cross_entropy(z, y, reduction="none")
    with pytest.raises(ValueError, match="labels"):
        squared_loss(z, y[:3])


def test_penalties_weights_only_and_all() -> None:
    params = {"0.W": np.array([[1.0, -2.0]]), "0.b": np.array([3.0]),
              "1.gamma": np.array([-1.0])}
    value, pen = l2_penalty(params, 0.5)
    assert value == pytest.approx(0.5 * 5.0) and set(pen) == {"0.W"}  # Keras: l2 * sum(W^2)
    np.testing.assert_allclose(pen["0.W"], [[1.0, -2.0]])  # gradient 2 * l2 * W
    value, pen = l2_penalty(params, 0.5, apply_to="all")
    assert value == pytest.approx(0.5 * 15.0) and set(pen) == set(params)
    value, pen = l1_penalty(params, 0.1)
    assert value == pytest.approx(0.3)
    np.testing.assert_allclose(pen["0.W"], [[0.1, -0.1]])
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    l1_penalty(params, 0.1, apply_to="all", grads=grads)
    np.testing.assert_allclose(grads["1.gamma"], [-0.1])
    with pytest.raises(ValueError, match="apply_to"):
        l2_penalty(params, 0.1, apply_to="biases")


def test_penalty_gradients_are_numerically_right() -> None:
    w = np.random.default_rng(0).standard_normal((3, 4))  # (D, M)
    for fn in (l1_penalty, l2_penalty):
        _, pen = fn({"0.W": w}, 0.3)
        num = numeric_grad(lambda a, fn=fn: fn({"0.W": a}, 0.3)[0], w)
        assert relative_error(pen["0.W"], num).max() < 1e-6


def test_accuracy() -> None:
    z = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])  # (N, C)
    assert accuracy(z, np.array([1, 0, 0])) == pytest.approx(2 / 3)


# -- squared loss without the 1/2 (loss.half: false) and the shrink -----------------------------
def test_squared_loss_without_the_half_by_hand_and_gradient(batch) -> None:
    z = np.array([[0.5, -1.0], [2.0, 0.0]])  # (N, C)
    y = np.array([0, 1])
    # example 0: (0.5 - 1)^2 + 1^2 = 1.25; example 1: 4 + 1 = 5 (seed E's mean sum of squared errors)
    assert squared_loss(z, y, reduction="sum", half=False)[0] == pytest.approx(6.25)
    loss, dz = squared_loss(z, y, half=False)
    assert loss == pytest.approx(6.25 / 2)
    np.testing.assert_allclose(dz, 2 * (z - np.eye(2)[y]) / 2)  # 2 (y_hat - y) / m
    z, y = batch
    for reduction in ("mean", "sum"):
        _, dz = squared_loss(z, y, reduction=reduction, half=False)
        num = numeric_grad(lambda a, r=reduction: squared_loss(a, y, reduction=r, half=False)[0], z)
        assert relative_error(dz, num).max() < 1e-6


def test_squared_loss_without_the_half_passes_the_model_gradient_check() -> None:
    from trainlab.engines.numpy import build_mlp, gradcheck

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 5)), rng.integers(0, 3, 8)  # (N, D), (N,)
    model = build_mlp(5, 3, [6], activation="sigmoid", batch_norm=True, rng=rng, dtype=np.float64)
    rows = gradcheck(model, x, y, loss=lambda z, t: squared_loss(z, t, half=False), l2=0.01)
    assert max(r.max_rel_error for r in rows) < 1e-6


def test_shrink_weights_scales_what_apply_to_covers() -> None:
    params = {"0.W": np.array([[1.0, -2.0]]), "0.b": np.array([3.0]), "1.gamma": np.array([-1.0])}
    shrink_weights(params, 0.25)
    np.testing.assert_array_equal(params["0.W"], [[0.75, -1.5]])
    assert params["0.b"].tolist() == [3.0] and params["1.gamma"].tolist() == [-1.0]
    shrink_weights(params, 0.5, apply_to="all")
    assert params["0.b"].tolist() == [1.5] and params["1.gamma"].tolist() == [-0.5]
