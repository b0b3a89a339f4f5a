"""Issue 27: a run without a labelled test split (an image folder with an unlabelled ``test/``)
saves the predictions of its validation split, and its report interprets those, saying so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

import trainlab.api as tl
from tests.data.synthdata import write_image_folder
from tests.helpers import write_config
from trainlab.config import RunConfig
from trainlab.data import prepare_data
from trainlab.report.artifacts import read_predictions_file
from trainlab.report.samples import load_report_images, read_predictions, report_images_from_dataset

CLASSES = ("ant", "bee", "cat")
VAL_NOTE = "validation split (no labelled test split)"


def _run(tmp_path: Path, test: str, engine: str) -> tl.Run:
    """One epoch of a tiny MLP on a synthetic image folder whose ``test/`` is ``test``."""
    root = write_image_folder(tmp_path / "pets", classes=CLASSES, per_class=16, size=(8, 8), test=test)
    config = write_config(tmp_path / "run.yaml", tmp_path / "runs", engine=engine,
                          data={"dataset": str(root), "val_fraction": 0.25, "normalize": "scale"},
                          model={"type": "mlp", "hidden": [8]}, train={"epochs": 1, "batch_size": 12})
    return tl.run(config, run_id="r", progress=False, echo=False)


def _data(run: tl.Run) -> tuple[np.ndarray, np.ndarray | None]:
    """The validation and test labels of the run's data, prepared again as training saw it."""
    saved = yaml.safe_load((run.path / "config.yaml").read_text(encoding="utf-8"))
    saved.pop(tl.PROVENANCE_KEY)
    config = RunConfig.from_dict(saved)
    data = prepare_data(config.data.dataset, seed=config.seed, **config.data.prepare_kwargs())
    return data.y_val, data.y_test


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_unlabelled_test_split_interprets_the_validation_split(
    tmp_path: Path, engine: str, one_torch_thread: None
) -> None:
    run = _run(tmp_path, "flat", engine)
    y_val, y_test = _data(run)
    assert y_test is None  # the flat test folder has no labels
    for name in ("predictions.npz", "predictions_initial.npz"):
        saved = read_predictions_file(run.path / name)
        assert saved.split == "val" and saved.labels is not None
        assert np.array_equal(saved.labels, y_val) and saved.probabilities.shape == (len(y_val), len(CLASSES))
    final = read_predictions_file(run.path / "predictions.npz")
    accuracy = float((final.probabilities.argmax(1) == final.labels).mean())
    assert accuracy == pytest.approx(run.summary["final_val_accuracy"], abs=1e-9)  # the final evaluation's

    # The top-loss images saved at the end of training are the validation images behind them.
    saved_images = load_report_images(run.path)
    assert saved_images is not None and saved_images.predictions_split == "val"
    assert saved_images.test_images is not None and len(saved_images.test_index) > 0
    config = yaml.safe_load((run.path / "config.yaml").read_text(encoding="utf-8"))
    read = report_images_from_dataset(config, read_predictions(run.path))
    assert np.array_equal(saved_images.test_index, read.test_index)
    assert np.array_equal(saved_images.test_images, read.test_images)

    text = tl.write_report(run.path).read_text(encoding="utf-8")
    figures = {p.stem for p in (run.path / "figures").glob("*.png")}
    assert {"confusion_before", "confusion_after", "class_scores", "top_losses", "reliability"} <= figures
    assert "not available" not in text and "could not be built" not in text
    assert "Validation split (no labelled test split), trained model" in text
    assert f"The most confident mistakes on the {VAL_NOTE}" in text
    assert f"Reliability diagram of the top-class probability (15 bins) on the {VAL_NOTE}" in text
    assert f"from the {VAL_NOTE}" in text  # the overview says where the figures come from
    assert f"on {len(y_val)} validation images" in text and "validation index" in text


def test_labelled_test_split_keeps_its_predictions(tmp_path: Path) -> None:
    run = _run(tmp_path, "labelled", "numpy")
    _, y_test = _data(run)
    assert y_test is not None
    with np.load(run.path / "predictions.npz", allow_pickle=False) as saved:
        assert sorted(saved.files) == ["labels", "probabilities", "split"]
        assert str(saved["split"]) == "test" and np.array_equal(saved["labels"], y_test)
        probabilities = saved["probabilities"]
    assert probabilities.dtype == np.float32 and probabilities.shape == (len(y_test), len(CLASSES))
    accuracy = float((probabilities.argmax(1) == y_test).mean())
    assert accuracy == pytest.approx(run.summary["test_accuracy"], abs=1e-9)

    text = tl.write_report(run.path).read_text(encoding="utf-8")
    assert "Test split, trained model" in text and "validation split" not in text.lower()
    assert "from the test split" in text


def test_predictions_without_a_split_entry_are_of_the_test_split(tmp_path: Path) -> None:
    """Files written before issue 27 have no ``split``: they hold the test split."""
    path = tmp_path / "predictions.npz"
    np.savez(path, probabilities=np.full((4, 2), 0.5, np.float32), labels=np.array([0, 1, 0, 1]))
    assert read_predictions_file(path).split == "test"
    np.savez(path, probabilities=np.full((4, 2), 0.5, np.float32), split=np.asarray("train"))
    with pytest.raises(ValueError, match="unknown split 'train'"):
        read_predictions_file(path)
