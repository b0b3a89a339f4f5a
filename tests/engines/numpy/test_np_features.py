"""Engine features that the seed reports use, on the NumPy engine: Keras' batch-norm
settings, the weight shrink, and an inverse-time schedule that resumes exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import InterruptAt, assert_same_checkpoint_arrays, timeless
from trainlab.api import build_callbacks
from trainlab.callbacks import Callback, CallbackList, TrainState
from trainlab.config import NUMPY_OPTIMIZERS, RunConfig, config_schema
from trainlab.data import PreparedData
from trainlab.engines.base import FitContext
from trainlab.engines.numpy import BatchNorm, Linear, fused
from trainlab.engines.numpy import engine as engine_mod
from trainlab.engines.numpy.engine import NumpyEngine, build_model
from trainlab.engines.numpy.fused import plan_fused_updates
from trainlab.errors import ConfigError
from trainlab.run_files import read_metrics_csv
from trainlab.runs import create_run_dir


def synthetic_data(n: int = 64, shape: tuple[int, int, int] = (1, 4, 4), classes: int = 3) -> PreparedData:
    """Separable random images: each class has its own mean pattern."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(classes, *shape))

    def split(m: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(m) % classes
        return (centres[y] + 0.5 * rng.normal(size=(m, *shape))).astype(np.float32), y.astype(np.int64)

    (xt, yt), (xv, yv), (xs, ys) = split(n), split(n // 4), split(n // 4)
    return PreparedData(xt, yt, xv, yv, xs, ys, None, [str(c) for c in range(classes)], shape, classes,
                        {"kind": "none"}, "synthetic", Path("."))


def config(**sections: Any) -> RunConfig:
    cfg: dict[str, Any] = {"name": "t", "engine": "numpy", "data": {"dataset": "mnist"},
                           "model": {"type": "mlp", "hidden": [8]}, "train": {"epochs": 2, "batch_size": 16}}
    cfg.update(sections)
    return RunConfig.from_dict(cfg)


def fit(tmp_path: Path, cfg: RunConfig, run_id: str = "r", resume: bool = False,
        extra: tuple[Callback, ...] = ()) -> Path:
    """Train ``cfg`` on :func:`synthetic_data` into ``tmp_path/runs``; returns the run directory."""
    run_dir = create_run_dir(tmp_path / "runs", cfg.name, run_id, resume=resume, overwrite=not resume)
    context = FitContext(run_dir=run_dir, callbacks=CallbackList(build_callbacks(cfg, run_dir, extra)),
                         state=TrainState(), resume=resume, progress=False, log=lambda _m: None)
    NumpyEngine().fit(cfg, synthetic_data(), context)
    return run_dir.path


def test_optimizer_lists_agree() -> None:
    """The config refuses for engine: numpy exactly what the engine has no update rule for."""
    assert tuple(NUMPY_OPTIMIZERS) == engine_mod.SUPPORTED_OPTIMIZERS


def test_engine_support_is_declared_once() -> None:
    """What the NumPy engine trains is one declaration in config, which the engine's own
    registry of update rules matches exactly."""
    from trainlab.config import engine_support, run
    from trainlab.engines.numpy.optim import OPTIMIZERS

    assert tuple(OPTIMIZERS) == engine_support.NUMPY_OPTIMIZERS
    assert run.NUMPY_OPTIMIZERS is engine_support.NUMPY_OPTIMIZERS is engine_mod.SUPPORTED_OPTIMIZERS
    assert run.NUMPY_MODELS is engine_support.NUMPY_MODELS is engine_mod.SUPPORTED_MODELS


def test_config_fields_validate_and_are_described() -> None:
    cfg = config(model={"type": "mlp", "hidden": [4], "batch_norm": True, "bn_momentum": 0.01, "bn_eps": 1e-3},
                 optimizer={"type": "rmsprop"}, regularization={"shrink": 0.001},
                 loss={"type": "squared", "half": False})
    assert cfg.optimizer.momentum == 0.0 and cfg.regularization.shrink == 0.001 and not cfg.loss.half
    assert config(optimizer={"type": "rmsprop", "momentum": 0.9}).optimizer.momentum == 0.9
    for sections, message in [
        ({"regularization": {"shrink": 1.0}}, "regularization.shrink"),
        ({"regularization": {"shrink": -0.1}}, "regularization.shrink"),
        ({"loss": {"half": False}}, "loss.half: only loss type 'squared' has a 1/2 factor to drop"),
        ({"optimizer": {"type": "adam", "momentum": 0.9}}, "optimizer.momentum: not used by optimizer type 'adam'"),
    ]:
        with pytest.raises(ConfigError, match=message):
            config(**sections)
    schema = config_schema()["$defs"]
    assert "shrink" in schema["RegularizationConfig"]["description"]
    assert "not scaled by the lr" in schema["RegularizationConfig"]["properties"]["shrink"]["description"]
    assert "rmsprop" in schema["OptimizerConfig"]["properties"]["momentum"]["description"]
    assert "without the 1/2" in schema["LossConfig"]["properties"]["half"]["description"]
    model = schema["ModelConfig"]["properties"]
    assert "momentum=0.99) is bn_momentum: 0.01" in model["bn_momentum"]["description"]
    assert "epsilon=1e-3) is bn_eps: 0.001" in model["bn_eps"]["description"]


# -- batch norm: the config's momentum and eps, in PyTorch's convention --------------------------
def test_keras_batch_norm_settings_are_honoured() -> None:
    cfg = config(model={"type": "mlp", "hidden": [6, 5], "batch_norm": True, "bn_momentum": 0.01,
                        "bn_eps": 1e-3, "dtype": "float64"})
    model = build_model(cfg, 16, 3, np.random.default_rng(0))
    norms = [layer for layer in model.layers if isinstance(layer, BatchNorm)]
    assert len(norms) == 2 and all(n.momentum == 0.99 and n.eps == 1e-3 for n in norms)
    x = np.random.default_rng(1).standard_normal((10, 16)) * 3 + 1  # (N, D)
    model.forward(x, True)
    first = model.layers[0]
    assert isinstance(first, Linear)
    h = x @ first.params["W"]  # (N, 6): the first Linear has no bias in front of batch norm
    np.testing.assert_allclose(norms[0].buffers["running_mean"], 0.01 * h.mean(0), rtol=1e-12)
    np.testing.assert_allclose(norms[0].buffers["running_var"], 0.99 + 0.01 * h.var(0), rtol=1e-12)
    _, inv_std, _ = norms[0].cache
    np.testing.assert_allclose(inv_std, 1 / np.sqrt(h.var(0) + 1e-3), rtol=1e-12)  # bn_eps


def test_default_batch_norm_is_unchanged() -> None:
    model = build_model(config(model={"type": "mlp", "hidden": [4], "batch_norm": True}), 9, 2,
                        np.random.default_rng(0))
    norm = next(layer for layer in model.layers if isinstance(layer, BatchNorm))
    assert (norm.momentum, norm.eps) == (0.9, 1e-5)  # CS231n's 0.9 is PyTorch's default 0.1


# -- regularization.shrink ----------------------------------------------------------------------
def test_shrink_is_w_minus_lr_dw_minus_shrink_w(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One SGD step: the weights lose ``shrink * W`` on top of the plain step; biases do not."""
    def one_step(shrink: float) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        cfg = config(model={"type": "mlp", "hidden": [8], "dtype": "float64"}, optimizer={"type": "sgd", "lr": 0.5},
                     regularization={"shrink": shrink, "l2": 0.01}, train={"steps": 1, "batch_size": 16})
        run_dir = create_run_dir(tmp_path / "runs", "t", f"s{shrink}", overwrite=True)
        context = FitContext(run_dir=run_dir, callbacks=CallbackList([]), state=TrainState(), progress=False,
                             log=lambda _m: None)
        training = engine_mod.NumpyTraining(cfg, synthetic_data(), context)
        start = {k: v.copy() for k, v in training.model.parameters().items()}
        x, y = training.x_train[:16], training.y_train[:16]
        training.train_step(x, y, 0.5)
        return start, training.model.parameters()

    start, plain = one_step(0.0)
    _, shrunk = one_step(0.2)
    for key, value in start.items():
        expected = plain[key] - 0.2 * value if key.endswith("W") else plain[key]
        np.testing.assert_allclose(shrunk[key], expected, rtol=1e-12, atol=1e-15)


def test_in_eval_loss_adds_the_penalty_to_the_split_losses(tmp_path: Path) -> None:
    """``regularization.in_eval_loss``: the val and test losses gain l2 * sum W^2 (Keras' val_loss)."""
    def final(in_eval_loss: bool) -> tuple[dict[str, float], float]:
        cfg = config(model={"type": "mlp", "hidden": [8], "dtype": "float64"}, optimizer={"type": "sgd", "lr": 0.1},
                     regularization={"l2": 0.01, "in_eval_loss": in_eval_loss},
                     train={"steps": 3, "batch_size": 16, "eval_on_test": True})
        run_dir = create_run_dir(tmp_path / "runs", "t", f"p{in_eval_loss}", overwrite=True)
        context = FitContext(run_dir=run_dir, callbacks=CallbackList([]), state=TrainState(), progress=False,
                             log=lambda _m: None)
        training = engine_mod.NumpyTraining(cfg, synthetic_data(), context)
        summary = training.run()
        weights = [v for k, v in training.model.parameters().items() if k.endswith("W")]
        return summary, 0.01 * sum(float(np.vdot(w, w)) for w in weights)

    data_only, _ = final(False)
    with_penalty, extra = final(True)
    assert extra > 0
    for key in ("final_val_loss", "test_loss"):
        assert with_penalty[key] - data_only[key] == pytest.approx(extra, rel=1e-9)
    assert with_penalty["final_val_accuracy"] == data_only["final_val_accuracy"]


@pytest.mark.skipif(not fused.BLAS_AVAILABLE, reason="NumPy's BLAS exposes no usable gemm/axpy")
def test_shrink_keeps_the_plain_path() -> None:
    """The fast path would fold the update into the gradient's GEMM before the shrink."""
    model = build_model(config(), 16, 3, np.random.default_rng(0))
    sgd = engine_mod.make_optimizer("sgd")
    assert plan_fused_updates(model, sgd).keys == ["0.W", "2.W"]
    assert plan_fused_updates(model, sgd, shrink=0.01).keys == []


# -- inverse_time: logged lr and exact resume ------------------------------------------------------
def test_inverse_time_logs_its_lr_and_resumes_exactly(tmp_path: Path) -> None:
    cfg = config(optimizer={"type": "rmsprop", "lr": 0.01, "momentum": 0.9},
                 schedule={"type": "inverse_time", "decay": 0.3},
                 train={"epochs": 4, "batch_size": 16, "eval_every": 2})
    reference = fit(tmp_path, cfg, "reference")
    rows, _ = read_metrics_csv(reference / "metrics.csv")
    train_rows = [r for r in rows if r["split"] == "train"]
    assert len(train_rows) >= 4
    for row in train_rows:
        assert row["lr"] == pytest.approx(0.01 / (1 + 0.3 * (row["step"] - 1)), rel=1e-12)
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path, cfg, "cut", extra=(InterruptAt(10),))
    resumed = fit(tmp_path, cfg, "cut", resume=True)
    assert timeless(read_metrics_csv(resumed / "metrics.csv")[0]) == timeless(rows)
    assert_same_checkpoint_arrays(resumed / "checkpoint.npz", reference / "checkpoint.npz", ("model/", "optim/"))
