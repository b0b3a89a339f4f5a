"""The MLP builder, Sequential's bookkeeping, and whole-model gradient checks."""

from __future__ import annotations

import numpy as np
import pytest

from trainlab.engines.numpy import (
    BatchNorm,
    Dropout,
    Linear,
    ReLU,
    Tanh,
    build_mlp,
    eps_sweep,
    gradcheck,
    make_optimizer,
    softmax_cross_entropy,
)


def data(n: int = 8, d: int = 3072, k: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, k, n)  # (N, D), (N,)


def test_linear_classifier_and_keys() -> None:
    model = build_mlp(12, 3, [], rng=np.random.default_rng(0))
    assert [type(layer) for layer in model.layers] == [Linear]
    assert list(model.parameters()) == ["0.W", "0.b"]
    assert model.num_params() == 12 * 3 + 3


def test_block_order_bn_before_and_after() -> None:
    before = build_mlp(6, 3, [5, 4], batch_norm=True, dropout=0.5, rng=np.random.default_rng(0))
    kinds = [type(layer).__name__ for layer in before.layers]
    assert kinds == ["Linear", "BatchNorm", "ReLU", "Dropout"] * 2 + ["Linear"]
    assert "b" not in before.layers[0].params  # BatchNorm's beta replaces it
    after = build_mlp(6, 3, [5], batch_norm=True, bn_position="after",
                      activation="tanh", rng=np.random.default_rng(0))
    assert [type(layer) for layer in after.layers] == [Linear, Tanh, BatchNorm, Linear]
    keys = list(after.parameters())
    assert keys == ["0.W", "0.b", "2.gamma", "2.beta", "3.W", "3.b"]
    assert set(after.state_arrays()) == {*keys, "2.running_mean", "2.running_var"}


def test_dropout_per_layer_and_errors() -> None:
    model = build_mlp(6, 3, [5, 4], dropout=[0.0, 0.2], rng=np.random.default_rng(0))
    assert [type(layer) for layer in model.layers] == [Linear, ReLU, Linear, ReLU, Dropout, Linear]
    with pytest.raises(ValueError, match="dropout"):
        build_mlp(6, 3, [5, 4], dropout=[0.1], rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="swish"):
        build_mlp(6, 3, [5], activation="swish", rng=np.random.default_rng(0))


def test_an_activated_output_layer_ends_in_the_activation_and_dropout() -> None:
    model = build_mlp(6, 3, [5], activation="elu", dropout=0.3, activate_output=True, rng=np.random.default_rng(0))
    assert [type(layer).__name__ for layer in model.layers] == ["Linear", "ELU", "Dropout"] * 2
    x = np.random.default_rng(1).standard_normal((64, 6)) * 100  # (N, D)
    assert model.forward(x, False).min() >= -1.0  # ELU bounds every logit below by -1
    plain = build_mlp(6, 3, [5], activation="elu", rng=np.random.default_rng(0))
    assert plain.forward(x, False).min() < -1.0


def test_default_init_depends_on_activation() -> None:
    relu = build_mlp(2000, 10, [1000], rng=np.random.default_rng(0))
    tanh = build_mlp(2000, 10, [1000], activation="tanh", rng=np.random.default_rng(0))
    assert relu.layers[0].params["W"].std() == pytest.approx(np.sqrt(2 / 2000), rel=0.02)
    assert tanh.layers[0].params["W"].std() == pytest.approx(np.sqrt(2 / 3000), rel=0.02)


def test_same_seed_same_model_and_masks() -> None:
    x, _ = data(16, 20)
    a, b = (build_mlp(20, 5, [30, 30], dropout=0.5, rng=np.random.default_rng(42))
            for _ in range(2))
    for k, v in a.parameters().items():
        np.testing.assert_array_equal(v, b.parameters()[k])
    np.testing.assert_array_equal(a.forward(x, True), b.forward(x, True))
    c = build_mlp(20, 5, [30, 30], dropout=0.5, rng=np.random.default_rng(43))
    assert not np.array_equal(a.layers[0].params["W"], c.layers[0].params["W"])


def test_parameters_are_views_updated_in_place() -> None:
    model = build_mlp(20, 5, [8], rng=np.random.default_rng(0))
    x, y = data(16, 20, 5)
    w = model.layers[0].params["W"]
    before = w.copy()
    opt = make_optimizer("sgd")
    _, dlogits = softmax_cross_entropy(model.forward(x.astype(np.float32), True), y)
    assert model.backward(dlogits) is None  # the first layer skips the data gradient
    opt.step(model.parameters(), model.gradients(), 0.1)
    assert model.parameters()["0.W"] is w
    np.testing.assert_allclose(w, before - 0.1 * model.gradients()["0.W"], rtol=1e-6)


def test_state_arrays_round_trip() -> None:
    model = build_mlp(10, 3, [6], batch_norm=True, rng=np.random.default_rng(0))
    x, _ = data(32, 10, 3)
    model.forward(x.astype(np.float32), True)  # moves the running statistics
    saved = model.state_arrays()
    other = build_mlp(10, 3, [6], batch_norm=True, rng=np.random.default_rng(1))
    other.load_state_arrays(saved)
    xf = x.astype(np.float32)
    np.testing.assert_array_equal(other.forward(xf, False), model.forward(xf, False))
    with pytest.raises(ValueError, match="missing"):
        other.load_state_arrays({k: v for k, v in saved.items() if k != "1.running_var"})


@pytest.mark.parametrize("hidden", [[50], [50, 50]])
def test_bn_net_gradcheck(hidden: list[int]) -> None:
    x, y = data()
    model = build_mlp(3072, 10, hidden, batch_norm=True, dropout=0.2,
                      rng=np.random.default_rng(1), dtype=np.float64)
    rows = gradcheck(model, x, y, num_entries=40, l2=0.05)
    assert {r.name for r in rows} == set(model.parameters())
    for row in rows:
        assert row.max_rel_error < 1e-6, row


@pytest.mark.parametrize(("activation", "bn_position"), [("tanh", "after"), ("elu", "before"),
                                                         ("sigmoid", "before")])
def test_other_nets_gradcheck(activation: str, bn_position: str) -> None:
    x, y = data(6, 20, 4)
    model = build_mlp(20, 4, [7, 6], activation=activation, batch_norm=True,
                      bn_position=bn_position, rng=np.random.default_rng(2), dtype=np.float64)
    for loss in ("softmax", "squared"):
        for row in gradcheck(model, x, y, loss=loss, l1=0.01):
            assert row.max_rel_error < 1e-6, (loss, row)


def test_gradcheck_leaves_model_and_masks_unchanged() -> None:
    x, y = data(6, 20, 4)
    model = build_mlp(20, 4, [7], batch_norm=True, dropout=0.5,
                      rng=np.random.default_rng(2), dtype=np.float64)
    before = model.state_arrays()
    state = model.layers[-2].rng.bit_generator.state
    gradcheck(model, x, y, num_entries=5)
    for k, v in model.state_arrays().items():
        np.testing.assert_array_equal(v, before[k])
    assert model.layers[-2].rng.bit_generator.state == state


def test_gradcheck_needs_float64_and_eps_sweep() -> None:
    x, y = data(4, 10, 3)
    with pytest.raises(ValueError, match="float64"):
        gradcheck(build_mlp(10, 3, [5], rng=np.random.default_rng(0)), x, y)
    model = build_mlp(10, 3, [5], activation="tanh", rng=np.random.default_rng(0),
                      dtype=np.float64)
    sweep = eps_sweep(model, x, y, [1e-2, 1e-5, 1e-10], num_entries=10)
    errors = [rel for _, rel, _ in sweep]
    assert [eps for eps, _, _ in sweep] == [1e-2, 1e-5, 1e-10]
    assert errors[1] < 1e-7 and errors[1] < errors[0] and errors[1] < errors[2]
