"""The ``feature`` and ``center`` normalisations: values by hand, statistics from the training
split only, the torch engine's pixel space, and a finished run that applies them again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

import trainlab.api as tl
from trainlab.config import RunConfig, config_schema, with_overrides
from trainlab.data import load_dataset, prepare_data
from trainlab.data import normalize as normalize_module
from trainlab.data.normalize import (
    apply_normalizer,
    channel_stats,
    feature_stats,
    fit_normalizer,
    pixel_mean,
)
from trainlab.errors import ConfigError
from trainlab.predict import evaluate_run
from trainlab.runs import open_run_dir

# (N, H, W, C) uint8 images; position (0, 0) of channel 1 is constant (std 0), like MNIST's corners.
IMAGES = np.random.default_rng(0).integers(0, 256, (30, 5, 4, 3), dtype=np.uint8)
IMAGES[:, 0, 0, 1] = 77


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Chunks of 7 images: the real sizes (512 to 4096) hold these 30 images in one chunk, so
    the accumulation across chunks (and a short last chunk) would never run."""
    for name in ("_CHUNK", "_HIST_CHUNK", "_INT_CHUNK"):
        assert getattr(normalize_module, name) > len(IMAGES)  # a renamed constant fails here
        monkeypatch.setattr(normalize_module, name, 7)
    return 7


def as_nchw(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 3, 1, 2).astype(np.float64)  # (N, C, H, W)


@pytest.mark.usefixtures("small_chunks")
def test_feature_stats_are_exact() -> None:
    mean, std = feature_stats(IMAGES)
    np.testing.assert_allclose(mean, IMAGES.astype(np.float64).mean(axis=0), rtol=1e-15)
    np.testing.assert_allclose(std, IMAGES.astype(np.float64).std(axis=0), rtol=1e-12, atol=1e-12)
    assert std[0, 0, 1] == 0.0


@pytest.mark.usefixtures("small_chunks")
def test_channel_and_pixel_stats_are_exact() -> None:
    mean, std = channel_stats(IMAGES)
    pixels = IMAGES.astype(np.float64)
    np.testing.assert_allclose(mean, pixels.mean(axis=(0, 1, 2)), rtol=1e-13)
    np.testing.assert_allclose(std, pixels.std(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(pixel_mean(IMAGES), pixels.mean(axis=0), rtol=1e-13)


@pytest.mark.usefixtures("small_chunks")
def test_feature_standardises_every_position() -> None:
    normalizer = fit_normalizer(IMAGES, "feature")
    out = apply_normalizer(IMAGES, normalizer, np.float64)  # (N, C, H, W)
    raw = as_nchw(IMAGES)
    std = raw.std(axis=0)
    std[1, 0, 0] = 1.0  # the constant position is only centred
    np.testing.assert_allclose(out, (raw - raw.mean(axis=0)) / std, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-12)
    stds = out.std(axis=0)
    assert stds[1, 0, 0] == 0.0 and np.allclose(np.delete(stds.reshape(-1), 1 * 20), 1.0)
    assert normalizer["kind"] == "feature" and np.asarray(normalizer["mean"]).shape == (3, 5, 4)


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("center_by", ["channel", "pixel"])
def test_center_scales_then_subtracts_the_mean_without_dividing(center_by: str) -> None:
    normalizer = fit_normalizer(IMAGES, "center", 100.0, center_by)
    out = apply_normalizer(IMAGES, normalizer, np.float64)  # (N, C, H, W)
    scaled = as_nchw(IMAGES) / 255 * 100  # pixels in [0, 100]
    mean = scaled.mean(axis=(0, 2, 3), keepdims=True) if center_by == "channel" else scaled.mean(axis=0)
    np.testing.assert_allclose(out, scaled - mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out.std(), (scaled - mean).std(), rtol=1e-12)  # no division
    assert normalizer["by"] == center_by and normalizer["scale"] == 100.0
    assert np.asarray(normalizer["mean"]).shape == ((3,) if center_by == "channel" else (3, 5, 4))


@pytest.mark.usefixtures("small_chunks")
def test_fixed_constants_are_torchvisions_normalize() -> None:
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # ImageNet's
    normalizer = fit_normalizer(IMAGES, "fixed", mean=mean, std=std)
    out = apply_normalizer(IMAGES, normalizer, np.float64)  # (N, C, H, W)
    expected = (as_nchw(IMAGES) / 255 - np.reshape(mean, (1, 3, 1, 1))) / np.reshape(std, (1, 3, 1, 1))
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    assert normalizer["fixed"] and normalizer["kind"] == "channel"  # the same affine map as channel
    with pytest.raises(ConfigError, match="one mean and one std per channel"):
        fit_normalizer(IMAGES, "fixed", mean=[0.5], std=[0.2])
    with pytest.raises(ConfigError, match="needs mean and std"):
        fit_normalizer(IMAGES, "fixed")


@pytest.mark.usefixtures("small_chunks")
def test_statistics_come_from_the_training_split_only(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "pets")
    for kind, center_by in (("feature", "channel"), ("center", "pixel")):
        data = prepare_data(str(root), val_fraction=0.25, normalize=kind, center_by=center_by, seed=0)
        raw = prepare_data(str(root), val_fraction=0.25, normalize="none", seed=0, dtype=np.float64)
        np.testing.assert_allclose(data.normalizer["mean"], raw.x_train.mean(axis=0), rtol=1e-12)
        assert not np.allclose(data.normalizer["mean"], np.concatenate([raw.x_train, raw.x_val]).mean(axis=0))


def test_config_checks_and_describes_them() -> None:
    def build(data: dict[str, Any]) -> RunConfig:
        return RunConfig.from_dict({"data": {"dataset": "mnist", **data}, "model": {"type": "linear"}})

    assert build({"normalize": "center", "center_by": "pixel", "scale": 100}).data.center_by == "pixel"
    assert build({"normalize": "feature"}).data.center_by == "channel"
    with pytest.raises(ConfigError, match=r"data\.center_by: only used by normalize: center, not 'scale'"):
        build({"normalize": "scale", "center_by": "pixel"})
    # A study or an override that changes normalize drops a center_by it no longer uses.
    changed = with_overrides(build({"normalize": "center", "center_by": "pixel"}), ["data.normalize=feature"])
    assert (changed.data.normalize, changed.data.center_by) == ("feature", "channel")
    fixed = build({"normalize": "fixed", "mean": [0.1307], "std": [0.3081]}).data
    assert fixed.prepare_kwargs()["mean"] == [0.1307]
    with pytest.raises(ConfigError, match=r"data\.mean: normalize: fixed needs"):
        build({"normalize": "fixed"})
    with pytest.raises(ConfigError, match=r"data\.std: only used by normalize: fixed"):
        build({"std": [0.3]})
    with pytest.raises(ConfigError, match=r"data\.std: every std must be > 0"):
        build({"normalize": "fixed", "mean": [0.1], "std": [0.0]})
    fields = config_schema()["$defs"]["DataConfig"]["properties"]
    assert "feature:" in fields["normalize"]["description"] and "center:" in fields["normalize"]["description"]
    assert "mean image" in fields["center_by"]["description"]


# -- a finished run applies the same normalisation -----------------------------------------------
def image_folder(root: Path, per_class: int = 24) -> Path:
    """train/<class>/ and a labelled test/<class>/ of 6x6 PNGs whose colour gives the class."""
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("test", 8)):
        for label, name in enumerate(("cat", "dog")):
            folder = root / split / name
            folder.mkdir(parents=True)
            base = np.array([190, 70, 70] if label == 0 else [70, 70, 190], dtype=np.float64)
            for i in range(count):
                pixels = np.clip(base + rng.normal(0, 50, size=(6, 6, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.mark.parametrize(("engine", "data"), [
    ("numpy", {"normalize": "feature"}),
    ("torch", {"normalize": "center", "center_by": "pixel", "scale": 100.0}),
    ("numpy", {"normalize": "center", "center_by": "channel", "scale": 10.0}),
    ("torch", {"normalize": "fixed", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
               "val_split": "tail", "stats_from": "train+val"}),
    # statistics from the training rows and the tail held out for validation (the last 12 dogs)
    ("torch", {"normalize": "pixel", "val_fraction": 0.25, "val_split": "tail", "stats_from": "train+val"}),
], ids=["numpy-feature", "torch-center-pixel", "numpy-center-channel", "torch-fixed",
        "torch-pixel-train+val"])  # fmt: skip
def test_evaluate_applies_the_runs_normalisation(tmp_path: Path, engine: str, data: dict[str, Any]) -> None:
    root = image_folder(tmp_path / "pets")
    cfg = {"name": "pets", "engine": engine, "data": {"dataset": str(root), "val_fraction": 0.0, **data},
           "model": {"type": "mlp", "hidden": [8]}, "optimizer": {"type": "sgd", "lr": 0.01},
           "train": {"epochs": 2, "batch_size": 8}, "output": {"dir": str(tmp_path / "runs"), "report": False}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = tl.run(path, run_id="r", progress=False, echo=False)
    result = evaluate_run(run.path)
    assert result["matches_summary"] is True
    assert result["test_loss"] == pytest.approx(run.summary["test_loss"], rel=1e-6)
    if data.get("stats_from") == "train+val" and data["normalize"] != "fixed":
        saved = open_run_dir(run.path).read_model()
        assert saved is not None
        x = load_dataset(str(root)).x_train.astype(np.float64)  # (48, 6, 6, 3), stored order
        n_val = round(data["val_fraction"] * len(x))  # the tail: rows 36..47
        train_and_tail = x.mean(axis=0).transpose(2, 0, 1)  # (C, H, W): the 36 training rows + the 12
        train_only = x[: len(x) - n_val].mean(axis=0).transpose(2, 0, 1)
        np.testing.assert_allclose(saved.normalizer["mean"], train_and_tail, rtol=1e-12)
        assert not np.allclose(train_only, train_and_tail)  # so the held-out rows did count
