"""Update rules: the first two steps against values computed by hand, and exact resume."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainlab.engines.numpy import make_optimizer
from trainlab.engines.numpy import optim as optim_mod

LR = 0.1
P0 = np.array([1.0, -2.0])
G1 = np.array([0.5, 1.0])
G2 = np.array([-1.0, 2.0])


def two_steps(type_: str, **options: float) -> tuple[np.ndarray, np.ndarray]:
    """Parameters after step 1 and after step 2 (gradients G1 then G2)."""
    opt = make_optimizer(type_, **options)
    params = {"0.W": P0.copy()}
    opt.step(params, {"0.W": G1.copy()}, LR)
    after1 = params["0.W"].copy()
    opt.step(params, {"0.W": G2.copy()}, LR)
    return after1, params["0.W"]


def check(type_: str, expected1, expected2, **options: float) -> None:
    p1, p2 = two_steps(type_, **options)
    np.testing.assert_allclose(p1, expected1, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(p2, expected2, rtol=1e-12, atol=1e-14)


def test_sgd() -> None:
    p1 = P0 - LR * G1
    check("sgd", p1, p1 - LR * G2)


def test_momentum() -> None:
    mu = 0.9
    v1 = -LR * G1
    v2 = mu * v1 - LR * G2
    check("momentum", P0 + v1, P0 + v1 + v2, momentum=mu)


def test_nesterov() -> None:
    mu = 0.5
    v1 = -LR * G1
    p1 = P0 + (1 + mu) * v1  # v_prev = 0
    v2 = mu * v1 - LR * G2
    check("nesterov", p1, p1 - mu * v1 + (1 + mu) * v2, momentum=mu)


def test_rmsprop() -> None:
    a, eps = 0.99, 1e-8
    c1 = (1 - a) * G1**2
    p1 = P0 - LR * G1 / (np.sqrt(c1) + eps)
    c2 = a * c1 + (1 - a) * G2**2
    check("rmsprop", p1, p1 - LR * G2 / (np.sqrt(c2) + eps))


def test_adagrad() -> None:
    eps = 1e-10
    c1 = G1**2
    p1 = P0 - LR * G1 / (np.sqrt(c1) + eps)
    c2 = c1 + G2**2
    check("adagrad", p1, p1 - LR * G2 / (np.sqrt(c2) + eps))


def adam_by_hand(p: np.ndarray, wd: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    b1, b2, eps = 0.9, 0.999, 1e-8
    m = v = np.zeros(2)
    out = []
    for t, g in enumerate((G1, G2), start=1):
        p = p * (1 - LR * wd)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        p = p - LR * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        out.append(p)
    return out[0], out[1]


def test_adam() -> None:
    e1, e2 = adam_by_hand(P0)
    # the first Adam step moves each entry by about lr, whatever the gradient scale
    np.testing.assert_allclose(e1, P0 - LR * np.sign(G1), rtol=1e-6)
    check("adam", e1, e2)


def test_adamw_decouples_weight_decay() -> None:
    e1, e2 = adam_by_hand(P0, wd=0.1)
    check("adamw", e1, e2, weight_decay=0.1)


def test_coupled_weight_decay_adds_l2_to_the_gradient() -> None:
    wd = 0.2
    p1 = P0 - LR * (G1 + wd * P0)
    check("sgd", p1, p1 - LR * (G2 + wd * p1), weight_decay=wd)


def test_gradients_are_not_modified() -> None:
    g = {"0.W": G1.copy()}
    make_optimizer("momentum", weight_decay=0.1).step({"0.W": P0.copy()}, g, LR)
    np.testing.assert_array_equal(g["0.W"], G1)


@pytest.mark.parametrize("type_", sorted(optim_mod.OPTIMIZERS))
def test_state_dict_resumes_exactly(tmp_path, type_: str) -> None:
    rng = np.random.default_rng(0)
    shape = (optim_mod.CHUNK + 17,)  # more than one chunk
    params = {"0.W": rng.standard_normal(shape).astype(np.float32),
              "0.b": rng.standard_normal(3).astype(np.float32)}
    grads = [{k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()}
             for _ in range(4)]
    ref = make_optimizer(type_)
    ref_params = {k: v.copy() for k, v in params.items()}
    for g in grads:
        ref.step(ref_params, g, 0.01)

    first = make_optimizer(type_)
    for g in grads[:2]:
        first.step(params, g, 0.01)
    np.savez(tmp_path / "opt.npz", **first.state_dict())
    resumed = make_optimizer(type_)
    resumed.load_state_dict(dict(np.load(tmp_path / "opt.npz")))
    for g in grads[2:]:
        resumed.step(params, g, 0.01)
    for k in params:
        np.testing.assert_array_equal(params[k], ref_params[k])


def test_chunked_update_matches_one_pass() -> None:
    n = 2 * optim_mod.CHUNK + 5
    rng = np.random.default_rng(1)
    p = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    params = {"w": p.copy()}
    make_optimizer("momentum", momentum=0.9).step(params, {"w": g}, 0.5)
    np.testing.assert_array_equal(params["w"], p - np.float32(0.5) * g)


def test_make_optimizer_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="lion"):
        make_optimizer("lion")
    with pytest.raises(ValueError, match="betas"):
        make_optimizer("adam", betas=0.9)
    assert math.isclose(make_optimizer("adamw").weight_decay, 0.01)


# -- RMSprop with momentum (PyTorch's form) ----------------------------------------------------
def test_rmsprop_with_momentum() -> None:
    a, eps, mu = 0.9, 1e-8, 0.8
    c1 = (1 - a) * G1**2
    buf1 = G1 / (np.sqrt(c1) + eps)
    p1 = P0 - LR * buf1
    c2 = a * c1 + (1 - a) * G2**2
    buf2 = mu * buf1 + G2 / (np.sqrt(c2) + eps)
    check("rmsprop", p1, p1 - LR * buf2, alpha=a, momentum=mu)


def test_rmsprop_without_momentum_keeps_no_buffer() -> None:
    opt = make_optimizer("rmsprop")
    opt.step({"0.W": P0.copy()}, {"0.W": G1.copy()}, LR)
    assert sorted(k for k in opt.state if k != "t") == ["cache:0.W"]
    assert opt.state_dict()["hp:momentum"] == 0.0


def test_rmsprop_momentum_matches_torch_under_a_changing_lr() -> None:
    """The same update as ``torch.optim.RMSprop(momentum=...)``, lr changed between steps."""
    import torch

    rng = np.random.default_rng(3)
    p0 = rng.standard_normal(5)
    grads = [rng.standard_normal(5) for _ in range(6)]
    lrs = [0.1, 0.05, 0.05, 0.01, 0.2, 0.1]
    opt = make_optimizer("rmsprop", alpha=0.95, eps=1e-6, momentum=0.9, weight_decay=0.01)
    params = {"0.W": p0.copy()}
    t = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    ref = torch.optim.RMSprop([t], lr=0.1, alpha=0.95, eps=1e-6, momentum=0.9, weight_decay=0.01)
    for g, lr in zip(grads, lrs, strict=True):
        opt.step(params, {"0.W": g.copy()}, lr)
        ref.param_groups[0]["lr"] = lr
        t.grad = torch.from_numpy(g.copy())
        ref.step()
    np.testing.assert_allclose(params["0.W"], t.detach().numpy(), rtol=1e-13, atol=1e-15)


def test_rmsprop_momentum_resumes_exactly(tmp_path) -> None:
    rng = np.random.default_rng(0)
    params = {"0.W": rng.standard_normal(optim_mod.CHUNK + 3).astype(np.float32)}
    grads = [{"0.W": rng.standard_normal(params["0.W"].shape).astype(np.float32)} for _ in range(4)]
    ref, ref_params = make_optimizer("rmsprop", momentum=0.9), {"0.W": params["0.W"].copy()}
    for g in grads:
        ref.step(ref_params, g, 0.01)
    first = make_optimizer("rmsprop", momentum=0.9)
    for g in grads[:2]:
        first.step(params, g, 0.01)
    np.savez(tmp_path / "opt.npz", **first.state_dict())
    resumed = make_optimizer("rmsprop", momentum=0.9)
    resumed.load_state_dict(dict(np.load(tmp_path / "opt.npz")))
    assert "buf:0.W" in resumed.state
    for g in grads[2:]:
        resumed.step(params, g, 0.01)
    np.testing.assert_array_equal(params["0.W"], ref_params["0.W"])
