"""Layer monitors of the NumPy engine against a PyTorch forward/backward of the same net."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from trainlab.engines.numpy import BatchNorm, Dropout, Linear, ReLU, Sequential, build_mlp
from trainlab.engines.numpy.monitors import layer_monitors

N, D, K = 16, 6, 3  # batch, inputs, classes
BN_EPS = 1e-3


def _model(seed: int = 0, **options: Any) -> tuple[Sequential, np.random.Generator]:
    """A float64 MLP 6 -> 5 -> 4 -> 3 with BatchNorm's gamma, beta and running statistics
    moved off their defaults, so that a mix-up of any of them shows; also its generator
    (the dropout masks' source)."""
    rng = np.random.default_rng(seed)
    model = build_mlp(D, K, [5, 4], rng=rng, dtype=np.float64, bn_eps=BN_EPS, **options)
    init = np.random.default_rng(seed + 100)
    for layer in model.layers:
        if isinstance(layer, BatchNorm):
            dim = layer.params["gamma"].shape
            layer.params["gamma"][:] = init.uniform(0.5, 2.0, dim)
            layer.params["beta"][:] = init.normal(0.0, 0.5, dim)
            layer.buffers["running_mean"][:] = init.normal(0.0, 1.0, dim)
            layer.buffers["running_var"][:] = init.uniform(0.5, 2.0, dim)
        if isinstance(layer, Linear) and "b" in layer.params:
            layer.params["b"][:] = init.normal(0.0, 0.5, layer.params["b"].shape)
    return model, rng


def _half_squared_error_grad(target: np.ndarray) -> Any:
    """dlogits of 0.5 * ||logits - target||^2 / N: a loss of our own, not trainlab's."""
    return lambda logits: (logits - target) / len(target)


def _torch_reference(model: Sequential, x: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """The monitors as the module docstring defines them, from autograd on the same net.

    The dropout masks are the ones the monitors' forward pass drew (each Dropout caches its
    scaled mask), so call this after ``layer_monitors``.
    """
    n = x.shape[0]
    h = torch.tensor(x)
    linears: list[tuple[torch.Tensor, torch.Tensor]] = []  # (W, Linear output) per Linear
    activations: dict[int, torch.Tensor] = {}  # Linear number -> output of the ReLU after it
    for layer in model.layers:
        if isinstance(layer, Linear):
            w = torch.tensor(layer.params["W"], requires_grad=True)
            h = h @ w + torch.tensor(layer.params["b"]) if "b" in layer.params else h @ w
            h.retain_grad()
            linears.append((w, h))
        elif isinstance(layer, BatchNorm):  # training mode: biased batch variance
            mean, var = h.mean(0), h.var(0, unbiased=False)
            gamma, beta = torch.tensor(layer.params["gamma"]), torch.tensor(layer.params["beta"])
            h = (h - mean) / torch.sqrt(var + BN_EPS) * gamma + beta
        elif isinstance(layer, ReLU):
            h = torch.relu(h)
            activations[len(linears) - 1] = h
        elif isinstance(layer, Dropout):
            assert layer.cache is not None and (layer.cache == 0).any()  # training mode: units dropped
            h = h * torch.tensor(layer.cache)
        else:
            raise AssertionError(f"no reference for {layer!r}")
    logits = h
    (0.5 * ((logits - torch.tensor(target)) ** 2).sum() / n).backward()

    def per_example(t: torch.Tensor) -> float:
        return float(torch.linalg.norm(t)) / math.sqrt(n)

    expected = {"logit_norm": per_example(logits.detach())}
    for k, (w, z) in enumerate(linears):
        expected[f"weight_norm_{k}"] = float(torch.linalg.norm(w.detach()))
        expected[f"grad_norm_{k}"] = float(torch.linalg.norm(w.grad))
        expected[f"delta_norm_{k}"] = per_example(z.grad)
        act = activations.get(k, z).detach()  # the output layer has no activation: its logits
        expected[f"act_norm_{k}"] = per_example(act)
        if k in activations:  # a unit is dead when it fires for no example of the batch
            expected[f"dead_relu_{k}"] = float((act <= 0).all(dim=0).double().mean())
    return expected


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"batch_norm": True, "bn_position": "before", "dropout": 0.3},
        {"batch_norm": True, "bn_position": "after", "dropout": [0.5, 0.25]},
    ],
    ids=["plain", "bn-before-dropout", "bn-after-dropout"],
)
def test_monitors_match_a_hand_forward_and_backward(options: dict[str, Any]) -> None:
    model, _ = _model(**options)
    data = np.random.default_rng(1)
    x, target = data.normal(0.5, 1.0, (N, D)), data.normal(0.0, 1.0, (N, K))
    values = layer_monitors(model, x, _half_squared_error_grad(target))
    expected = _torch_reference(model, x, target)
    assert values.keys() == expected.keys()
    for key, value in expected.items():
        assert values[key] == pytest.approx(value, rel=1e-10, abs=1e-12), key
    # the output layer's activation is the logits themselves
    assert values["act_norm_2"] == pytest.approx(values["logit_norm"], rel=1e-12)


def test_dead_relu_counts_units_silent_on_the_whole_batch() -> None:
    model, _ = _model()
    first = model.layers[0]
    x, target = np.random.default_rng(1).normal(0.0, 1.0, (N, D)), np.zeros((N, K))
    first.params["b"][:] = [-100.0, -100.0, 0.0, 0.0, 0.0]  # two units can never fire
    values = layer_monitors(model, x, _half_squared_error_grad(target))
    # 2 of 5 units dead; the other three fire on some examples only, so a count of zero
    # entries (rather than of units silent on every example) would be higher
    assert values["dead_relu_0"] == pytest.approx(0.4)
    first.params["b"][:] = -100.0  # a large negative bias kills the whole layer ...
    values = layer_monitors(model, x, _half_squared_error_grad(target))
    assert values["dead_relu_0"] == 1.0 and values["act_norm_0"] == 0.0
    assert values["grad_norm_0"] == 0.0  # ... and no gradient reaches its weights
    model.layers[2].params["b"][:] = -1.0  # zero input and a negative bias: the next one too
    assert layer_monitors(model, x, _half_squared_error_grad(target))["dead_relu_1"] == 1.0


def test_monitors_leave_bn_statistics_dropout_rng_and_weights_alone() -> None:
    model, rng = _model(batch_norm=True, dropout=0.3)
    x = np.random.default_rng(1).normal(3.0, 2.0, (N, D))  # far from the running mean and var
    before = model.state_arrays()
    rng_state = rng.bit_generator.state
    twin = np.random.default_rng()
    twin.bit_generator.state = rng_state
    layer_monitors(model, x, _half_squared_error_grad(np.zeros((N, K))))
    after = model.state_arrays()
    assert after.keys() == before.keys() and any(k.endswith("running_mean") for k in after)
    for key, array in before.items():
        np.testing.assert_array_equal(after[key], array, err_msg=key)
    # the next dropout mask is the one training would have drawn had nobody looked
    assert rng.bit_generator.state == rng_state
    np.testing.assert_array_equal(rng.random(8), twin.random(8))
    # not a vacuous check: a training forward on this batch does move the running mean
    twin_model, _ = _model(batch_norm=True, dropout=0.3)
    twin_model.forward(x, True)
    assert not np.allclose(twin_model.buffers()["1.running_mean"], before["1.running_mean"])
