"""The fast path (fused.py): the same update as the plain path, used only where it may be."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import trainlab.api as tl
from tests.helpers import InterruptAt, assert_same_checkpoint_arrays, timeless, write_config
from trainlab.engines.numpy import Linear, build_mlp, fused, make_optimizer, softmax_cross_entropy
from trainlab.engines.numpy import engine as engine_mod
from trainlab.engines.numpy.fused import FusedUpdates, plan_fused_updates

needs_blas = pytest.mark.skipif(not fused.BLAS_AVAILABLE, reason="NumPy's BLAS exposes no usable gemm/axpy")


@needs_blas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blas_calls_match_numpy(dtype: type) -> None:
    rng = np.random.default_rng(0)
    x, dout = rng.standard_normal((9, 13)).astype(dtype), rng.standard_normal((9, 4)).astype(dtype)
    c = rng.standard_normal((13, 4)).astype(dtype)
    expected = 0.9 * c - 0.1 * (x.T @ dout)
    fused.gemm_tn(x, dout, c, alpha=-0.1, beta=0.9)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(c, expected, rtol=tol, atol=tol)
    y = rng.standard_normal((13, 4)).astype(dtype)
    expected_y = y - 0.5 * c
    fused.axpy(-0.5, c, y)
    np.testing.assert_allclose(y, expected_y, rtol=tol, atol=tol)
    with pytest.raises(ValueError, match="C-contiguous"):
        fused.gemm_tn(x, dout, np.asfortranarray(c), alpha=1.0, beta=0.0)


def train(dtype: type, fuse: bool, opt_type: str, l2: float = 0.0, steps: int = 12,
          **options: float) -> tuple[dict[str, np.ndarray], Any]:
    """A small BN MLP trained by hand, as the engine's step does; returns (params, optimizer)."""
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((steps * 16, 20)).astype(dtype), rng.integers(0, 4, steps * 16)
    model = build_mlp(20, 4, [16, 12], batch_norm=True, rng=np.random.default_rng(0), dtype=dtype)
    opt = make_optimizer(opt_type, **options)
    linears = {f"{i}.W": layer for i, layer in enumerate(model.layers) if isinstance(layer, Linear)}
    plan = FusedUpdates(linears if fuse else {}, decay=2 * l2)
    params, grads = model.parameters(), model.gradients()
    for s in range(steps):
        _, dlogits = softmax_cross_entropy(model.forward(x[s * 16:(s + 1) * 16], True), y[s * 16:(s + 1) * 16])
        with plan.deferring():
            model.backward(dlogits)
        for key in linears:
            if key not in plan.keys:
                grads[key] += 2 * l2 * params[key]
        opt.step(params, grads, 0.05, products=plan.products())
    return {k: v.copy() for k, v in params.items()}, opt


@needs_blas
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("opt_type", "options"), [("sgd", {}), ("momentum", {"momentum": 0.9}),
                                                   ("sgd", {"weight_decay": 0.01}),
                                                   ("momentum", {"momentum": 0.8, "weight_decay": 0.01})])
@pytest.mark.parametrize("l2", [0.0, 0.003])
def test_fused_update_is_the_plain_update(dtype: type, opt_type: str, options: dict, l2: float) -> None:
    plain, _ = train(dtype, False, opt_type, l2, **options)
    fast, opt = train(dtype, True, opt_type, l2, **options)
    tol = 1e-12 if dtype == np.float64 else 1e-5  # only float rounding differs
    for key in plain:
        assert np.abs(fast[key] - plain[key]).max() <= tol * np.abs(plain[key]).max(), key
    assert opt.state["t"] == 12
    if opt_type == "momentum":
        assert {k for k in opt.state if k.startswith("v:")} == {f"v:{k}" for k in plain}


@needs_blas
def test_fused_path_is_deterministic() -> None:
    first, _ = train(np.float32, True, "momentum", 0.003, momentum=0.9)
    again, _ = train(np.float32, True, "momentum", 0.003, momentum=0.9)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])


def test_plan_uses_the_fast_path_only_where_the_update_is_the_same() -> None:
    model = build_mlp(6, 3, [5, 4], batch_norm=True, rng=np.random.default_rng(0))
    momentum, adam = make_optimizer("momentum"), make_optimizer("adam")
    plan = plan_fused_updates(model, momentum, dtype=np.float32, l2=0.25)
    if not fused.BLAS_AVAILABLE:
        assert plan.keys == []
        return
    assert plan.keys == ["0.W", "3.W", "6.W"] and plan.decay == 0.5
    assert plan_fused_updates(model, make_optimizer("sgd")).keys == ["0.W", "3.W", "6.W"]
    for refused in (plan_fused_updates(model, momentum, dtype=np.float64),  # parity, gradcheck
                    plan_fused_updates(model, adam),
                    plan_fused_updates(model, make_optimizer("nesterov")),
                    plan_fused_updates(model, momentum, clipping=True),
                    plan_fused_updates(model, momentum, l1=1e-4)):
        assert refused.keys == []


@needs_blas
def test_deferring_is_for_one_backward_only() -> None:
    model = build_mlp(6, 3, [5], rng=np.random.default_rng(0))
    plan = plan_fused_updates(model, make_optimizer("momentum"))
    x, y = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32), np.array([0, 1, 2, 0])
    _, dlogits = softmax_cross_entropy(model.forward(x, True), y)
    with plan.deferring():
        model.backward(dlogits)
    assert not model.gradients()["0.W"].any()  # never formed
    products = plan.products()
    assert products["0.W"].x is model.layers[0].cache[0] and products["0.W"].decay == 0.0
    dW = products["0.W"].x.T @ products["0.W"].dout
    with pytest.raises(RuntimeError, match="no deferred gradient"):
        plan.products()  # used once
    model.backward(dlogits)  # outside: the plain backward forms dW (monitors rely on it)
    np.testing.assert_allclose(model.gradients()["0.W"], dW, rtol=1e-6)
    with pytest.raises(ValueError, match="not fusable"):
        make_optimizer("adam").step(model.parameters(), model.gradients(), 0.1, products=products)


@needs_blas
@pytest.mark.parametrize("shape", [(4, 6), (4, 2, 3)], ids=["flat", "image"])
def test_deferred_backward_is_the_plain_one_less_dW(shape: tuple[int, ...]) -> None:
    """The fast path's copy of Linear's backward: the same db and dx, and dW's factors."""
    rng = np.random.default_rng(3)
    layer = Linear(6, 5, rng=rng, dtype=np.float32)
    plan = FusedUpdates({"0.W": layer})
    x, dout = rng.standard_normal(shape).astype(np.float32), rng.standard_normal((4, 5))  # dout float64: cast
    layer.forward(x, True)
    dx_plain, db_plain = layer.backward(dout), layer.grads["b"].copy()
    dW_plain = layer.grads["W"].copy()
    layer.grads["W"][...] = layer.grads["b"][...] = 0.0
    with plan.deferring():
        dx_fast = layer.backward(dout)
    np.testing.assert_array_equal(dx_fast, dx_plain)
    assert dx_fast.shape == shape
    np.testing.assert_array_equal(layer.grads["b"], db_plain)
    assert not layer.grads["W"].any()
    product = plan.products()["0.W"]
    assert product.dout.dtype == np.float32
    np.testing.assert_array_equal(np.dot(product.x.T, product.dout), dW_plain)
    layer.need_dx = False
    with plan.deferring():
        assert layer.backward(dout) is None


def test_deferring_leaves_linear_plain_afterwards_even_on_error() -> None:
    model = build_mlp(6, 3, [5], rng=np.random.default_rng(0))
    plan = FusedUpdates({"0.W": model.layers[0], "2.W": model.layers[2]})
    with pytest.raises(KeyError), plan.deferring():
        assert all("backward" in vars(layer) for layer in plan.layers.values())
        raise KeyError("stop")
    assert all("backward" not in vars(layer) for layer in plan.layers.values())
    assert model.layers[0].backward.__func__ is Linear.backward


@needs_blas
def test_a_rule_without_fused_form_raises_before_any_update() -> None:
    model = build_mlp(6, 3, [5], rng=np.random.default_rng(0))
    plan = plan_fused_updates(model, make_optimizer("sgd"))
    x, y = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32), np.array([0, 1, 2, 0])
    _, dlogits = softmax_cross_entropy(model.forward(x, True), y)
    with plan.deferring():
        model.backward(dlogits)
    before = {k: v.copy() for k, v in model.parameters().items()}
    with pytest.raises(ValueError, match="Nesterov takes no gradient products"):
        make_optimizer("nesterov").step(model.parameters(), model.gradients(), 0.1, products=plan.products())
    for key, value in model.parameters().items():
        np.testing.assert_array_equal(value, before[key])


def _numpy_engine_imports(module: str) -> set[str]:
    """The engines.numpy modules ``module`` imports, TYPE_CHECKING blocks included."""
    path = Path(engine_mod.__file__).with_name(f"{module}.py")
    prefix = "trainlab.engines.numpy."
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(prefix):
            found.add(node.module.removeprefix(prefix).split(".")[0])
    return found


def _reachable(start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(_numpy_engine_imports(start))
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += _numpy_engine_imports(module)
    return seen


def test_the_fast_path_is_a_room_of_its_own() -> None:
    """Layers and update rules import nothing of the fast path, and it imports no circle."""
    for plain in ("layers", "optim"):
        assert not {"fused", "blas"} & _reachable(plain), plain
    assert {"blas", "layers", "optim"} <= _numpy_engine_imports("fused")
    assert "fused" not in _reachable("fused")


# -- through the engine --------------------------------------------------------------------
def _fused_config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "c.yaml", tmp_path / "runs", model={"type": "mlp", "hidden": [32, 16]},
                        optimizer={"type": "momentum", "lr": 0.05}, regularization={"l2": 1e-3},
                        train={"epochs": 2, "batch_size": 50, "eval_every": 10})


@needs_blas
@pytest.mark.usefixtures("real_data")
def test_engine_runs_the_fast_path_like_the_plain_one_and_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _fused_config(tmp_path)
    calls = []
    original = engine_mod.plan_fused_updates
    monkeypatch.setattr(engine_mod, "plan_fused_updates",
                        lambda *a, **k: calls.append(original(*a, **k)) or calls[-1])
    reference = tl.run(cfg, run_id="fused", progress=False, echo=False)
    assert calls[-1].keys == ["0.W", "2.W", "4.W"] and calls[-1].decay == 2e-3

    # Interrupted after the checkpoint of step 40, resumed: the same run bit for bit.
    with pytest.raises(KeyboardInterrupt):
        tl.run(cfg, run_id="cut", progress=False, echo=False, callbacks=[InterruptAt(50)])
    resumed = tl.run(resume=tmp_path / "runs" / "t" / "cut", progress=False, echo=False)
    assert timeless(resumed.metrics) == timeless(reference.metrics)
    assert_same_checkpoint_arrays(resumed.path / "checkpoint.npz", reference.path / "checkpoint.npz",
                                  ("model/", "optim/"))

    # The plain path: the same losses up to float32 rounding.
    monkeypatch.setattr(engine_mod, "plan_fused_updates", lambda *a, **k: FusedUpdates())
    plain = tl.run(cfg, run_id="plain", progress=False, echo=False)
    assert len(plain.metrics) == len(reference.metrics)
    for a, b in zip(plain.metrics, reference.metrics, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        if a["split"] == "train":  # the monitors see dW on both paths
            assert a["grad_norm_0"] == pytest.approx(b["grad_norm_0"], rel=1e-4)
