"""The torch engine end to end: a real MNIST run, NaN handling, safe checkpoints, exact resume."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from torch import nn
from torch.utils.hooks import RemovableHandle

import trainlab.api as tl
from tests.helpers import timeless
from trainlab.callbacks import CallbackList, TrainState
from trainlab.config import RunConfig
from trainlab.engines.base import FitContext
from trainlab.engines.torch import TorchEngine
from trainlab.engines.torch import engine as engine_module
from trainlab.engines.torch.engine import RECORDS_HELD, TorchTraining
from trainlab.engines.torch.runtime import TrainOptions
from trainlab.engines.torch.tta import tta_logits
from trainlab.errors import ConfigError, RunDirError, TrainingError
from trainlab.run_files import RunDir, read_metrics_csv


def test_mnist_mlp_one_epoch_learns(real_data: Path, tmp_path: Path) -> None:
    cfg = RunConfig.from_dict({
        "engine": "torch", "seed": 0,
        "data": {"dataset": "mnist", "limit": 10000},
        "model": {"type": "mlp", "hidden": [256]},
        "optimizer": {"type": "adam", "lr": 1e-3},
        "train": {"epochs": 1, "batch_size": 64},
        "output": {"dir": str(tmp_path / "runs")},
    })
    run = tl.run(cfg, run_id="mnist", data_dir=real_data, progress=False, echo=False)
    assert run.summary["status"] == "completed"
    assert run.summary["test_accuracy"] >= 0.9
    assert run.summary["params"] == 784 * 256 + 256 + 2570
    with np.load(run.path / "predictions.npz") as saved:
        assert saved["probabilities"].shape == (10000, 10)
        np.testing.assert_allclose(saved["probabilities"].sum(1), 1.0, rtol=1e-5)
        accuracy = (saved["probabilities"].argmax(1) == saved["labels"]).mean()
        assert accuracy == pytest.approx(run.summary["test_accuracy"])
    assert "Total params: 203,530" in (run.path / "model_summary.txt").read_text()
    train_rows = [r for r in run.metrics if r["split"] == "train"]
    assert {"weight_norm_0", "grad_norm_0", "dead_relu_0", "logit_norm"} <= set(train_rows[-1])
    assert torch.load(run.path / "checkpoint.pt", weights_only=True)["model"]["1.weight"].shape == (256, 784)


def _hook_train_steps(monkeypatch: pytest.MonkeyPatch,
                      install: Callable[[TorchTraining], list[RemovableHandle]]) -> None:
    """Hooks on the model for the length of each training step only: the monitors' and the
    evaluations' passes (train mode too, for the monitors) stay out of what they record."""
    train_step = TorchTraining.train_step

    def hooked(self: TorchTraining, index: torch.Tensor, lr: float) -> torch.Tensor:
        handles = install(self)
        try:
            return train_step(self, index, lr)
        finally:
            for handle in handles:
                handle.remove()

    monkeypatch.setattr(TorchTraining, "train_step", hooked)


def test_small_resnet_trains_channels_last(
        fit_synthetic, base_config, synthetic_data, monkeypatch: pytest.MonkeyPatch) -> None:
    """A conv model gets its training batches channels_last (NHWC) and its training loss falls
    on them (12 augmented steps leave its test accuracy at chance: this checks the layout)."""
    channels_last: list[bool] = []

    def install(training: TorchTraining) -> list[RemovableHandle]:
        def record(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            channels_last.append(inputs[0].is_contiguous(memory_format=torch.channels_last))
        return [training.model.register_forward_pre_hook(record)]

    _hook_train_steps(monkeypatch, install)
    # Adam at 1e-2 and two epochs: the default 1e-3 leaves this loss at chance after a dozen steps
    cfg = base_config(model={"type": "fast_cifar", "width": 4}, optimizer={"type": "adam", "lr": 1e-2},
                      train={"epochs": 2, "batch_size": 16, "eval_every": 4},
                      augment={"hflip": True, "crop_padding": 1, "cutout": 2})
    summary, run_path = fit_synthetic(cfg, data=synthetic_data(shape=(3, 8, 8)))
    assert summary["steps"] == 12 and summary["test_accuracy"] is not None
    # 3 channels of 8 x 8: a plain (NCHW) contiguous batch is not channels_last contiguous
    assert channels_last == [True] * 12
    rows, _ = read_metrics_csv(run_path / "metrics.csv")
    losses = [r["loss"] for r in rows if r["split"] == "train"]
    assert len(losses) == 3 and losses[-1] < losses[0], losses


def test_bf16_autocast_and_tta_on_cpu(
        fit_synthetic, base_config, synthetic_data, monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 reaches the training steps' layers, not just the summary; ``tta=True`` gives the
    final val and test evaluations the image and its mirror, and the predictions are theirs."""
    dtypes: list[torch.dtype] = []

    def install(training: TorchTraining) -> list[RemovableHandle]:
        first = next(m for m in training.model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
        return [first.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))]

    _hook_train_steps(monkeypatch, install)
    viewed: list[tuple[str, torch.Tensor, list[torch.Tensor], torch.Tensor]] = []  # mode, batch, views, logits

    def spied(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, mode: bool | str,
              below: float | None = None, **kwargs: Any) -> torch.Tensor:
        views: list[torch.Tensor] = []

        def seen(v: torch.Tensor) -> torch.Tensor:
            views.append(v.clone())
            return forward(v)

        logits = tta_logits(seen, x, mode, below, **kwargs)
        viewed.append((str(mode), x.clone(), views, logits))
        return logits

    monkeypatch.setattr(engine_module, "tta_logits", spied)
    cfg = base_config(model={"type": "cnn", "conv": [{"filters": 4}]}, train={"epochs": 2, "batch_size": 16})
    data = synthetic_data(shape=(3, 8, 8))
    summary, run_path = fit_synthetic(cfg, data=data, options=TrainOptions(precision="bf16", tta=True))
    assert summary["precision"] == "bf16" and summary["tta"] is True
    assert summary["test_accuracy"] is not None and np.isfinite(summary["test_loss"])
    assert len(dtypes) == summary["steps"] == 12 and set(dtypes) == {torch.bfloat16}
    # Only the final val and test evaluations take the views (24 images each, one chunk).
    assert [(mode, len(x)) for mode, x, _, _ in viewed] == [("flip", 24), ("flip", 24)]
    for _, x, views, _ in viewed:
        assert len(views) == 2 and torch.equal(views[0], x) and torch.equal(views[1], x.flip(3))
    with np.load(run_path / "predictions.npz") as saved:  # the test split's: the last evaluation's logits
        assert saved["probabilities"].shape == (24, 3)
        np.testing.assert_allclose(saved["probabilities"], torch.softmax(viewed[-1][3], 1).numpy(), rtol=1e-5)


def test_initial_predictions_take_the_plain_view_only(
        fit_synthetic, base_config, synthetic_data, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``train.tta`` the predictions before training (the initial confusion matrix) are of
    the plain view, not worth a pass per view; the final ones average in the views."""
    asked: list[bool | str] = []
    logits_of = TorchTraining.logits_of

    def recorded(self: TorchTraining, x: torch.Tensor, tta: bool | str = False) -> torch.Tensor:
        asked.append(tta)
        return logits_of(self, x, tta)

    monkeypatch.setattr(TorchTraining, "logits_of", recorded)
    cfg = base_config(model={"type": "cnn", "conv": [{"filters": 4}]},
                      train={"epochs": 1, "batch_size": 16, "tta": "flip_translate", "final_train_eval": False})
    _, run_path = fit_synthetic(cfg, data=synthetic_data(shape=(3, 8, 8)))
    # the test split before training: plain; the epoch's val: plain; the final val and test: the views
    assert asked == [False, False, "flip_translate", "flip_translate"]
    with np.load(run_path / "predictions_initial.npz") as before, np.load(run_path / "predictions.npz") as after:
        assert before["probabilities"].shape == after["probabilities"].shape == (24, 3)


def test_final_train_eval_off_skips_the_train_pass_and_changes_nothing_else(
        fit_synthetic, base_config, monkeypatch: pytest.MonkeyPatch) -> None:
    """``train.final_train_eval: false`` (the fast recipes): no final pass over the training
    split, no final_train_* in the summary, every other figure the same."""
    splits: list[tuple[str, bool]] = []
    evaluate = TorchTraining.evaluate_split

    def recorded(self: TorchTraining, split: str, final: bool = False) -> tuple[float, float]:
        splits.append((split, final))
        return evaluate(self, split, final)

    monkeypatch.setattr(TorchTraining, "evaluate_split", recorded)
    on, _ = fit_synthetic(base_config(), run_id="on")
    assert ("train", True) in splits and on["final_train_loss"] is not None
    splits.clear()
    off, _ = fit_synthetic(base_config(train={"epochs": 2, "batch_size": 16, "final_train_eval": False}),
                           run_id="off")
    assert ("train", True) not in splits and ("test", True) in splits
    assert not any(key.startswith("final_train") for key in off)
    kept = {k: v for k, v in on.items() if not k.startswith("final_train") and "second" not in k}
    assert {k: v for k, v in off.items() if "second" not in k} == kept


def test_final_test_eval_off_never_touches_the_test_split(
        fit_synthetic, base_config, monkeypatch: pytest.MonkeyPatch) -> None:
    """``train.final_test_eval: false`` (the tuning runs): the test split is neither measured
    nor predicted, before or after training; the predictions are the validation split's, and
    training itself is the same as with the test split measured."""
    splits: list[str] = []
    evaluate, probabilities = TorchTraining.evaluate_split, TorchTraining.probabilities

    def recorded_evaluate(self: TorchTraining, split: str, final: bool = False) -> tuple[float, float]:
        splits.append(split)
        return evaluate(self, split, final)

    def recorded_probabilities(self: TorchTraining, split: str, views: bool = True) -> np.ndarray:
        splits.append(split)
        return probabilities(self, split, views)

    monkeypatch.setattr(TorchTraining, "evaluate_split", recorded_evaluate)
    monkeypatch.setattr(TorchTraining, "probabilities", recorded_probabilities)
    on, _ = fit_synthetic(base_config(), run_id="on")
    assert "test" in splits and on["test_accuracy"] is not None
    splits.clear()
    off, run_path = fit_synthetic(base_config(train={"epochs": 2, "batch_size": 16, "final_test_eval": False}),
                                  run_id="off")
    assert "test" not in splits and "val" in splits
    assert off["test_accuracy"] is None and off["test_loss"] is None
    assert off["final_val_accuracy"] == on["final_val_accuracy"]
    with np.load(run_path / "predictions.npz") as saved:
        assert str(saved["split"]) == "val" and saved["probabilities"].shape == (24, 3)


def test_final_test_eval_off_conflicts_with_eval_on_test(base_config) -> None:
    with pytest.raises(ConfigError, match="final_test_eval"):
        RunConfig.from_dict(base_config(train={"final_test_eval": False, "eval_on_test": True}))


def test_fp16_off_a_gpu_is_refused(fit_synthetic, base_config) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        fit_synthetic(base_config(), options=TrainOptions(precision="fp16"))


def test_check_config_refuses_unbuilt_depth(base_config) -> None:
    cfg = RunConfig.from_dict(base_config(model={"type": "resnet", "depth": 50}))
    with pytest.raises(ConfigError, match="depth"):
        TorchEngine().check_config(cfg)


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(fit_synthetic, base_config) -> None:
    cfg = base_config(optimizer={"type": "sgd", "lr": 1e30}, loss={"type": "squared"},
                      train={"steps": 30, "batch_size": 16, "eval_every": 1})
    with pytest.raises(TrainingError, match=r"at step (\d+)") as caught:
        fit_synthetic(cfg)
    found = re.search(r"at step (\d+).*kept in (\S+)\. ", str(caught.value))
    assert found is not None
    bad_step, run_path = int(found.group(1)), Path(found.group(2))
    saved = torch.load(run_path / "checkpoint.pt", weights_only=True)
    assert json.loads(saved["meta"])["step"] < bad_step
    assert all(torch.isfinite(v).all() for v in saved["model"].values())


def test_nan_step_is_named_exactly_between_evaluations(fit_synthetic, base_config) -> None:
    """The first non-finite loss is found by its step even when evaluations are far apart."""
    named = []
    for eval_every in (1, 25):
        cfg = base_config(optimizer={"type": "sgd", "lr": 1e30}, loss={"type": "squared"},
                          train={"steps": 30, "batch_size": 16, "eval_every": eval_every})
        with pytest.raises(TrainingError, match=r"at step (\d+)") as caught:
            fit_synthetic(cfg)
        named.append(int(re.search(r"at step (\d+)", str(caught.value)).group(1)))  # type: ignore[union-attr]
    assert named[0] == named[1] > 1


def test_held_step_records_fill_the_buffers_as_each_step_would(base_config, synthetic_data, tmp_path: Path) -> None:
    """Steps hold their records and write them in batches (RECORDS_HELD at a time, and at
    every read): the buffers get each step's own loss and count of correct predictions,
    past the buffers' size and with batches of other sizes among them."""
    config = RunConfig.from_dict(base_config(train={"steps": 100, "batch_size": 16, "eval_every": 4}))
    context = FitContext(run_dir=RunDir(tmp_path / "run"), callbacks=CallbackList([]), state=TrainState(),
                         progress=False, log=lambda _m: None)
    training = TorchTraining(config, synthetic_data(), context)
    seen: list[torch.Tensor] = []  # each step's logits
    model = training.forward

    def forward(x: torch.Tensor) -> torch.Tensor:
        seen.append(model(x))
        return seen[-1]

    training.forward = forward  # type: ignore[assignment]
    sizes = [16] * 25 + [7, 16, 9] + [16] * 17  # 45 steps: two full holds, then a read
    expected_losses, expected_correct = [], []
    for step, size in enumerate(sizes):
        index = torch.randperm(96, generator=torch.Generator().manual_seed(step))[:size]
        expected_losses.append(float(training.train_step(index, 0.1)))
        expected_correct.append(int((seen[-1].argmax(1) == training.y_train[index]).sum()))
    assert len(training.held) == len(sizes) - 2 * RECORDS_HELD
    training.check_finite()
    assert not training.held and training.interval_steps == len(sizes)
    assert training.step_losses[: len(sizes)].tolist() == expected_losses
    assert training.step_correct[: len(sizes)].tolist() == expected_correct
    assert training.progress_figures()["running acc"] == sum(expected_correct) / sum(sizes)


class _Evil:
    """A pickle that would run a shell command when loaded without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_tampered_checkpoint_is_refused(fit_synthetic, base_config, tmp_path: Path) -> None:
    _, run_path = fit_synthetic(base_config(train={"epochs": 1, "batch_size": 16}))
    marker = tmp_path / "pwned"
    payload = torch.load(run_path / "checkpoint.pt", weights_only=True)
    payload["extra"] = _Evil(marker)
    torch.save(payload, run_path / "checkpoint.pt")
    with pytest.raises(RunDirError, match="refused to load"):
        fit_synthetic(base_config(train={"epochs": 1, "batch_size": 16}), resume=True)
    assert not marker.exists()


# -- exact resume after kill -9 ---------------------------------------------------------------
RESUME_CONFIG = {
    "engine": "torch", "seed": 3,
    "data": {"dataset": "mnist", "limit": {"train": 2000, "val": 300, "test": 300}},
    "model": {"type": "cnn", "conv": [{"filters": 6, "dropout": 0.1}, {"filters": 12}],
              "fc": [32], "fc_dropout": 0.3},
    "optimizer": {"type": "adam", "lr": 0.002},
    "augment": {"hflip": True, "crop_padding": 2, "mixup": 0.2},
    "train": {"epochs": 8, "batch_size": 32, "eval_every": 25,
              "early_stopping": {"monitor": "val_loss", "patience": 100}},
}


def _cli(*args: str, cwd: Path) -> list[str]:
    return [sys.executable, "-m", "trainlab.cli", "run", *args, "--no-progress"]


def _env(real_data: Path) -> dict[str, str]:
    return {**os.environ, "TRAINLAB_DATA": str(real_data), "TRAINLAB_NUM_THREADS": "1"}


def test_exact_resume_after_sigkill(real_data: Path, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**RESUME_CONFIG, "output": {"dir": str(tmp_path / "runs")}}))
    env, runs = _env(real_data), tmp_path / "runs" / "run"
    subprocess.run(_cli(str(config), "--run-id", "whole", cwd=tmp_path), env=env, check=True,
                   capture_output=True, cwd=tmp_path)

    killed = subprocess.Popen(_cli(str(config), "--run-id", "killed", cwd=tmp_path), env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = runs / "killed" / "metrics.csv"
    deadline = time.monotonic() + 120
    try:
        # Kill once the second checkpoint is on disk: mid-epoch (62 steps per epoch) and mid-run.
        while time.monotonic() < deadline and killed.poll() is None:
            if (runs / "killed" / "checkpoint.pt").exists() and metrics.exists() and ",50,train," in metrics.read_text():
                break
            time.sleep(0.01)
        assert killed.poll() is None, "the run ended before it could be killed"
        killed.send_signal(signal.SIGKILL)
    finally:
        killed.wait()
    assert not (runs / "killed" / "summary.json").exists()

    subprocess.run(_cli("--resume", str(runs / "killed"), cwd=tmp_path), env=env, check=True,
                   capture_output=True, cwd=tmp_path)
    killed_rows, killed_columns = read_metrics_csv(runs / "killed" / "metrics.csv")
    whole_rows, whole_columns = read_metrics_csv(runs / "whole" / "metrics.csv")
    assert killed_columns == whole_columns and timeless(killed_rows) == timeless(whole_rows)
    whole = torch.load(runs / "whole" / "checkpoint.pt", weights_only=True)
    resumed = torch.load(runs / "killed" / "checkpoint.pt", weights_only=True)
    for key, value in whole["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    with np.load(runs / "whole" / "predictions.npz") as a, np.load(runs / "killed" / "predictions.npz") as b:
        np.testing.assert_array_equal(a["probabilities"], b["probabilities"])
