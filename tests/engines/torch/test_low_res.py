"""``augment.low_res``: the first epochs train on smaller images (crop or resize), then full size.

Shapes per epoch in a real training run, the values of both modes against the full-size
augmented batch, determinism, an exact resume across the epoch where the size changes, and
every refusal with its message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import trainlab.engines.torch.engine as engine_module
from tests.helpers import CrashAtEvaluation, fit_torch, timeless
from trainlab.config import AugmentConfig, RunConfig
from trainlab.engines.torch import TorchEngine
from trainlab.engines.torch.augment import BatchAugment, check_low_res, random_window
from trainlab.engines.torch.models import build_model
from trainlab.engines.torch.pixels import PixelSpace, unpack_images
from trainlab.errors import ConfigError
from trainlab.run_files import read_metrics_csv

NORMALIZER = {"kind": "channel", "mean": [125.0, 122.0, 113.0], "std": [62.0, 61.0, 66.0]}
SIDE, SMALL = 8, 6  # the synthetic images' side and the low resolution
STEPS_PER_EPOCH = 6  # 96 training examples, batch 16
CNN = {"type": "cnn", "conv": [{"filters": [4, 4], "pool_position": "after_first_conv"}],
       "whiten": {"kernel": 2, "images": 32}, "batch_norm": True, "global_pool": "max", "activation": "gelu"}


def low_res_config(base_config: Callable[..., dict[str, Any]], mode: str = "crop", epochs: int = 4,
                   low_epochs: int = 2, **train: Any) -> dict[str, Any]:
    return base_config(
        model=CNN,
        optimizer={"type": "nesterov", "lr": 0.02, "momentum": 0.9},
        augment={"hflip": "alternating", "crop_padding": 1, "crop_padding_mode": "reflect",
                 "low_res": {"size": SMALL, "epochs": low_epochs, "mode": mode}},
        train={"epochs": epochs, "batch_size": 16, **train},
    )


@pytest.fixture
def input_shapes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[bool, tuple[int, ...]]]]:
    """(training mode, input shape) of every forward of the models the torch engine builds."""
    seen: list[tuple[bool, tuple[int, ...]]] = []
    real = engine_module.build_model

    def build_and_hook(*args: Any, **kwargs: Any) -> nn.Module:
        model = real(*args, **kwargs)
        model.register_forward_pre_hook(lambda module, inputs: seen.append((module.training, tuple(inputs[0].shape))))
        return model

    monkeypatch.setattr(engine_module, "build_model", build_and_hook)
    yield seen


def augmenter(**fields: Any) -> BatchAugment:
    return BatchAugment(AugmentConfig(**fields), 10, PixelSpace(NORMALIZER, 3), "cpu", seed=3)


def images(n: int = 12, side: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, side, side, generator=g), torch.randint(0, 10, (n,), generator=g)


# -- in a real training run ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["crop", "resize"])
def test_training_batches_are_small_in_the_first_epochs_only(mode: str, base_config, synthetic_data,
                                                             input_shapes, tmp_path: Path) -> None:
    data = synthetic_data(shape=(3, SIDE, SIDE))
    fit_torch(low_res_config(base_config, mode), data, tmp_path, "r")
    # The engine's check: one eval-mode forward of two low-resolution images, before training.
    assert input_shapes[0] == (False, (2, 3, SMALL, SMALL))
    # Training steps are the training-mode forwards of a batch (the layer monitors of each
    # evaluation run one of the first 96 training images, full size, in training mode).
    training = [shape for is_training, shape in input_shapes if is_training and shape[0] == 16]
    assert len(training) == 4 * STEPS_PER_EPOCH
    low = 2 * STEPS_PER_EPOCH
    assert all(shape == (16, 3, SMALL, SMALL) for shape in training[:low]), training[:low]
    assert all(shape == (16, 3, SIDE, SIDE) for shape in training[low:]), training[low:]
    others = [shape for shape in (s for _, s in input_shapes[1:]) if shape[0] != 16]  # evaluations, monitors
    assert others and all(shape[2:] == (SIDE, SIDE) for shape in others)


def test_same_seed_same_metrics_and_low_res_changes_them(base_config, synthetic_data, tmp_path: Path) -> None:
    data = synthetic_data(shape=(3, SIDE, SIDE))
    cfg = low_res_config(base_config)
    first, _ = read_metrics_csv(fit_torch(cfg, data, tmp_path, "a") / "metrics.csv")
    again, _ = read_metrics_csv(fit_torch(cfg, data, tmp_path, "b") / "metrics.csv")
    assert timeless(first) == timeless(again)
    full = {**cfg, "augment": {k: v for k, v in cfg["augment"].items() if k != "low_res"}}
    without, _ = read_metrics_csv(fit_torch(full, data, tmp_path, "c") / "metrics.csv")
    assert timeless(first) != timeless(without)


@pytest.mark.parametrize("mode", ["crop", "resize"])
def test_resume_across_the_size_change_is_exact(mode: str, base_config, synthetic_data, tmp_path: Path) -> None:
    # An evaluation every half epoch, a checkpoint at each: the crash at the 4th evaluation (step
    # 12, the end of the last low-resolution epoch) resumes from step 9, in the middle of it.
    cfg = low_res_config(base_config, mode, eval_every=3, checkpoint_every=1)
    data = synthetic_data(shape=(3, SIDE, SIDE))
    whole = fit_torch(cfg, data, tmp_path, "whole")
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit_torch(cfg, data, tmp_path, "crashed", extra=[CrashAtEvaluation(at=4)])
    resumed = fit_torch(cfg, data, tmp_path, "crashed", resume=True)
    rows_whole, _ = read_metrics_csv(whole / "metrics.csv")
    rows_resumed, _ = read_metrics_csv(resumed / "metrics.csv")
    assert len(rows_whole) > 4 and timeless(rows_resumed) == timeless(rows_whole)
    a = torch.load(whole / "checkpoint.pt", weights_only=True)
    b = torch.load(resumed / "checkpoint.pt", weights_only=True)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


# -- the values of a batch ------------------------------------------------------------------------------
def test_crop_takes_a_window_of_each_augmented_image() -> None:
    x, y = images()
    fields = {"hflip": True, "crop_padding": 2}
    full, _ = augmenter(**fields)(x.clone(), y)
    small, _ = augmenter(**fields, low_res={"size": 6, "epochs": 1})(x.clone(), y, epoch=0)
    assert small.shape == (12, 3, 6, 6)
    offsets = []
    for i in range(len(x)):
        found = [(t, s) for t in range(5) for s in range(5) if torch.equal(small[i], full[i, :, t : t + 6, s : s + 6])]
        assert found, f"image {i} is no window of its augmented image"
        offsets.append(found[0])
    assert len(set(offsets)) > 1  # a window per image, not one for the batch


def test_crop_is_seeded_and_draws_every_offset() -> None:
    grid = torch.arange(7 * 7, dtype=torch.float32).reshape(1, 1, 7, 7)
    x = grid.expand(400, 1, 7, 7)
    windows = random_window(x, torch.Generator().manual_seed(0), 5)
    corners = [(int(v) // 7, int(v) % 7) for v in windows[:, 0, 0, 0]]
    assert set(corners) == {(t, s) for t in range(3) for s in range(3)}
    for window, (t, s) in zip(windows, corners, strict=True):
        assert torch.equal(window, grid[0, :, t : t + 5, s : s + 5])
    assert torch.equal(windows, random_window(x, torch.Generator().manual_seed(0), 5))
    assert not torch.equal(windows, random_window(x, torch.Generator().manual_seed(1), 5))


def test_resize_is_the_interpolated_augmented_image() -> None:
    x, y = images()
    fields = {"hflip": True, "crop_padding": 2}
    full, _ = augmenter(**fields)(x.clone(), y)
    small, _ = augmenter(**fields, low_res={"size": 6, "epochs": 1, "mode": "resize"})(x.clone(), y, epoch=0)
    expected = F.interpolate(full, size=(6, 6), mode="bilinear", align_corners=False, antialias=True)
    assert torch.equal(small, expected)


@pytest.mark.parametrize("mode", ["crop", "resize"])
def test_later_epochs_are_unchanged_and_later_transforms_see_the_small_batch(mode: str) -> None:
    x, y = images()
    low = {"size": 6, "epochs": 2, "mode": mode}
    fields = {"crop_padding": 2}
    full, _ = augmenter(**fields)(x.clone(), y, epoch=2)
    assert torch.equal(augmenter(**fields, low_res=low)(x.clone(), y, epoch=2)[0], full)
    # Cutout (size kept) and mixup come after: soft targets as usual, a small batch.
    mixed, soft = augmenter(**fields, low_res=low, cutout=4, mixup=0.4)(x.clone(), y, epoch=1)
    assert mixed.shape == (12, 3, 6, 6) and soft is not None and soft.shape == (12, 10)


@pytest.mark.parametrize("mode", ["crop", "resize"])
def test_uint8_batches_give_the_same_floats_as_unpacking_first(mode: str) -> None:
    pixels = PixelSpace(NORMALIZER, 3)
    raw = torch.randint(0, 256, (8, 3, 10, 10), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    y = torch.zeros(8, dtype=torch.int64)
    fields = {"hflip": True, "crop_padding": 2, "low_res": {"size": 6, "epochs": 1, "mode": mode}}
    from_bytes, _ = augmenter(**fields)(raw.clone(), y, dtype=torch.float32)
    from_floats, _ = augmenter(**fields)(unpack_images(raw, pixels, torch.float32), y)
    assert from_bytes.shape == (8, 3, 6, 6) and torch.equal(from_bytes, from_floats)


# -- the config and its refusals --------------------------------------------------------------------
def test_config_fields_and_active() -> None:
    cfg = AugmentConfig(low_res={"size": 24, "epochs": 3})
    assert cfg.low_res is not None and cfg.low_res.mode == "crop"
    assert cfg.active() == ["low_res"]
    assert AugmentConfig().low_res is None and AugmentConfig().active() == []


@pytest.mark.parametrize(("low_res", "field"), [({"size": 3, "epochs": 1}, "size"),
                                               ({"size": 8, "epochs": 0}, "epochs"),
                                               ({"size": 8, "epochs": 1, "mode": "zoom"}, "mode"),
                                               ({"epochs": 1}, "size")])
def test_config_refuses_bad_values(low_res: dict[str, Any], field: str, base_config) -> None:
    with pytest.raises(ConfigError, match=f"augment.low_res.{field}"):
        RunConfig.from_dict(base_config(model=CNN, augment={"low_res": low_res}))


def test_numpy_engine_refuses_it(base_config) -> None:
    cfg = base_config(augment={"low_res": {"size": 4, "epochs": 1}})
    cfg["engine"] = "numpy"
    with pytest.raises(ConfigError, match=r"augment\.low_res.*engine 'numpy' does not augment"):
        RunConfig.from_dict(cfg)


@pytest.mark.parametrize(("model", "message"), [
    ({"type": "mlp", "hidden": [16]}, "model type 'mlp' takes only the full-size input"),
    ({"type": "linear"}, "model type 'linear' takes only the full-size input"),
    ({**CNN, "global_pool": "none"}, "a cnn needs model.global_pool: max or avg"),
])
def test_models_with_a_fixed_input_size_are_refused_before_any_data(model: dict[str, Any], message: str,
                                                                    base_config) -> None:
    config = RunConfig.from_dict(base_config(model=model, augment={"low_res": {"size": 4, "epochs": 1}}))
    with pytest.raises(ConfigError, match=message):
        TorchEngine().check_config(config)


@pytest.mark.parametrize("size", [SIDE, SIDE + 2])
def test_a_size_not_below_the_images_is_refused_at_build_time(size: int, base_config, synthetic_data,
                                                              tmp_path: Path) -> None:
    cfg = base_config(model=CNN, augment={"low_res": {"size": size, "epochs": 1}})
    TorchEngine().check_config(RunConfig.from_dict(cfg))  # the image size is not known before the data
    with pytest.raises(ConfigError, match=rf"augment.low_res.size: {size} is not smaller than the 8x8 training "
                                          r"images; use a size below 8"):
        fit_torch(cfg, synthetic_data(shape=(3, SIDE, SIDE)), tmp_path, "r")


def test_a_cnn_that_pools_the_small_image_away_is_refused_at_build_time(base_config, synthetic_data,
                                                                       tmp_path: Path) -> None:
    # 'valid' convs (3x3, then 2x2), each followed by a 2x2 pool: 8 -> 6 -> 3 -> 2 -> 1 at full
    # size, but 6 -> 4 -> 2 -> 1 -> 0 at the low resolution.
    block = {"filters": 4, "padding": "valid", "pool": "max"}
    model = {"type": "cnn", "conv": [block, {**block, "kernel": 2}], "global_pool": "avg"}
    cfg = base_config(model=model, augment={"low_res": {"size": 6, "epochs": 1}})
    with pytest.raises(ConfigError, match=r"augment\.low_res\.size: the model cannot take 6x6 images"):
        fit_torch(cfg, synthetic_data(shape=(3, SIDE, SIDE)), tmp_path, "r")


@pytest.mark.parametrize("model", [{"type": "resnet", "depth": 9, "width": 4},
                                   {"type": "resnet", "depth": 18, "width": 4},
                                   {"type": "fast_cifar", "width": 4}])
def test_resnets_take_the_small_images(model: dict[str, Any], base_config) -> None:
    config = RunConfig.from_dict(base_config(model=model, augment={"low_res": {"size": 12, "epochs": 1}}))
    TorchEngine().check_config(config)
    net = build_model(config.model, (3, 16, 16), 3, seed=0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    check_low_res(config, (3, 16, 16), net)
    assert net.training and all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
