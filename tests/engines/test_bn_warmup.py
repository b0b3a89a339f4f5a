"""The BatchNorm warm-up warning: a run too short for the running statistics, which evaluation
normalises with, to forget their starting values (seed C's 4,000-image studies sat at chance)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

import trainlab.api as tl
from tests.data.synthdata import write_idx
from tests.helpers import write_config
from trainlab.config import RunConfig
from trainlab.diagnostics import log_warnings
from trainlab.engines.run_length import BN_STALE_SHARE, batch_norm_warmup_warning, has_batch_norm


def config(model: dict[str, Any], **train: Any) -> RunConfig:
    return RunConfig.from_dict({"name": "t", "engine": "torch", "data": {"dataset": "cifar10"},
                                "model": model, "train": train})


KERAS_CNN = {"type": "cnn", "conv": [{"filters": [8]}], "batch_norm": True, "bn_momentum": 0.01}


def test_the_share_left_and_the_steps_it_takes() -> None:
    # 4,000 images at batch 256 for 3 epochs: 15 steps an epoch, 45 in all; 0.99 ** 45 = 0.636
    line = batch_norm_warmup_warning(config(KERAS_CNN, batch_size=256, epochs=3), 4000)
    assert line is not None
    assert "64 % of their starting values after this run's 45 training steps" in line
    # the first whole step count with 0.99 ** s <= 0.05: 0.99 ** 298 = 0.0502, 0.99 ** 299 = 0.0497
    assert 0.99**298 > BN_STALE_SHARE >= 0.99**299
    assert "Train at least 299 steps" in line
    # the full 40,000 images: 156 steps an epoch, 468 in all, 0.99 ** 468 < 0.01
    assert batch_norm_warmup_warning(config(KERAS_CNN, batch_size=256, epochs=3), 40_000) is None


@pytest.mark.parametrize(("steps", "warns"), [(28, True), (29, False)])
def test_the_boundary_at_pytorchs_default_momentum(steps: int, warns: bool) -> None:
    # bn_momentum 0.1: 0.9 ** 28 = 0.0523 is over 5 %, 0.9 ** 29 = 0.0471 under
    assert (0.9**steps > BN_STALE_SHARE) is warns
    line = batch_norm_warmup_warning(config({"type": "resnet", "depth": 18}, batch_size=10, steps=steps), 100)
    assert (line is not None) is warns


def test_which_models_have_batch_norm() -> None:
    assert has_batch_norm(config({"type": "resnet"}).model)  # always, whatever batch_norm says
    assert has_batch_norm(config({"type": "fast_cifar"}).model)
    assert has_batch_norm(config({"type": "mlp", "hidden": [8], "batch_norm": True}).model)
    assert not has_batch_norm(config({"type": "mlp", "hidden": [8]}).model)
    assert has_batch_norm(config({"type": "cnn", "conv": [{"filters": [8]}], "fc": [8],
                                  "fc_batch_norm": True}).model)  # in the dense layers only
    assert not has_batch_norm(config({"type": "cnn", "conv": [{"filters": [8]}]}).model)
    # the flags without the layers they apply to build no BatchNorm
    assert not has_batch_norm(config({"type": "cnn", "conv": [{"filters": [8]}], "fc_batch_norm": True}).model)
    assert not has_batch_norm(config({"type": "linear"}).model)
    no_bn = config({"type": "mlp", "hidden": [8]}, batch_size=10, steps=1)
    assert batch_norm_warmup_warning(no_bn, 100) is None  # one step, but nothing to warm up
    keep_nothing = config({**KERAS_CNN, "bn_momentum": 1.0}, batch_size=10, steps=1)
    assert batch_norm_warmup_warning(keep_nothing, 100) is None  # momentum 1: the last batch's statistics


def test_a_run_logs_it_once_and_its_report_lists_it(tmp_path: Path) -> None:
    dataset = write_idx(tmp_path / "mnist", n_train=200, n_test=40)
    model = {"type": "mlp", "hidden": [8], "batch_norm": True, "bn_momentum": 0.01}
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "runs", engine="numpy",
                       data={"dataset": str(dataset), "normalize": "scale", "val_fraction": 0.1},
                       model=model, train={"epochs": 2, "batch_size": 20})
    run = tl.run(cfg, run_id="short", progress=False, echo=False)
    log = (run.path / "run.log").read_text()
    # 180 training images at batch 20: 9 steps an epoch, 18 in all; 0.99 ** 18 = 0.8345
    assert math.isclose(0.99**18, 0.8345, abs_tol=5e-5)
    assert log.count("83 % of their starting values after this run's 18 training steps") == 1
    assert any("BatchNorm's running statistics" in w for w in log_warnings(log))
    resumed = tl.run(resume=run.path, epochs=3, progress=False, echo=False)  # said once per run
    assert (resumed.path / "run.log").read_text().count("BatchNorm's running statistics") == 1
