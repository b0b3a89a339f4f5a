"""Optimizers, schedules, penalties and clipping of the torch engine, selected from configs."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainlab.config import RunConfig
from trainlab.engines.torch.models import build_model
from trainlab.engines.torch.optim import (
    OPTIMIZERS,
    build_optimizer,
    clip_gradients,
    penalized_params,
    penalty,
    shrink_before_step,
)
from trainlab.engines.torch.runtime import data_loss, stream_seed
from trainlab.run_files import read_metrics_csv
from trainlab.schedules import lr_at

TORCH_CLASSES = {
    "sgd": torch.optim.SGD, "momentum": torch.optim.SGD, "nesterov": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
    "adamax": torch.optim.Adamax, "nadam": torch.optim.NAdam, "adagrad": torch.optim.Adagrad,
    "adadelta": torch.optim.Adadelta,
}


def config(**sections: Any) -> RunConfig:
    return RunConfig.from_dict({"engine": "torch", "data": {"dataset": "mnist"},
                                "model": {"type": "mlp", "hidden": [4]}, **sections})


@pytest.mark.parametrize("type_", OPTIMIZERS)
def test_every_optimizer_is_selectable_and_trains(type_: str, fit_synthetic, synthetic_data) -> None:
    cfg = config(optimizer={"type": type_})
    opt = build_optimizer(nn.Linear(3, 2).parameters(), cfg.optimizer)
    assert isinstance(opt, TORCH_CLASSES[type_])
    group = opt.param_groups[0]
    if type_ == "nesterov":
        assert group["nesterov"] and group["momentum"] == 0.9
    if type_ == "adamw":
        assert group["weight_decay"] == 0.01  # decoupled, PyTorch's default
    if type_ == "adadelta":
        assert group["rho"] == 0.9
    train = {"epochs": 1, "batch_size": 16, "final_train_eval": True}
    summary, run_path = fit_synthetic({**cfg.model_dump(mode="json"), "train": train})
    assert summary["test_accuracy"] is not None and summary["steps"] == 6
    # The engine builds its model from stream 0 of the seed: the same weights it started from.
    model = build_model(cfg.model, (1, 6, 6), 3, seed=stream_seed(cfg.seed, 0)).eval()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    final = torch.load(run_path / "checkpoint.pt", weights_only=True)["model"]
    assert start.keys() == final.keys()
    for name, weights in start.items():  # a step() that does nothing leaves them as built
        assert not torch.equal(weights, final[name]), f"{type_} left {name} as initialised"
    data = synthetic_data()
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    with torch.no_grad():
        initial_loss = float(F.cross_entropy(model(x), y))
        model.load_state_dict(final)
        # the same forward gives the engine's own final train loss: the comparison below is fair
        assert float(F.cross_entropy(model(x), y)) == pytest.approx(summary["final_train_loss"], rel=1e-5)
    # Downhill, by a real amount: the smallest drop (adam's, at its default lr 1e-3) is ~0.06.
    assert summary["final_train_loss"] < initial_loss - 0.03


def test_optimizer_options_are_passed() -> None:
    cfg = config(optimizer={"type": "adam", "lr": 0.005, "betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 1e-4})
    group = build_optimizer(nn.Linear(3, 2).parameters(), cfg.optimizer).param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (0.005, (0.8, 0.99), 1e-6, 1e-4)


SCHEDULES = [
    {"type": "constant"},
    {"type": "step", "step_size": 1, "gamma": 0.5},
    {"type": "exponential", "gamma": 0.9},
    {"type": "inverse_time", "decay": 0.2},
    {"type": "cyclical", "min_lr": 0.001, "max_lr": 0.1, "step_size": 3},
    {"type": "one_cycle", "max_lr": 0.1},
    {"type": "cosine", "min_lr": 0.001},
    {"type": "warmup_linear", "warmup_steps": 4},
]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=[s["type"] for s in SCHEDULES])
def test_every_schedule_sets_the_lr_of_each_step(schedule: dict[str, Any], fit_synthetic,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from trainlab.engines.torch.optim import MomentumSGD

    stepped_with: list[float] = []  # the lr each optimizer step read, not only the one logged
    step = MomentumSGD.step

    def recording_step(self: MomentumSGD, closure: Any = None) -> Any:
        stepped_with.append(self.param_groups[0]["lr"])
        return step(self, closure)

    monkeypatch.setattr(MomentumSGD, "step", recording_step)
    cfg = config(optimizer={"type": "momentum", "lr": 0.05}, schedule=schedule,
                 train={"epochs": 3, "batch_size": 16, "eval_every": 1})
    _, run_path = fit_synthetic(cfg.model_dump(mode="json"))
    rows, _ = read_metrics_csv(run_path / "metrics.csv")
    s = cfg.schedule
    train_rows = [r for r in rows if r["split"] == "train"]
    assert [r["step"] for r in train_rows] == list(range(1, 19))  # eval_every 1: one row per step
    for row in train_rows:
        expected = lr_at(row["step"] - 1, base_lr=0.05, type=s.type, total_steps=18, steps_per_epoch=6,
                         per=s.per, step_size=s.step_size, gamma=s.gamma, min_lr=s.min_lr, max_lr=s.max_lr,
                         cycles=s.cycles, warmup_steps=s.warmup_steps, pct_start=s.pct_start, decay=s.decay)
        assert row["lr"] == pytest.approx(expected, rel=1e-12)
    assert stepped_with == pytest.approx([r["lr"] for r in train_rows], rel=1e-12)


def test_reduce_on_plateau_lowers_the_lr(fit_synthetic) -> None:
    # lr 1e-9: the weights do not move, so the epoch's mean train loss is a plateau.
    cfg = config(optimizer={"type": "sgd", "lr": 1e-9},
                 train={"epochs": 4, "batch_size": 16,
                        "reduce_on_plateau": {"monitor": "train_loss", "patience": 0, "factor": 0.5}})
    _, run_path = fit_synthetic(cfg.model_dump(mode="json"))
    lrs = [r["lr"] for r in read_metrics_csv(run_path / "metrics.csv")[0] if r["split"] == "train"]
    assert lrs == pytest.approx([1e-9, 1e-9, 5e-10, 2.5e-10])


def test_early_stopping_stops_and_restores_best(fit_synthetic) -> None:
    cfg = config(optimizer={"type": "sgd", "lr": 0.1},
                 train={"epochs": 20, "batch_size": 16,
                        "early_stopping": {"monitor": "val_accuracy", "patience": 0, "min_delta": 1.0}})
    summary, run_path = fit_synthetic(cfg.model_dump(mode="json"), run_id="restored")
    assert summary["steps"] == 12  # the first evaluation sets the best, the second stops
    val = {r["step"]: r["loss"] for r in read_metrics_csv(run_path / "metrics.csv")[0] if r["split"] == "val"}
    assert list(val) == [6, 12] and val[6] != val[12]
    # The summary evaluates after on_train_end: restored, its val loss is the best (first) row's.
    assert summary["final_val_loss"] == pytest.approx(val[6], rel=1e-6)
    dump = cfg.model_dump(mode="json")
    dump["train"]["early_stopping"]["restore_best"] = False
    kept, _ = fit_synthetic(dump, run_id="kept")
    assert kept["steps"] == 12
    assert kept["final_val_loss"] == pytest.approx(val[12], rel=1e-6)  # the last weights stay


def tiny_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_l1_l2_penalties_follow_keras() -> None:
    net = tiny_net()
    weights = penalized_params(net)
    assert [w.shape for w in weights] == [(4, 3), (2, 4)]  # kernels only: no biases, no BN
    reg = config(regularization={"l1": 1e-3, "l2": 1e-2}).regularization
    value = penalty(weights, reg)
    squares = sum(float((w.detach() ** 2).sum()) for w in weights)
    absolutes = sum(float(w.detach().abs().sum()) for w in weights)
    assert float(value.detach()) == pytest.approx(1e-2 * squares + 1e-3 * absolutes, rel=1e-6)
    value.backward()
    for w in weights:
        expected = 2 * 1e-2 * w.detach() + 1e-3 * torch.sign(w.detach())
        torch.testing.assert_close(w.grad, expected)
    all_params = penalized_params(net, "all")
    assert len(all_params) == len(list(net.parameters()))
    assert penalty(weights, config().regularization) is None


def test_l2_changes_the_training_loss_by_the_penalty(fit_synthetic) -> None:
    """The first step's logged train loss with L2 minus without is l2 * sum W^2 at init."""
    base = {"optimizer": {"type": "sgd", "lr": 1e-9}, "train": {"steps": 1, "batch_size": 16}}
    plain, _ = fit_synthetic(config(**base).model_dump(mode="json"), run_id="plain")
    with_l2, path = fit_synthetic(config(**base, regularization={"l2": 0.5}).model_dump(mode="json"),
                                  run_id="l2")
    rows = read_metrics_csv(path / "metrics.csv")[0]
    plain_rows = read_metrics_csv(path.parent / "plain" / "metrics.csv")[0]
    state = torch.load(path / "checkpoint.pt", weights_only=True)["model"]
    squares = sum(float((state[k].double() ** 2).sum()) for k in ("1.weight", "3.weight"))
    assert rows[0]["loss"] - plain_rows[0]["loss"] == pytest.approx(0.5 * squares, rel=1e-5)
    assert with_l2["test_loss"] == pytest.approx(plain["test_loss"], rel=1e-5)  # data loss only


def test_in_eval_loss_adds_the_penalty_to_the_evaluated_losses(fit_synthetic) -> None:
    """``regularization.in_eval_loss`` (Keras' val_loss): the val row, the final val and test
    losses gain l2 * sum W^2 of the weights; the training itself is the same."""
    base = {"optimizer": {"type": "sgd", "lr": 1e-9},
            "train": {"steps": 2, "batch_size": 16, "eval_every": 1, "eval_on_test": True}}
    data_only, plain_path = fit_synthetic(
        config(**base, regularization={"l2": 0.5}).model_dump(mode="json"), run_id="plain")
    with_penalty, path = fit_synthetic(
        config(**base, regularization={"l2": 0.5, "in_eval_loss": True}).model_dump(mode="json"), run_id="keras")
    state = torch.load(path / "checkpoint.pt", weights_only=True)["model"]
    extra = 0.5 * sum(float((state[k].double() ** 2).sum()) for k in ("1.weight", "3.weight"))
    for key in ("final_val_loss", "test_loss"):
        assert with_penalty[key] - data_only[key] == pytest.approx(extra, rel=1e-4)
    rows = read_metrics_csv(path / "metrics.csv")[0]
    plain_rows = read_metrics_csv(plain_path / "metrics.csv")[0]
    for row, plain_row in zip(rows, plain_rows, strict=True):
        gained = row["loss"] - plain_row["loss"]
        assert gained == (pytest.approx(extra, rel=1e-3) if row["split"] in ("val", "test") else 0.0)


def test_decoupled_weight_decay_vs_coupled() -> None:
    """With a zero gradient, AdamW shrinks p by lr * wd * p; Adam's coupled decay moves p by ~lr."""
    for type_, expected in (("adamw", 1.0 - 0.1 * 0.5), ("adam", 1.0 - 0.1)):
        p = nn.Parameter(torch.ones(1))
        opt = build_optimizer([p], config(optimizer={"type": type_, "lr": 0.1, "weight_decay": 0.5}).optimizer)
        p.grad = torch.zeros(1)
        opt.step()
        assert float(p.detach()) == pytest.approx(expected, rel=1e-6)


def test_clipping_by_value_then_norm() -> None:
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(1))
    a.grad, b.grad = torch.tensor([3.0, -0.5]), torch.tensor([-4.0])
    clip_gradients([a, b], 1.0, None)
    assert a.grad.tolist() == [1.0, -0.5] and b.grad.tolist() == [-1.0]
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([4.0])
    norm = clip_gradients([a, b], None, 1.0)
    assert float(norm) == pytest.approx(5.0)
    assert float(torch.cat([a.grad, b.grad]).norm()) == pytest.approx(1.0, rel=1e-5)


def test_rmsprop_takes_a_momentum() -> None:
    params = list(nn.Linear(3, 2).parameters())
    assert build_optimizer(params, config(optimizer={"type": "rmsprop"}).optimizer).param_groups[0]["momentum"] == 0.0
    opt = build_optimizer(params, config(optimizer={"type": "rmsprop", "momentum": 0.9}).optimizer)
    assert isinstance(opt, torch.optim.RMSprop) and opt.param_groups[0]["momentum"] == 0.9


# -- regularization.shrink: W = W - lr * dW - shrink * W, before each step ----------------------
def test_shrink_takes_shrink_times_w_off_at_each_step_whatever_the_lr() -> None:
    net = tiny_net()
    reg = config(regularization={"shrink": 0.01}).regularization
    opt = build_optimizer(net.parameters(), config(optimizer={"type": "sgd", "lr": 0.1}).optimizer)
    shrink_before_step(opt, penalized_params(net, reg.apply_to), reg.shrink)
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    grads = {k: torch.randn_like(v) for k, v in before.items()}
    for name, p in net.named_parameters():
        p.grad = grads[name].clone()
    opt.step()
    for name, p in net.named_parameters():
        shrunk = 0.01 * before[name] if name.endswith("weight") and name != "1.weight" else 0.0  # 1: batch norm
        torch.testing.assert_close(p.detach(), before[name] - 0.1 * grads[name] - shrunk)


def test_shrink_skips_a_step_the_gradient_scaler_skips() -> None:
    p = nn.Parameter(torch.ones(2))
    opt = build_optimizer([p], config(optimizer={"type": "sgd", "lr": 0.1}).optimizer)
    shrink_before_step(opt, [p], 0.5)
    scaler = torch.amp.GradScaler("cpu", init_scale=1.0)
    scaler.scale((p * torch.tensor([float("inf"), 1.0])).sum()).backward()  # an overflowing step
    scaler.step(opt)
    scaler.update()
    assert p.detach().tolist() == [1.0, 1.0]  # neither updated nor shrunk
    p.grad = None
    scaler.scale(p.sum()).backward()
    scaler.step(opt)
    assert p.detach().tolist() == pytest.approx([1.0 - 0.1 * 1.0 - 0.5 * 1.0] * 2)  # W - lr * g - shrink * W


def test_shrink_reaches_both_parts_of_a_muon_chain() -> None:
    def step(shrink: float) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
        opt = build_optimizer(net.parameters(), config(optimizer={"type": "muon", "lr": 0.02}).optimizer,
                              output_weight=net[2].weight)
        shrink_before_step(opt, penalized_params(net), shrink)
        net(torch.randn(8, 6)).square().sum().backward()
        opt.step()
        return {k: v.detach().clone() for k, v in net.named_parameters()}

    torch.manual_seed(0)
    start = {k: v.detach().clone() for k, v in nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).named_parameters()}
    plain, shrunk = step(0.0), step(0.1)
    # Muon's update does not read W: the shrink is exactly 0.1 W. AdamW (the output layer)
    # then decays the shrunk W by lr * wd as it would the plain one.
    torch.testing.assert_close(plain["0.weight"] - shrunk["0.weight"], 0.1 * start["0.weight"])
    wd_factor = 1 - 0.001 * 0.01  # optimizer.other's defaults: adamw, lr 1e-3, weight_decay 0.01
    torch.testing.assert_close(plain["2.weight"] - shrunk["2.weight"], 0.1 * wd_factor * start["2.weight"])
    torch.testing.assert_close(plain["0.bias"], shrunk["0.bias"])


def test_squared_loss_without_the_half() -> None:
    logits = torch.tensor([[0.5, -1.0, 2.0], [0.0, 1.0, 0.0]], requires_grad=True)
    y = torch.tensor([2, 0])
    onehot = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    halved = config(loss={"type": "squared"})
    full = config(loss={"type": "squared", "half": False})
    sums = ((logits.detach() - onehot) ** 2).sum(1)  # (B,)
    assert float(data_loss(halved, logits, y, None).detach()) == pytest.approx(0.5 * float(sums.mean()))
    value = data_loss(full, logits, y, None)
    assert float(value.detach()) == pytest.approx(float(sums.mean()))
    value.backward()
    batch = len(y)
    torch.testing.assert_close(logits.grad, 2 * (logits.detach() - onehot) / batch)


def test_bias_lr_scale_groups_and_the_muon_ratio_follow_the_schedule() -> None:
    """``bias_lr_scale`` puts the 1-D parameters in a group at lr x scale with weight decay / scale
    (the same decay per step); muon's ``other`` optimizer runs at its lr / muon's lr of whatever
    the schedule writes; set_lr keeps both factors."""
    from trainlab.config.optim import OptimizerConfig
    from trainlab.engines.torch.optim import set_lr

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 2 * 2, 3))
    single = build_optimizer(net.parameters(), OptimizerConfig(type="nesterov", lr=0.1, momentum=0.9,
                                                               weight_decay=5e-4, bias_lr_scale=64))
    weights, vectors = single.param_groups
    assert {p.ndim for p in weights["params"]} == {2, 4} and {p.ndim for p in vectors["params"]} == {1}
    assert vectors["lr"] == pytest.approx(6.4) and vectors["weight_decay"] == pytest.approx(5e-4 / 64)
    assert weights["weight_decay"] == pytest.approx(5e-4)
    set_lr(single, 0.2)
    assert [g["lr"] for g in single.param_groups] == pytest.approx([0.2, 12.8])

    head = net[3].weight
    muon = build_optimizer(net.parameters(), OptimizerConfig(
        type="muon", lr=0.08, momentum=0.6,
        other=OptimizerConfig(type="nesterov", lr=0.004, momentum=0.85, bias_lr_scale=50)), output_weight=head)
    set_lr(muon, 0.04)  # the schedule halved muon's lr: the other optimizer's halves with it
    groups = muon.param_groups
    hidden = [g for g in groups if any(p is net[0].weight for p in g["params"])]
    assert len(hidden) == 1 and hidden[0]["lr"] == pytest.approx(0.04)
    assert not any(p is head for p in hidden[0]["params"])  # the output layer is not Muon's
    head_group = next(g for g in groups if any(p is head for p in g["params"]))
    bias_group = next(g for g in groups if any(p is net[1].weight for p in g["params"]))
    assert head_group["lr"] == pytest.approx(0.002)
    assert bias_group["lr"] == pytest.approx(0.002 * 50)
