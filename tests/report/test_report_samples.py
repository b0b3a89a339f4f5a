"""The images a report shows are saved in the run directory when training ends: a run directory
copied elsewhere is reported on with its dataset gone, from any working directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

import trainlab.api as tl
from tests.data.synthdata import write_idx
from tests.helpers import InterruptAt, write_config
from tests.report.conftest import ReportRuns
from trainlab.config import AugmentConfig
from trainlab.data.normalize import KINDS, apply_normalizer, fit_normalizer
from trainlab.report import samples
from trainlab.report.artifacts import Predictions
from trainlab.report.samples import (
    PART_BYTES,
    ImageSplits,
    collect_report_images,
    load_report_images,
    read_predictions,
    report_images_from_dataset,
)
from trainlab.run_files import REPORT_IMAGES_FILE


def _figures(path: Path) -> set[str]:
    return {p.stem for p in (path / "figures").glob("*.png")}


def _no_dataset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No data folder, an empty cache, and a dataset reader that fails the test if it is called."""
    for variable in ("TRAINLAB_DATA", "TRAINLAB_CACHE"):
        empty = tmp_path / variable.lower()
        empty.mkdir()
        monkeypatch.setenv(variable, str(empty))

    def read_dataset(*args: object, **kwargs: object) -> None:
        raise AssertionError("the report read the dataset")

    monkeypatch.setattr(samples, "load_run_data", read_dataset)


@pytest.mark.parametrize("name", ["torch_cnn", "mlp"])
def test_report_from_a_copied_run_directory_without_data(
    report_runs: ReportRuns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    run = tmp_path / "elsewhere" / "copied"
    shutil.copytree(getattr(report_runs, name), run, ignore=shutil.ignore_patterns("figures", "report.html"))
    _no_dataset(monkeypatch, tmp_path)
    workdir = tmp_path / "somewhere-else"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    text = tl.write_report(Path("..") / "elsewhere" / "copied").read_text(encoding="utf-8")
    assert "could not be loaded" not in text and "could not be built" not in text
    figures = _figures(run)
    assert {"top_losses", "samples", "class_counts", "confusion_after", "weight_templates"} <= figures
    if name == "torch_cnn":  # the run augments: its preview comes from the run directory too
        assert "augmentation" in figures
        assert "airplane" in text
    else:  # issue 27: no preview for a run that does not augment
        assert "augmentation" not in figures


def test_saved_images_are_the_dataset_images(report_runs: ReportRuns) -> None:
    """What training saved (pixels recovered from the normalised arrays) is what the dataset holds."""
    run = report_runs.torch_cnn
    saved = load_report_images(run)
    assert saved is not None
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    read = report_images_from_dataset(config, read_predictions(run))
    assert saved.class_names == read.class_names and saved.image_shape == read.image_shape == (3, 32, 32)
    for split in ("train", "val", "test"):
        assert np.array_equal(saved.counts()[split], read.counts()[split])  # type: ignore[arg-type]
    assert saved.samples_x.dtype == np.uint8 and saved.samples_x.shape == (100, 32, 32, 3)
    assert np.array_equal(saved.samples_x, read.samples_x) and np.array_equal(saved.samples_y, read.samples_y)
    assert len(saved.test_index) == samples.TOP_LOSSES
    assert np.array_equal(saved.test_index, read.test_index)
    assert np.array_equal(saved.test_images, read.test_images)
    assert [name for name, _ in saved.preview] == ["original", "hflip", "crop_padding", "cutout", "all"]
    assert all(x.shape == (10, 32, 32, 3) and x.dtype == np.uint8 for _, x in saved.preview)
    assert (run / REPORT_IMAGES_FILE).stat().st_size < 1_000_000  # a CIFAR run's file stays small


def test_numpy_run_saves_no_preview(report_runs: ReportRuns) -> None:
    saved = load_report_images(report_runs.mlp)
    assert saved is not None
    assert saved.preview == [] and saved.preview_note == ""
    assert saved.samples_x.shape[1:] == (28, 28, 1) and len(saved.test_index) > 0


@pytest.mark.parametrize("kind", KINDS)
def test_pixels_are_recovered_exactly_from_every_normaliser(kind: str) -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (20, 6, 5, 3), dtype=np.uint8)
    normalizer = fit_normalizer(x, kind, 2.0, "pixel", [0.4, 0.5, 0.6], [0.2, 0.25, 0.3])
    assert np.array_equal(samples._to_pixels(apply_normalizer(x, normalizer), normalizer), x)


def _splits(n: int, shape: tuple[int, int, int], classes: int = 3) -> ImageSplits:
    c, h, w = shape
    x = np.random.default_rng(0).integers(0, 256, (n, h, w, c), dtype=np.uint8)
    y = np.arange(n) % classes
    return ImageSplits([f"c{k}" for k in range(classes)], shape, y, y[:5], y,
                       lambda rows: x[rows], lambda rows: x[rows], lambda: {"kind": "scale", "scale": 1.0})


def test_default_augment_section_is_no_augmentation() -> None:
    """A resolved config lists every augment field (crop_padding_mode: zeros): none is on."""
    config = {"seed": 0, "augment": AugmentConfig().model_dump(mode="json")}
    images = collect_report_images(_splits(30, (1, 4, 4)), config, None)
    assert images.preview == [] and images.preview_note == ""


def test_large_images_keep_to_the_byte_budget() -> None:
    shape = (3, 256, 256)
    splits = _splits(60, shape)
    probabilities = np.full((60, 3), 0.1)
    probabilities[np.arange(60), (splits.y_train + 1) % 3] = 0.8  # every prediction wrong
    config = {"seed": 0, "augment": {"hflip": True, "cutout": 8}}
    images = collect_report_images(splits, config, Predictions(probabilities, splits.y_train))
    one = int(np.prod(shape))
    assert 0 < images.samples_x.nbytes <= PART_BYTES
    assert np.bincount(images.samples_y).tolist() == [PART_BYTES // (3 * one)] * 3
    assert images.test_images is not None and 0 < images.test_images.nbytes <= PART_BYTES
    assert images.preview_note == ""
    assert 0 < sum(x.nbytes for _, x in images.preview) <= PART_BYTES
    rows = [int(r) for r in images.test_index]
    assert len(images.test_images_for([*rows, 59], splits.y_train)) == len(rows)  # the kept ones only


def test_interrupted_then_resumed_run_ends_with_its_images(tmp_path: Path, one_torch_thread: None) -> None:
    dataset = write_idx(tmp_path / "mnist", n_train=200, n_test=40)
    config = write_config(tmp_path / "c.yaml", tmp_path / "runs", engine="torch",
                          data={"dataset": str(dataset), "normalize": "channel", "val_fraction": 0.1},
                          model={"type": "mlp", "hidden": [8]}, augment={"hflip": True},
                          train={"epochs": 2, "batch_size": 20, "eval_every": 3})
    with pytest.raises(KeyboardInterrupt):
        tl.run(config, run_id="cut", progress=False, echo=False, callbacks=[InterruptAt(6)])
    run = tmp_path / "runs" / "t" / "cut"
    interrupted = load_report_images(run)
    assert interrupted is not None and len(interrupted.test_index) == 0  # no predictions yet
    tl.run(resume=run, progress=False, echo=False)
    finished = load_report_images(run)
    assert finished is not None and len(finished.test_index) > 0
    assert [name for name, _ in finished.preview] == ["original", "hflip"]


def test_low_res_preview_rows_of_two_sizes_are_saved_and_read(tmp_path: Path, one_torch_thread: None) -> None:
    """augment.low_res shrinks the preview's augmented rows: rows of two sizes are saved and read back."""
    dataset = write_idx(tmp_path / "mnist", n_train=120, n_test=40)
    config = write_config(tmp_path / "c.yaml", tmp_path / "runs", engine="torch",
                          data={"dataset": str(dataset), "normalize": "channel", "val_fraction": 0.1},
                          model={"type": "cnn", "conv": [{"filters": [4]}], "global_pool": "max"},
                          augment={"hflip": True, "low_res": {"size": 20, "epochs": 1}},
                          train={"epochs": 1, "batch_size": 20})
    tl.run(config, run_id="small", progress=False, echo=False)
    images = load_report_images(tmp_path / "runs" / "t" / "small")
    assert images is not None
    sizes = {name: x.shape[1:3] for name, x in images.preview}
    assert sizes["original"] == (28, 28) and (20, 20) in sizes.values()
