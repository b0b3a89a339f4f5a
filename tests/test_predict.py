"""trainlab evaluate and predict: reproduce a run's test accuracy, write a submission CSV,
and fail clearly on an unreadable image, a size unlike training's, or a foreign checkpoint."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import trainlab.api as tl
from trainlab.cli import main
from trainlab.errors import CorruptDataError, DataError, RunDirError
from trainlab.predict import evaluate_run, predict_folder

CLASSES = ("cat", "dog")
SIZE = 8


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One thread: the machine is shared (the torch engine reads TRAINLAB_NUM_THREADS)."""
    before = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRAINLAB_NUM_THREADS", "1")
        yield
    torch.set_num_threads(before)


def image(label: int, rng: np.random.Generator, size: int = SIZE) -> Image.Image:
    """A noisy image whose colour gives away its class (reddish cats, bluish dogs)."""
    base = np.array([200, 60, 60] if label == 0 else [60, 60, 200], dtype=np.float64)
    pixels = np.clip(base + rng.normal(0, 40, size=(size, size, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def folder_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/<class>/ (40 each) and a labelled test/<class>/ (10 each) of 8x8 PNGs."""
    root = tmp_path_factory.mktemp("pets")
    rng = np.random.default_rng(0)
    for split, count in (("train", 40), ("test", 10)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                image(label, rng).save(folder / f"{i}.png")
    return root


def train(root: Path, out: Path, run_id: str, **sections: Any) -> Path:
    cfg: dict[str, Any] = {
        "name": "pets", "seed": 0, "engine": "torch",
        "data": {"dataset": str(root), "val_fraction": 0.1},
        "model": {"type": "mlp", "hidden": [16]},
        "optimizer": {"type": "adam", "lr": 0.01},
        "train": {"epochs": 3, "batch_size": 16},
        "output": {"dir": str(out)},
    }
    cfg.update(sections)
    path = out / f"{run_id}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return tl.run(path, run_id=run_id, progress=False, echo=False).path


@pytest.fixture(scope="module")
def runs(folder_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A torch MLP, a torch CNN (channels_last, bf16) and a NumPy MLP, trained on the folder."""
    out = tmp_path_factory.mktemp("runs")
    return {
        "mlp": train(folder_dataset, out, "mlp"),
        "cnn": train(folder_dataset, out, "cnn", model={"type": "cnn", "conv": [{"filters": 4}], "fc": [8]},
                     train={"epochs": 2, "batch_size": 16, "precision": "bf16"}),
        "numpy": train(folder_dataset, out, "numpy", engine="numpy", optimizer={"type": "sgd", "lr": 0.05}),
        "resize": train(folder_dataset, out, "resize", data={"dataset": str(folder_dataset), "resize": SIZE}),
    }


def new_images(folder: Path, names: list[str], size: int = SIZE) -> list[int]:
    """Write unlabelled images called ``names``; returns their true classes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    labels = [i % 2 for i in range(len(names))]
    for name, label in zip(names, labels, strict=True):
        image(label, rng, size).save(folder / name)
    return labels


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# -- evaluate ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["mlp", "cnn", "numpy"])
def test_evaluate_reproduces_the_runs_test_accuracy(runs: dict[str, Path], kind: str) -> None:
    result = evaluate_run(runs[kind])
    summary = tl.open_run(runs[kind]).summary
    assert result["examples"] == 20 and result["tta"] is False
    assert result["test_accuracy"] == summary["test_accuracy"]
    assert result["test_loss"] == pytest.approx(summary["test_loss"], rel=1e-5)
    assert result["matches_summary"] is True and result["data_fingerprint_matches"] is True


def test_evaluate_command_with_tta(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(runs["cnn"]), "--tta", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"tta": true' in out and '"matches_summary": null' in out
    assert main(["evaluate", str(runs["mlp"])]) == 0
    assert "test accuracy" in capsys.readouterr().out


# -- predict -------------------------------------------------------------------------------------
def test_predict_writes_one_row_per_image_with_ids_from_file_names(runs: dict[str, Path], tmp_path: Path) -> None:
    names = ["10.png", "2.png", "1.jpg", "kitten.bmp", "3.PNG", "20.png", "7.gif"]
    labels = new_images(tmp_path / "unlabelled", names)
    (tmp_path / "unlabelled" / "notes.txt").write_text("not an image, not listed")
    out = tmp_path / "sub" / "submission.csv"
    assert main(["predict", str(runs["mlp"]), "--images", str(tmp_path / "unlabelled"), "--out", str(out)]) == 0
    rows = read_csv(out)
    assert list(rows[0]) == ["id", "label"]
    assert [r["id"] for r in rows] == ["1", "2", "3", "7", "10", "20", "kitten"]  # natural order
    truth = dict(zip((Path(n).stem for n in names), labels, strict=True))
    correct = sum(int(r["label"]) == truth[r["id"]] for r in rows)
    assert correct >= 6  # the colours give the classes away


def test_predict_probabilities_and_label_names(runs: dict[str, Path], tmp_path: Path) -> None:
    new_images(tmp_path / "imgs", [f"{i}.png" for i in range(5)])
    result = predict_folder(runs["cnn"], tmp_path / "imgs", tmp_path / "p.csv", probabilities=True,
                            label_names=True, tta=True)
    assert result["rows"] == 5 and result["columns"] == ["id", "label", "prob_cat", "prob_dog"]
    rows = read_csv(tmp_path / "p.csv")
    for row in rows:
        p = np.array([float(row["prob_cat"]), float(row["prob_dog"])])
        assert p.sum() == pytest.approx(1.0, abs=1e-5)
        assert row["label"] == CLASSES[int(p.argmax())]


def test_predict_with_the_numpy_engine(runs: dict[str, Path], tmp_path: Path) -> None:
    new_images(tmp_path / "imgs", ["a.png", "b.png", "c.png"])
    assert predict_folder(runs["numpy"], tmp_path / "imgs", tmp_path / "n.csv")["rows"] == 3


def test_a_run_that_resizes_accepts_other_sizes(runs: dict[str, Path], tmp_path: Path) -> None:
    new_images(tmp_path / "big", ["a.png", "b.png"], size=20)
    assert predict_folder(runs["resize"], tmp_path / "big", tmp_path / "r.csv")["rows"] == 2


# -- clear errors --------------------------------------------------------------------------------
def test_unreadable_image_is_named(runs: dict[str, Path], tmp_path: Path) -> None:
    new_images(tmp_path / "imgs", ["1.png", "2.png"])
    (tmp_path / "imgs" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(CorruptDataError, match=r"3\.png: corrupt or unreadable image"):
        predict_folder(runs["mlp"], tmp_path / "imgs", tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()


def test_image_of_another_size_is_refused(runs: dict[str, Path], tmp_path: Path) -> None:
    new_images(tmp_path / "imgs", ["1.png"])
    new_images(tmp_path / "imgs", ["2.png"], size=12)
    with pytest.raises(DataError, match=r"2\.png: image is 12x12 .* trained on 8x8 images .* data\.resize"):
        predict_folder(runs["mlp"], tmp_path / "imgs", tmp_path / "x.csv")
    # The CLI turns it into a message and the data error's exit code.
    assert main(["predict", str(runs["mlp"]), "--images", str(tmp_path / "imgs"), "--out",
                 str(tmp_path / "x.csv")]) == DataError.exit_code


def test_empty_folder_is_refused(runs: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        predict_folder(runs["mlp"], tmp_path / "empty", tmp_path / "x.csv")


@pytest.mark.parametrize("kind", ["mlp", "cnn", "numpy"])
def test_checkpoint_from_an_incompatible_config_is_refused(runs: dict[str, Path], tmp_path: Path,
                                                           kind: str) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(runs[kind], copy)
    config = yaml.safe_load((copy / "config.yaml").read_text())
    if kind == "cnn":
        config["model"]["conv"][0]["filters"] = 6
    else:
        config["model"]["hidden"] = [20]
    (copy / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(RunDirError, match=r"does not fit the model .* another model or dataset config"):
        evaluate_run(copy)
    new_images(tmp_path / "imgs", ["1.png"])
    assert main(["predict", str(copy), "--images", str(tmp_path / "imgs"), "--out",
                 str(tmp_path / "x.csv")]) == RunDirError.exit_code


def test_run_without_checkpoint_is_refused(runs: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(runs["mlp"], copy)
    (copy / "checkpoint.pt").unlink()
    with pytest.raises(RunDirError, match=r"no checkpoint\.pt"):
        evaluate_run(copy)


# -- real images ---------------------------------------------------------------------------------
def test_predicting_mnist_pngs_gives_the_runs_own_test_predictions(real_data: Path, tmp_path: Path) -> None:
    """Test images written as PNG files and predicted from the folder get the labels that the
    run itself predicted for them (predictions.npz)."""
    from trainlab.data import load_dataset

    cfg = {"name": "mnist", "seed": 0, "engine": "torch",
           "data": {"dataset": "mnist", "limit": {"train": 2000, "test": 200}},
           "model": {"type": "mlp", "hidden": [32]}, "optimizer": {"type": "adam", "lr": 2e-3},
           "train": {"epochs": 1, "batch_size": 50}, "output": {"dir": str(tmp_path / "runs")}}
    path = tmp_path / "mnist.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = tl.run(path, run_id="r", data_dir=real_data, progress=False, echo=False)
    assert evaluate_run(run.path, data_dir=real_data)["test_accuracy"] == run.summary["test_accuracy"]
    # The run's test split is a stratified subset: find its images by their labels' order.
    from trainlab.data.splits import stratified_subset

    raw = load_dataset("mnist", real_data)
    index = stratified_subset(raw.y_test, 200, 0)[:30]
    folder = tmp_path / "pngs"
    folder.mkdir()
    for k, i in enumerate(index):
        Image.fromarray(raw.x_test[i][..., 0]).save(folder / f"{k + 1}.png")
    result = predict_folder(run.path, folder, tmp_path / "mnist.csv", data_dir=real_data)
    assert result["rows"] == 30
    with np.load(run.path / "predictions.npz") as saved:
        expected = saved["probabilities"][:30].argmax(1)
        assert (saved["labels"][:30] == raw.y_test[index]).all()  # the same images, in the same order
    rows = read_csv(tmp_path / "mnist.csv")
    assert [r["id"] for r in rows] == [str(k) for k in range(1, 31)]
    assert [int(r["label"]) for r in rows] == expected.tolist()


@pytest.mark.slow
def test_cats_vs_dogs_submission_has_every_test_image(real_data: Path, tmp_path: Path) -> None:
    """The 4,999 unlabelled Cats vs Dogs test images: one row each, ids from the file names."""
    import tarfile

    archive = real_data / "cats-vs-dogs" / "cats-vs-dogs.tar.gz"
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "cvd", members=[m for m in tar.getmembers() if m.name.startswith("test/")],
                       filter="data")
    cfg = {"name": "cvd", "seed": 0, "engine": "torch",
           "data": {"dataset": "cats-vs-dogs", "resize": 32, "limit": {"train": 400, "val": 100}},
           "model": {"type": "cnn", "conv": [{"filters": 8}, {"filters": 16}], "fc": [16]},
           "train": {"epochs": 1, "batch_size": 50}, "output": {"dir": str(tmp_path / "runs")}}
    path = tmp_path / "cvd.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = tl.run(path, run_id="r", data_dir=real_data, progress=False, echo=False)
    out = tmp_path / "submission.csv"
    result = predict_folder(run.path, tmp_path / "cvd" / "test", out, probabilities=True, data_dir=real_data)
    rows = read_csv(out)
    files = {p.stem for p in (tmp_path / "cvd" / "test").iterdir()}
    assert result["rows"] == len(rows) == len(files) == 4999
    assert {r["id"] for r in rows} == files


@pytest.mark.parametrize("channels", [3, 1])
def test_predict_refuses_images_over_the_runs_pixel_limit(tmp_path: Path, channels: int) -> None:
    from PIL import Image

    from trainlab.data.imagefolder import ImageTooLargeError
    from trainlab.predict import read_images

    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(path)
    assert read_images([path], (channels, 16, 16), None).shape == (1, 16, 16, channels)
    with pytest.raises(ImageTooLargeError, match=r"big\.png.*16x16"):
        read_images([path], (channels, 16, 16), None, max_pixels=100)
