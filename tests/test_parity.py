"""Engine parity: one MLP config means the same thing on the NumPy and the torch engine.

Each check trains a small MLP for 5 steps of 16 random examples in float64 through both
engines' own step code (hand-written backward passes against autograd, each engine's
optimizer, schedule, penalty and clipping) and asks for a relative difference of at most
1e-6 in every loss, gradient and parameter. Measured differences are about 1e-14.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from trainlab.cli import main
from trainlab.config import RunConfig
from trainlab.engines.torch.optim import MomentumSGD
from trainlab.errors import ConfigError
from trainlab.parity import rel_diff, run_parity

THRESHOLD = 1e-6
OPTIMIZERS = ["sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw", "adagrad"]
ACTIVATIONS = ["relu", "leaky_relu", "elu", "sigmoid", "tanh"]
BN_POSITIONS = [None, "before", "after"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def config(activation: str = "relu", bn: str | None = "before", **sections: Any) -> RunConfig:
    model: dict[str, Any] = {"type": "mlp", "hidden": [12, 10], "activation": activation, "dropout": 0.2}
    if bn is not None:
        model.update(batch_norm=True, bn_position=bn)
    return RunConfig.from_dict({"engine": "torch", "data": {"dataset": "mnist"}, "model": model, **sections})


def parity(cfg: RunConfig, **kwargs: Any) -> dict[str, Any]:
    return run_parity(cfg, steps=5, batch_size=16, input_shape=(1, 4, 5), num_classes=3, **kwargs)


def assert_parity(result: dict[str, Any], steps: int = 5) -> None:
    assert result["passed"], json.dumps({k: v for k, v in result.items() if k.startswith("max")}, indent=1)
    assert result["max_rel_diff"] <= THRESHOLD
    assert len(result["rows"]) == steps and all(r["lr_numpy"] == r["lr_torch"] for r in result["rows"])


# -- optimizers, activations, batch norm ------------------------------------------------------
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("bn", BN_POSITIONS, ids=["no-bn", "bn-before", "bn-after"])
def test_every_optimizer_matches(optimizer: str, bn: str | None) -> None:
    opt: dict[str, Any] = {"type": optimizer, "lr": 0.05}
    if optimizer in ("adam", "adamw"):
        opt.update(eps=1e-6, betas=[0.8, 0.99])  # a config field must mean one thing in both
    if optimizer == "adamw":
        opt["weight_decay"] = 0.1
    result = parity(config("tanh", bn, optimizer=opt))
    assert_parity(result)
    assert result["optimizer"] == optimizer


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("bn", BN_POSITIONS, ids=["no-bn", "bn-before", "bn-after"])
def test_every_activation_and_batch_norm_position_matches(activation: str, bn: str | None) -> None:
    result = parity(config(activation, bn, optimizer={"type": "momentum", "lr": 0.1}))
    assert_parity(result)
    if bn == "before":  # the torch-only bias in front of batch norm is held at 0
        assert result["torch_only"] and all(b["max_abs"] == 0.0 for b in result["torch_only"])
        assert len(result["buffers"]) == 4  # running mean and variance of both BN layers
    else:
        assert not result["torch_only"]


def test_linear_classifier_and_coupled_weight_decay_match() -> None:
    cfg = RunConfig.from_dict({"engine": "numpy", "data": {"dataset": "mnist"}, "model": {"type": "linear"},
                               "optimizer": {"type": "rmsprop", "lr": 0.01, "weight_decay": 0.05}})
    assert_parity(parity(cfg))


# -- schedules: the momentum form matters once the lr changes -------------------------------
SCHEDULES = [
    {"type": "step", "step_size": 2, "gamma": 0.3, "per": "step"},
    {"type": "cyclical", "min_lr": 0.001, "max_lr": 0.2, "step_size": 2},
    {"type": "inverse_time", "decay": 0.5},
]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=["step", "cyclical", "inverse_time"])
@pytest.mark.parametrize("optimizer", ["momentum", "nesterov", "adam"])
def test_schedules_match(schedule: dict[str, Any], optimizer: str) -> None:
    result = parity(config("relu", "after", optimizer={"type": optimizer, "lr": 0.1}, schedule=schedule))
    assert_parity(result)
    # the lr both engines stepped with, against the schedule's closed form (lr 0.1, steps 0-4)
    expected = {"step": [0.1, 0.1, 0.03, 0.03, 0.009],
                "cyclical": [0.001, 0.1005, 0.2, 0.1005, 0.001],
                "inverse_time": [0.1 / (1 + 0.5 * s) for s in range(5)]}[schedule["type"]]
    assert [r["lr_numpy"] for r in result["rows"]] == pytest.approx(expected)


def test_pytorch_sgd_momentum_differs_under_a_schedule_but_the_engine_does_not() -> None:
    """Why the torch engine has its own momentum: PyTorch's form keeps g, not lr * g."""
    torch.manual_seed(0)
    grads = [torch.randn(4, dtype=torch.float64) for _ in range(4)]
    lrs = [0.1, 0.1, 0.01, 0.01]

    def train(opt_class: type[torch.optim.Optimizer], nesterov: bool) -> torch.Tensor:
        p = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
        opt = opt_class([p], lr=0.1, momentum=0.9, nesterov=nesterov)
        for g, lr in zip(grads, lrs, strict=True):
            opt.param_groups[0]["lr"] = lr
            p.grad = g.clone()
            opt.step()
        return p.detach()

    for nesterov in (False, True):
        # Reference: the config's form, v = mu v - lr g; p += v (Nesterov: p += mu v - lr g).
        v, p = torch.zeros(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
        for g, lr in zip(grads, lrs, strict=True):
            v = 0.9 * v - lr * g
            p = p + (0.9 * v - lr * g if nesterov else v)
        assert rel_diff(train(MomentumSGD, nesterov).numpy(), p.numpy()) < 1e-15
        assert rel_diff(train(torch.optim.SGD, nesterov).numpy(), p.numpy()) > 1e-3


def test_a_checkpoint_of_pytorch_sgd_resumes_with_the_same_velocity() -> None:
    """Runs checkpointed before the torch engine had its own momentum keep their momentum."""
    torch.manual_seed(0)
    grads = [torch.randn(3, dtype=torch.float64) for _ in range(4)]

    def run(first: type[torch.optim.Optimizer]) -> torch.Tensor:
        p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
        opt = first([p], lr=0.1, momentum=0.9)
        for g in grads[:2]:
            p.grad = g.clone()
            opt.step()
        resumed = MomentumSGD([p], lr=0.1, momentum=0.9)
        resumed.load_state_dict(opt.state_dict())
        for g in grads[2:]:
            p.grad = g.clone()
            resumed.step()
        return p.detach()

    assert rel_diff(run(torch.optim.SGD).numpy(), run(MomentumSGD).numpy()) < 1e-15


# -- penalties and clipping -------------------------------------------------------------------
@pytest.mark.parametrize("apply_to", ["weights", "all"])
def test_l1_matches(apply_to: str) -> None:
    result = parity(config("elu", "before", optimizer={"type": "adam", "lr": 0.01},
                           regularization={"l1": 0.01, "apply_to": apply_to}))
    assert_parity(result)


@pytest.mark.parametrize("apply_to", ["weights", "all"])
def test_l2_means_l2_times_the_sum_of_squares_on_both_engines(apply_to: str) -> None:
    """The config's L2 is l2 * sum(W^2) (Keras). Each engine's own penalty code is run."""
    result = parity(config("sigmoid", "after", optimizer={"type": "sgd", "lr": 0.1},
                           regularization={"l2": 0.05, "apply_to": apply_to}))
    assert_parity(result)


@pytest.mark.parametrize("clip", [{"grad_clip_value": 0.01}, {"grad_clip_norm": 0.05},
                                  {"grad_clip_value": 0.02, "grad_clip_norm": 0.05}],
                         ids=["value", "norm", "both"])
def test_clipping_matches(clip: dict[str, float]) -> None:
    result = parity(config("leaky_relu", "before", optimizer={"type": "nesterov", "lr": 0.5},
                           train={"batch_size": 16, **clip}))
    assert_parity(result)
    assert result["clipping"] == {"value": clip.get("grad_clip_value"), "norm": clip.get("grad_clip_norm")}


def test_label_smoothing_and_sum_reduction_match() -> None:
    result = parity(config("tanh", None, optimizer={"type": "adagrad", "lr": 0.05},
                           loss={"label_smoothing": 0.1, "reduction": "sum"}))
    assert_parity(result)


# -- features of the seed reports: RMSprop momentum, shrink, squared loss, Keras batch norm -------
@pytest.mark.parametrize("bn", BN_POSITIONS, ids=["no-bn", "bn-before", "bn-after"])
def test_rmsprop_momentum_matches_under_a_schedule(bn: str | None) -> None:
    result = parity(config("tanh", bn, optimizer={"type": "rmsprop", "lr": 0.01, "momentum": 0.9, "alpha": 0.9},
                           schedule={"type": "inverse_time", "decay": 0.5}))
    assert_parity(result)
    assert [r["lr_numpy"] for r in result["rows"]] == pytest.approx([0.01 / (1 + 0.5 * s) for s in range(5)])


@pytest.mark.parametrize(("optimizer", "apply_to"), [
    ({"type": "sgd", "lr": 0.1}, "weights"),
    ({"type": "momentum", "lr": 0.1}, "all"),
    ({"type": "adam", "lr": 0.01}, "weights"),
    ({"type": "rmsprop", "lr": 0.01, "weight_decay": 0.05}, "weights"),
])
def test_shrink_matches(optimizer: dict[str, Any], apply_to: str) -> None:
    """Both engines shrink the same parameters by the same factor, before the update (the
    NumPy engine's shrink itself is checked against W - lr*dW - shrink*W in its own tests)."""
    result = parity(config("relu", "after", optimizer=optimizer,
                           regularization={"shrink": 0.05, "l2": 0.01, "apply_to": apply_to}))
    assert_parity(result)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("half", [True, False])
def test_squared_loss_matches(reduction: str, half: bool) -> None:
    result = parity(config("sigmoid", "before", optimizer={"type": "sgd", "lr": 0.05},
                           loss={"type": "squared", "reduction": reduction, "half": half}))
    assert_parity(result)


def test_squared_loss_without_the_half_doubles_the_loss() -> None:
    def losses(half: bool) -> list[float]:
        result = parity(config("tanh", None, optimizer={"type": "sgd", "lr": 1e-12},
                               loss={"type": "squared", "half": half}))
        return [r["loss_numpy"] for r in result["rows"]]

    assert losses(False) == pytest.approx([2 * v for v in losses(True)], rel=1e-9)


@pytest.mark.parametrize("bn", ["before", "after"])
def test_keras_batch_norm_settings_match(bn: str) -> None:
    """Keras' BatchNormalization defaults (momentum 0.99, epsilon 1e-3) on both engines."""
    result = parity(config("relu", bn, optimizer={"type": "adam", "lr": 0.01},
                           model={"type": "mlp", "hidden": [12, 10], "batch_norm": True, "bn_position": bn,
                                  "bn_momentum": 0.01, "bn_eps": 1e-3}))
    assert_parity(result)
    assert len(result["buffers"]) == 4 and max(b["rel_diff"] for b in result["buffers"]) <= THRESHOLD


@pytest.mark.parametrize("activation", ["elu", "relu", "tanh"])
def test_an_activated_output_layer_matches(activation: str) -> None:
    """Seed A's mlp_tf.py: the hidden activation and dropout on the output layer too."""
    cfg = config(activation, None, optimizer={"type": "adam", "lr": 0.01})
    cfg = RunConfig.from_dict({**cfg.model_dump(mode="json"),
                               "model": {**cfg.model.model_dump(mode="json"), "activate_output": True}})
    assert_parity(parity(cfg))


# -- what parity refuses, and the command -----------------------------------------------------
@pytest.mark.parametrize(("sections", "match"), [
    ({"model": {"type": "cnn", "conv": [{"filters": 4}]}}, "linear and mlp"),
    ({"model": {"type": "mlp", "hidden": [4], "activation": "gelu"}}, "gelu"),
    ({"model": {"type": "mlp", "hidden": [4]}, "optimizer": {"type": "adadelta"}}, "adadelta"),
])
def test_what_one_engine_lacks_is_refused(sections: dict[str, Any], match: str) -> None:
    cfg = RunConfig.from_dict({"engine": "torch", "data": {"dataset": "mnist"}, **sections})
    with pytest.raises(ConfigError, match=match):
        parity(cfg)


def test_real_mnist_batches(real_data: Path) -> None:
    cfg = config("relu", "before", data={"dataset": "mnist", "normalize": "scale"},
                 optimizer={"type": "adam", "lr": 1e-3})
    result = run_parity(cfg, steps=3, batch_size=8, data="real", data_dir=real_data)
    assert_parity(result, steps=3)
    assert result["model"].startswith("mlp 784-12-10-10") and "mnist" in result["data"]


def test_parity_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mlp.yaml"
    path.write_text(yaml.safe_dump({
        "engine": "numpy", "data": {"dataset": "cifar10"},
        "model": {"type": "mlp", "hidden": [8], "batch_norm": True},
        "optimizer": {"type": "momentum", "lr": 0.05},
        "schedule": {"type": "cyclical", "min_lr": 0.01, "max_lr": 0.1, "step_size": 1},
    }))
    assert main(["parity", str(path), "--steps", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["passed"] and len(result["rows"]) == 3
    assert result["model"].startswith("mlp 3072-8-10")
    assert main(["parity", str(path), "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "passed" in out and "0.W" in out
    # Exit status 1 above the threshold.
    assert main(["parity", str(path), "--steps", "2", "--threshold", "1e-300"]) == 1
