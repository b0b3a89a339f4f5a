"""A run directory is self-contained: copied elsewhere, with its training data gone and from
another working directory, it predicts given images exactly as it did where it was trained.

Before: predict prepared the whole training dataset again to recover the normaliser, the
input shape and the class names, so a run whose data had moved could not predict.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import trainlab.api as tl
import trainlab.data
from trainlab.config import RunConfig
from trainlab.errors import RunDirError
from trainlab.predict import evaluate_run, open_trained_run, predict_folder
from trainlab.run_files import MODEL_FILE, NORMALIZER_FILE, START_FILES, ModelSpec, RunDir

from .helpers import write_config

# engine, model, normalize: the per-position statistics of feature and pixel go to normalizer.npz.
RUNS = {
    "numpy-mlp": ("numpy", {"type": "mlp", "hidden": [16]}, "feature"),
    "torch-mlp": ("torch", {"type": "mlp", "hidden": [16]}, "channel"),
    "torch-cnn": ("torch", {"type": "cnn", "conv": [{"filters": 4}], "fc": [8]}, "pixel"),
}
IMAGES = 12


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread_per_module: None) -> None:
    """Every test here (and the module's fixtures) trains with one torch thread."""


@pytest.fixture(scope="module")
def trained(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny MNIST run per engine and model, one epoch each."""
    out = tmp_path_factory.mktemp("portable")
    runs = {}
    for name, (engine, model, normalize) in RUNS.items():
        cfg = write_config(out / f"{name}.yaml", out / "runs", engine=engine, model=model,
                           data={"dataset": "mnist", "limit": {"train": 300, "val": 50, "test": 50},
                                 "normalize": normalize},
                           optimizer={"type": "adam", "lr": 2e-3}, train={"epochs": 1, "batch_size": 50})
        runs[name] = tl.run(cfg, run_id=name, data_dir=real_data, progress=False, echo=False).path
    return runs


@pytest.fixture(scope="module")
def pngs(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MNIST test images written as PNG files (absolute path)."""
    raw = trainlab.data.load_dataset("mnist", real_data)
    folder = tmp_path_factory.mktemp("pngs")
    for i in range(IMAGES):
        Image.fromarray(raw.x_test[i][..., 0]).save(folder / f"{i}.png")
    return folder


def _no_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Make every dataset unavailable: an empty data folder, and no preparing at all."""
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("TRAINLAB_DATA", str(empty))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("predict prepared the training data")

    monkeypatch.setattr(trainlab.data, "prepare_data", refuse)


@pytest.mark.parametrize("name", list(RUNS))
def test_a_copied_run_predicts_without_its_data_from_another_directory(
    trained: dict[str, Path], pngs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    here = predict_folder(trained[name], pngs, tmp_path / "here.csv", probabilities=True)
    assert here["rows"] == IMAGES and here["class_names"] == [str(k) for k in range(10)]

    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(trained[name], elsewhere / "run")
    _no_data(monkeypatch, tmp_path)
    monkeypatch.chdir(elsewhere)
    there = predict_folder("run", pngs, "there.csv", probabilities=True)  # paths relative to the new cwd
    assert there["counts"] == here["counts"]
    assert (elsewhere / "there.csv").read_bytes() == (tmp_path / "here.csv").read_bytes()


@pytest.mark.parametrize("name", list(RUNS))
def test_the_run_records_what_its_data_gave_the_model(trained: dict[str, Path], real_data: Path,
                                                       name: str) -> None:
    saved = tl.open_run(trained[name]).config
    saved.pop(tl.PROVENANCE_KEY)
    config = RunConfig.from_dict(saved)
    data = trainlab.data.prepare_data("mnist", data_dir=real_data, seed=config.seed,
                                      **config.data.prepare_kwargs())
    spec = RunDir(trained[name]).read_model()
    assert spec == ModelSpec.of(RUNS[name][0], data)  # the normaliser's statistics too, exactly
    assert spec is not None and spec.input_shape == (1, 28, 28) and spec.num_classes == 10
    assert {MODEL_FILE, NORMALIZER_FILE} <= START_FILES  # a refused start still leaves nothing


def test_a_run_from_before_model_files_still_predicts(trained: dict[str, Path], pngs: Path, real_data: Path,
                                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An old run has no model.json: its dataset is prepared again, and stderr says so."""
    predict_folder(trained["torch-mlp"], pngs, tmp_path / "new.csv")
    old = tmp_path / "old"
    shutil.copytree(trained["torch-mlp"], old)
    (old / MODEL_FILE).unlink()
    (old / NORMALIZER_FILE).unlink()
    capsys.readouterr()
    predict_folder(old, pngs, tmp_path / "old.csv", data_dir=real_data)
    assert f"no {MODEL_FILE}" in capsys.readouterr().err
    assert (tmp_path / "old.csv").read_bytes() == (tmp_path / "new.csv").read_bytes()
    assert evaluate_run(old, data_dir=real_data)["matches_summary"] is True


def test_a_resumed_old_run_gains_its_model_files(trained: dict[str, Path], real_data: Path,
                                                 tmp_path: Path) -> None:
    """Resuming a run written before model.json existed writes it, from the verified data."""
    old = tmp_path / "old"
    shutil.copytree(trained["numpy-mlp"], old)
    expected = RunDir(old).read_model()
    (old / MODEL_FILE).unlink()
    (old / NORMALIZER_FILE).unlink()
    tl.run(resume=old, data_dir=real_data, progress=False, echo=False)  # finished: nothing more to train
    assert RunDir(old).read_model() == expected


def test_a_damaged_normalizer_file_is_named(trained: dict[str, Path], pngs: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(trained["numpy-mlp"], copy)
    (copy / NORMALIZER_FILE).write_bytes(b"PK\x03\x04 torn")
    _no_data(monkeypatch, tmp_path)
    with pytest.raises(RunDirError, match=r"cannot read .*normalizer\.npz"):
        open_trained_run(copy)
    np.savez(copy / NORMALIZER_FILE, other=np.zeros(3))
    with pytest.raises(RunDirError, match=r"normalizer\.npz lacks mean, std"):
        predict_folder(copy, pngs, tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("normalizer", [
    {"kind": "none"},
    {"kind": "scale", "scale": 1.0},
    {"kind": "channel", "fixed": True, "mean": [0.485 * 255], "std": [0.229 * 255], "units": "0-255"},
    {"kind": "center", "by": "pixel", "mean": [[[0.1, 1 / 3], [2.5, 255.0]]], "scale": 2.0, "units": "0-255"},
])
def test_the_model_spec_reads_back_exactly(tmp_path: Path, normalizer: dict[str, object]) -> None:
    spec = ModelSpec("numpy", (1, 2, 2), 3, ["a", "b", "c"], normalizer)
    RunDir(tmp_path).write_model(spec)
    assert RunDir(tmp_path).read_model() == spec
    assert (tmp_path / NORMALIZER_FILE).exists()  # even with no arrays: one layout for every kind
